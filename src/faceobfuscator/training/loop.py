"""``faceobf train``: the training run, its checkpoints, validation and final model.

Output directory layout::

    OUT/train_config.json    the resolved configuration
    OUT/metrics.jsonl        step and epoch records
    OUT/curves.png           loss and validation accuracy per epoch
    OUT/checkpoint/          after every epoch: model.safetensors + config.json (a model
                             directory) and train_state.pt (head, optimiser, step; read
                             back with ``weights_only=True``)
    OUT/model/               the final model directory (embedding network only)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import build_backbone
from ..errors import ConfigError
from ..modeldir import WEIGHTS_NAME, save_model, unwrap
from ..schemes import Scheme, get_scheme
from ..verification import best_threshold, embed_faces, tar_at_far
from .config import TrainConfig
from .data import holdout, load_training_data
from .head import ArcFaceHead
from .report import MetricsLog, plot_curves
from .schedule import poly_lr
from .step import Trainable, autocast, embedder, network_input

__all__ = ["train", "resolve_device", "validate"]

STATE_NAME = "train_state.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _setup_distributed(device: torch.device) -> tuple[_Dist, torch.device]:
    """A process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), world, local), device


def validate(
    network: nn.Module,
    scheme: Scheme,
    faces: torch.Tensor,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    device: torch.device,
    generator: torch.Generator,
) -> dict[str, float]:
    """Every pair of held-out images: TAR and threshold at ``validation.far`` over all
    impostor pairs, and the best-threshold accuracy on the genuine pairs plus as many
    impostor pairs (a fixed sample)."""
    was_training = network.training
    network.eval()
    embed = embedder(network, device, config.amp, config.channels_last)
    flip = config.validation.flip
    combined, single = embed_faces(
        embed, scheme, faces, generator=generator, flip=flip, batch_size=256
    )
    network.train(was_training)
    emb = combined if flip else single
    i, j = np.triu_indices(len(labels), k=1)
    scores = (emb @ emb.T).double().numpy()[i, j]
    same = labels[i] == labels[j]
    far = tar_at_far(scores, same, config.validation.far)
    rng = np.random.default_rng(config.seed)
    impostors = rng.choice(np.flatnonzero(~same), int(same.sum()), replace=False)
    balanced = np.concatenate([np.flatnonzero(same), impostors])
    t = best_threshold(scores[balanced], same[balanced])
    acc = float(np.mean((scores[balanced] >= t) == same[balanced]))
    return {
        "val_accuracy": acc,
        "val_tar": far["tar"],
        "val_far": far["far"],
        "threshold": far["threshold"],
        "val_pairs_genuine": int(same.sum()),
        "val_pairs_impostor": far["n_impostor"],
    }


def _save_checkpoint(out: Path, payload: dict[str, Any], **model_kwargs: Any) -> None:
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(tmp, **model_kwargs)
    torch.save(payload, tmp / STATE_NAME)
    final = out / "checkpoint"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def _load_checkpoint(
    out: Path, network: nn.Module, head: nn.Module, optimiser: torch.optim.Optimizer
) -> dict[str, Any]:
    from safetensors.torch import load_file

    ckpt = out / "checkpoint"
    if not (ckpt / STATE_NAME).is_file():
        raise ConfigError(f"--resume: no checkpoint in {ckpt}")
    state = torch.load(ckpt / STATE_NAME, map_location="cpu", weights_only=True)
    network.load_state_dict(load_file(str(ckpt / WEIGHTS_NAME)))
    try:
        head.load_state_dict(state["head"])
    except RuntimeError as exc:
        raise ConfigError(f"--resume: checkpoint head does not fit this data: {exc}") from None
    optimiser.load_state_dict(state["optimizer"])
    return state


def _index_batches(n_train: int, batch: int, epoch: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n_train)
    steps = n_train // batch
    return [perm[k * batch : (k + 1) * batch] for k in range(steps)]


def train(
    config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``config`` into ``out_dir``; returns the final model directory."""
    from tqdm import tqdm

    out = Path(out_dir)
    device = resolve_device(config.device)
    dist, device = _setup_distributed(device)
    if config.batch_size % dist.world:
        raise ConfigError(f"batch_size {config.batch_size} must divide by {dist.world} processes")
    if dist.main:
        if (out / "checkpoint").exists() and not resume:
            raise ConfigError(f"{out} already holds a checkpoint; pass --resume or another --out")
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(config.seed + dist.rank)

    protocol = config.protocol_config
    scheme = get_scheme(config.scheme, protocol)
    data = load_training_data(
        config.data, device=device, seed=config.seed, on_device=config.data_on_device
    )
    labels_np = data.labels.cpu().numpy()
    train_idx, val_idx = holdout(labels_np, config.validation, seed=config.seed)
    val_faces = torch.cat([f for f, _ in data.batches([val_idx])]).to(device)
    n_classes = len(data.classes)

    network = build_backbone(config.backbone, scheme.in_channels, config.embedding_size)
    head = ArcFaceHead(n_classes, config.embedding_size, s=config.head.s, m=config.head.m)
    trainable = Trainable(network, head).to(device)
    if config.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.SGD(
        trainable.parameters(),
        lr=config.optim.lr,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
    )
    log = MetricsLog(out / "metrics.jsonl")
    start_epoch, step = 0, 0
    if resume:
        state = _load_checkpoint(out, network, head, optimiser)
        start_epoch, step = int(state["epoch"]), int(state["step"])
        if dist.main:
            log.truncate_after(start_epoch)
    model: nn.Module = trainable
    if dist.world > 1:
        ids = [dist.local_rank] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(trainable, device_ids=ids)
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]

    steps_per_epoch = len(train_idx) // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_idx)} training images make no batch of {config.batch_size}")
    total = config.epochs * steps_per_epoch
    warmup = round(config.optim.warmup_epochs * steps_per_epoch)
    generator = torch.Generator(device=device).manual_seed(config.seed * 7919 + dist.rank + step)
    loss_fn = nn.CrossEntropyLoss()
    t_start = time.perf_counter()
    metrics: dict[str, Any] = {}
    stopped_early = False
    for epoch in range(start_epoch, config.epochs):
        batches = [
            train_idx[b][dist.rank :: dist.world]
            for b in _index_batches(len(train_idx), config.batch_size, epoch, config.seed)
        ]
        bar = tqdm(
            total=steps_per_epoch * config.batch_size,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="img",
            unit_scale=True,
            disable=not (progress and dist.main),
            dynamic_ncols=True,
        )
        window_loss = torch.zeros((), device=device)
        window_steps, window_t, epoch_loss, epoch_steps = 0, time.perf_counter(), 0.0, 0
        for faces, labels in data.batches(batches):
            faces, labels = faces.to(device, non_blocking=True), labels.to(device)
            lr = poly_lr(
                step, total=total, base=config.optim.lr, power=config.optim.power, warmup=warmup
            )
            for group in optimiser.param_groups:
                group["lr"] = lr
            x = network_input(
                scheme, faces, generator=generator, flip=True, channels_last=config.channels_last
            )
            with autocast(device, config.amp):
                logits = model(x, labels)
            loss = loss_fn(logits.float(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            window_loss += loss.detach()
            window_steps += 1
            bar.update(config.batch_size)
            if window_steps == config.log_every or step % steps_per_epoch == 0:
                mean_loss = float(window_loss) / window_steps  # one device sync per window
                now = time.perf_counter()
                ips = window_steps * config.batch_size / (now - window_t)
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.4f}", refresh=False)
                if dist.main:
                    log.write(
                        "step", epoch=epoch + 1, step=step, loss=mean_loss, lr=lr, images_per_s=ips
                    )
                epoch_loss += mean_loss * window_steps
                epoch_steps += window_steps
                window_loss.zero_()
                window_steps, window_t = 0, now
            if config.max_seconds and time.perf_counter() - t_start > config.max_seconds:
                stopped_early = True
                break
        bar.close()
        if window_steps:
            epoch_loss += float(window_loss)
            epoch_steps += window_steps
        if dist.main:
            metrics = validate(
                network,
                scheme,
                val_faces,
                labels_np[val_idx],
                config,
                device=device,
                generator=generator,
            )
            elapsed = time.perf_counter() - t_start
            metrics.update(
                epoch=epoch + 1,
                step=step,
                train_loss=epoch_loss / max(epoch_steps, 1),
                seconds=elapsed,
            )
            log.write("epoch", **metrics)
            plot_curves(log, out / "curves.png", title=f"{config.name or config.scheme}")
            _save_checkpoint(
                out,
                {
                    "head": head.state_dict(),
                    "optimizer": optimiser.state_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                },
                **_model_kwargs(config, network, metrics, data.info, len(train_idx)),
            )
            if progress:
                print(
                    json.dumps(
                        {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
                    ),
                    flush=True,
                )
        dist.barrier()
        if stopped_early:
            break
    model_dir = out / "model"
    if dist.main:
        kwargs = _model_kwargs(config, network, metrics, data.info, len(train_idx))
        kwargs["metrics"] = {
            **kwargs["metrics"],
            "stopped_early": stopped_early,
            "train_seconds": time.perf_counter() - t_start,
        }
        save_model(model_dir, **kwargs)
    dist.barrier()
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return model_dir


def _model_kwargs(
    config: TrainConfig,
    network: nn.Module,
    metrics: dict[str, Any],
    data_info: dict[str, Any],
    n_train: int,
) -> dict[str, Any]:
    return {
        "backbone_name": config.backbone,
        "backbone": unwrap(network),
        "scheme_name": config.scheme,
        "protocol": config.protocol_config,
        "threshold": metrics.get("threshold"),
        "metrics": metrics,
        "extra": {
            "train_config": config.to_dict(),
            "data": {**data_info, "train_images": n_train},
            "threshold_rule": (
                f"cosine at FAR={config.validation.far} over all impostor pairs of held-out "
                f"images of training identities, "
                f"{'face plus mirror' if config.validation.flip else 'single image'} embeddings; "
                "accept when cosine >= threshold"
            ),
        },
    }
