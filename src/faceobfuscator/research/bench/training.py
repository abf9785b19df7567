"""Training and inference throughput of a backbone on a scheme's features (``make bench``).

Both measurements include the client's side (features, fresh protection, recovery) on the
same device, as in training and serving; the faces are random uint8 images.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE, ProtocolConfig
from faceobfuscator.recognition.backbones import build_backbone
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.training.head import ArcFaceHead
from faceobfuscator.research.training.step import Trainable, autocast, network_input

__all__ = ["training_throughput", "epochs_for_budget", "plan_epochs"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_throughput(
    backbone: str,
    scheme: str,
    batch: int,
    steps: int,
    device: str | torch.device = "cpu",
    *,
    classes: int = 1000,
    amp: str = "none",
    channels_last: bool = False,
    warmup: int = 2,
    protocol: ProtocolConfig | None = None,
) -> dict[str, Any]:
    """Images per second of ``steps`` training steps (SGD, ArcFace head) and of as many
    inference batches, after ``warmup`` untimed steps of each."""
    dev = torch.device(device)
    sch = get_scheme(scheme, protocol or ProtocolConfig())
    gen = torch.Generator(device=dev).manual_seed(0)
    faces = torch.randint(
        0,
        256,
        (batch, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3),
        dtype=torch.uint8,
        device=dev,
        generator=gen,
    )
    labels = torch.randint(0, classes, (batch,), device=dev, generator=gen)
    net = build_backbone(backbone, sch.in_channels)
    model = Trainable(net, ArcFaceHead(classes, 512)).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step() -> None:
        x = network_input(sch, faces, generator=gen, flip=True, channels_last=channels_last)
        with autocast(dev, amp):
            logits = model(x, labels)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step() -> None:
        x = network_input(sch, faces, generator=gen, flip=False, channels_last=channels_last)
        with torch.no_grad(), autocast(dev, amp):
            net(x)

    out: dict[str, Any] = {
        "backbone": backbone,
        "scheme": scheme,
        "device": str(dev),
        "batch": batch,
        "steps": steps,
        "amp": amp,
        "params": sum(p.numel() for p in net.parameters()),
        "threads": torch.get_num_threads(),
    }
    for key, fn, mode in (("train", train_step, True), ("inference", infer_step, False)):
        model.train(mode)
        for _ in range(warmup):
            fn()
        _sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(dev)
        out[f"{key}_images_per_s"] = batch * steps / (time.perf_counter() - t)
    return out


def epochs_for_budget(
    configs: list[Any], train_images: int, budget_s: float, *, steps: int = 10
) -> dict[str, Any]:
    """The largest equal number of epochs, at most the configurations' own, that lets
    each of ``configs`` (TrainConfigs on one device) train on ``train_images`` images
    within ``budget_s`` seconds, from the slowest one's measured training throughput."""
    from faceobfuscator.research.training.loop import resolve_device

    rates = {}
    for c in configs:
        r = training_throughput(
            c.backbone,
            c.scheme,
            c.batch_size,
            steps,
            resolve_device(c.device),
            amp=c.amp,
            channels_last=c.channels_last,
        )
        rates[c.scheme] = r["train_images_per_s"]
    slowest = min(rates.values())
    cap = [c.epochs for c in configs]
    return {
        "epochs": max(1, min(int(budget_s * slowest / train_images), *cap)),
        "train_images_per_s": rates,
        "budget_s": budget_s,
        "train_images": train_images,
    }


def plan_epochs(config_paths: list[str], pack: str, budget_s: float) -> dict[str, Any]:
    """:func:`epochs_for_budget` for configuration files trained on ``pack``: the same
    epochs for every scheme, so the comparison spends the same data budget."""
    import numpy as np

    from faceobfuscator.research.training.config import DataConfig, load_train_config
    from faceobfuscator.research.training.data import holdout

    configs = [load_train_config(p).replace(data=DataConfig(pack=pack)) for p in config_paths]
    with np.load(pack, allow_pickle=False) as z:
        labels = z["labels"]
    train_idx, _ = holdout(labels, configs[0].validation, seed=configs[0].seed)
    return epochs_for_budget(configs, len(train_idx), budget_s)
