"""``faceobf train``: the training run, its checkpoints, validation and final model.

Output directory layout::

    OUT/train_config.json    the resolved configuration
    OUT/metrics.jsonl        step and epoch records
    OUT/curves.png           loss and validation accuracy per epoch
    OUT/checkpoint/          after every epoch: model.safetensors + config.json (a model
                             directory) and train_state.pt (head, optimiser, step; read
                             back with ``weights_only=True``)
    OUT/model/               the final model directory (embedding network and the
                             scheme's trained parts, if it has any)

A scheme's trainable parts (:meth:`~faceobfuscator.recognition.schemes.Scheme.parts`) train
with the network, whatever the scheme: their parameters join the optimiser (at ``lr`` times
the scheme's ``parts_lr_scale``), its
:meth:`~faceobfuscator.recognition.schemes.Scheme.training_loss` joins the loss, they follow
the network into eval mode for validation, and they are saved and resumed with it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.backbones import build_backbone, load_pretrained_weights
from faceobfuscator.recognition.modeldir import (
    WEIGHTS_NAME,
    load_model,
    load_scheme_parts,
    read_model_config,
    save_model,
    unwrap,
)
from faceobfuscator.recognition.schemes import Scheme, get_scheme
from faceobfuscator.research.evaluation.verification import best_threshold, embed_faces, tar_at_far
from faceobfuscator.research.training.augment import augment_faces
from faceobfuscator.research.training.config import TrainConfig
from faceobfuscator.research.training.data import holdout, load_training_data
from faceobfuscator.research.training.head import ArcFaceHead
from faceobfuscator.research.training.report import MetricsLog, plot_curves
from faceobfuscator.research.training.schedule import cosine_lr, poly_lr
from faceobfuscator.research.training.step import (
    DistillTrainable,
    Trainable,
    autocast,
    distill_loss,
    embedder,
    scheme_step,
)

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
) -> dict[str, Any]:
    """Every pair of held-out images: TAR and threshold at ``validation.far`` over all
    impostor pairs, and the best-threshold accuracy on the genuine pairs plus as many
    impostor pairs (a fixed sample). Empty when there are no genuine or no impostor
    pairs (e.g. synthetic data)."""
    if len(labels) < 2 or len(np.unique(labels)) in (1, len(labels)):
        return {}
    was_training = network.training
    parts = scheme.parts()
    _set_mode(network, parts, training=False)
    embed = embedder(network, device, config.amp, config.channels_last)
    flip = config.validation.flip
    with torch.no_grad():
        # 64 faces a batch: a batch of 189 colour DCT channels at 112x112 is 600 MB
        combined, single = embed_faces(
            embed, scheme, faces, generator=generator, flip=flip, batch_size=64
        )
    _set_mode(network, parts, training=was_training)
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


def _set_mode(network: nn.Module, parts: nn.Module | None, *, training: bool) -> None:
    network.train(training)
    if parts is not None:
        parts.train(training)


def _save_checkpoint(out: Path, payload: dict[str, Any], **model_kwargs: Any) -> None:
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(tmp, **model_kwargs)
    torch.save(payload, tmp / STATE_NAME)
    final = out / "checkpoint"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def _load_checkpoint(
    out: Path,
    network: nn.Module,
    head: nn.Module | None,
    optimiser: torch.optim.Optimizer,
    scheme: Scheme,
) -> dict[str, Any]:
    from safetensors.torch import load_file

    ckpt = out / "checkpoint"
    if not (ckpt / STATE_NAME).is_file():
        raise ConfigError(f"--resume: no checkpoint in {ckpt}")
    state = torch.load(ckpt / STATE_NAME, map_location="cpu", weights_only=True)
    network.load_state_dict(load_file(str(ckpt / WEIGHTS_NAME)))
    load_scheme_parts(ckpt, scheme, read_model_config(ckpt))
    try:
        if head is not None:
            head.load_state_dict(state["head"])
    except RuntimeError as exc:
        raise ConfigError(f"--resume: checkpoint head does not fit this data: {exc}") from None
    optimiser.load_state_dict(state["optimizer"])
    return state


def _index_batches(n_train: int, batch: int, epoch: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n_train)
    steps = n_train // batch
    return [perm[k * batch : (k + 1) * batch] for k in range(steps)]


@dataclass
class _Run:
    """Everything one training run holds."""

    config: TrainConfig
    out: Path
    dist: _Dist
    device: torch.device
    scheme: Scheme
    data: Any
    train_idx: np.ndarray
    val_idx: np.ndarray
    val_faces: torch.Tensor
    network: nn.Module
    head: ArcFaceHead | None
    model: nn.Module
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    log: MetricsLog
    start_epoch: int = 0
    step: int = 0
    t_start: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    targets: torch.Tensor | None = None
    pretrained: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_idx) // self.config.batch_size

    @property
    def total_steps(self) -> int:
        """Steps of the whole run (the schedule's length): ``epochs`` worth, or fewer with
        ``max_steps``."""
        total = self.config.epochs * self.steps_per_epoch
        return total if self.config.max_steps is None else min(total, self.config.max_steps)


def _setup(config: TrainConfig, out: Path, resume: bool) -> _Run:
    dist, device = _setup_distributed(resolve_device(config.device))
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

    scheme = get_scheme(config.scheme, config.protocol_config)
    data = load_training_data(
        config.data, device=device, seed=config.seed, on_device=config.data_on_device
    )
    train_idx, val_idx = holdout(data.labels.cpu().numpy(), config.validation, seed=config.seed)
    if len(train_idx) < config.batch_size:
        raise ConfigError(f"{len(train_idx)} training images make no batch of {config.batch_size}")
    val_faces = torch.cat([f for f, _ in data.batches([val_idx])]).to(device)

    network = build_backbone(config.backbone, scheme.in_channels, config.embedding_size)
    loaded: set[str] = set()
    if config.init == "pretrained":
        loaded = load_pretrained_weights(config.backbone, network)
    elif config.init == "model":
        loaded = _load_model_weights(config, network, scheme)
    parts = scheme.parts()
    if parts is not None:
        parts.to(device).train()
    targets = _teacher_targets(config, data, device)
    head: ArcFaceHead | None = None
    if config.distill is None or config.distill.arcface_weight > 0:
        if not data.classes:
            raise ConfigError("the ArcFace loss needs labelled images; the data has none")
        head = ArcFaceHead(
            len(data.classes), config.embedding_size, s=config.head.s, m=config.head.m
        )
    trainable: nn.Module = (
        DistillTrainable(network, head) if config.distill else Trainable(network, head)  # type: ignore[arg-type]
    ).to(device)
    if config.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = _optimiser(config, network, head, loaded, parts, scheme.parts_lr_scale)
    log = MetricsLog(out / "metrics.jsonl")
    start_epoch = step = 0
    if resume:
        state = _load_checkpoint(out, network, head, optimiser, scheme)
        start_epoch, step = int(state["epoch"]), int(state["step"])
        if dist.main:
            log.truncate_after(start_epoch)
    model: nn.Module = trainable
    if dist.world > 1:
        ids = [dist.local_rank] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(trainable, device_ids=ids)
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    # a different stream of protections on every process and after every resume
    generator = torch.Generator(device=device).manual_seed(config.seed * 7919 + dist.rank + step)
    return _Run(
        config,
        out,
        dist,
        device,
        scheme,
        data,
        train_idx,
        val_idx,
        val_faces,
        network,
        head,
        model,
        optimiser,
        generator,
        log,
        start_epoch,
        step,
        targets=targets,
        pretrained=len(loaded),
    )


def _load_model_weights(config: TrainConfig, network: nn.Module, scheme: Scheme) -> set[str]:
    """Load ``config.init_model``'s weights into ``network`` (and its scheme parts into
    ``scheme``'s) and return the network's tensor names.

    Raises:
        ConfigError: the directory is unreadable or holds another scheme, backbone,
            protocol or shape than this run.
    """
    source = load_model(str(config.init_model))
    mine = (config.scheme, config.backbone, config.protocol_config.hash)
    theirs = (source.scheme.name, source.config["backbone"], source.scheme.protocol.hash)
    if mine != theirs:
        raise ConfigError(
            f"init_model {config.init_model} is (scheme, backbone, protocol) {theirs[:2]} "
            f"protocol {theirs[2][:12]}; this run is {mine[:2]} protocol {mine[2][:12]}"
        )
    state = unwrap(source.network).state_dict()
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"init_model {config.init_model} does not fit this network:\n{exc}"
        ) from None
    load_scheme_parts(str(config.init_model), scheme, source.config)
    return set(state)


def _teacher_targets(config: TrainConfig, data: Any, device: torch.device) -> torch.Tensor | None:
    """The teacher's embeddings of every training image ``(N, D)``, or ``None`` without
    distillation; the pack must hold them (``faceobf data pack --teacher NAME``)."""
    if config.distill is None:
        return None
    name = config.distill.teacher
    targets = getattr(data, "targets", {}).get(name)
    if targets is None:
        raise ConfigError(
            f"distillation from {name!r} needs its embeddings in the training pack; make the "
            f"pack with `faceobf data pack --teacher {name}`"
        )
    if targets.shape[1] != config.embedding_size:
        raise ConfigError(
            f"teacher {name!r} gives {targets.shape[1]}-d embeddings; set embedding_size "
            f"to {targets.shape[1]} (it is {config.embedding_size})"
        )
    return targets.to(device)


def _optimiser(
    config: TrainConfig,
    network: nn.Module,
    head: nn.Module | None,
    loaded: set[str],
    parts: nn.Module | None = None,
    parts_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """SGD or AdamW with up to three parameter groups: tensors loaded from pretrained
    weights (``lr * pretrained_lr_scale``), the rest of the network and the head (``lr``),
    and the scheme's parts (``lr * parts_lr_scale``); each group's ``lr_scale`` is applied
    by the schedule."""
    o = config.optim
    old = [p for n, p in network.named_parameters() if n in loaded]
    new = [p for n, p in network.named_parameters() if n not in loaded]
    if head is not None:
        new += list(head.parameters())
    own = [p for p in parts.parameters() if p.requires_grad] if parts is not None else []
    groups = [
        {"params": params, "lr_scale": scale}
        for params, scale in ((new, 1.0), (old, o.pretrained_lr_scale), (own, parts_lr_scale))
        if params
    ]
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _out_of_time(run: _Run) -> bool:
    """Whether ``max_seconds`` has passed, agreed by every process (they must stop at the
    same step or DDP's collectives hang)."""
    if not run.config.max_seconds:
        return False
    late = time.perf_counter() - run.t_start > run.config.max_seconds
    if run.dist.world == 1:
        return late
    flag = torch.tensor([float(late)], device=run.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _train_epoch(run: _Run, epoch: int, progress: bool) -> tuple[float, bool]:
    """One pass over the training images; returns the mean loss and whether the time
    limit stopped it."""
    from tqdm import tqdm

    cfg, dist = run.config, run.dist
    total = run.total_steps
    warmup = round(cfg.optim.warmup_epochs * run.steps_per_epoch)
    batches = [
        run.train_idx[b][dist.rank :: dist.world]
        for b in _index_batches(len(run.train_idx), cfg.batch_size, epoch, cfg.seed)
    ]
    bar = tqdm(
        total=run.steps_per_epoch * cfg.batch_size,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="img",
        unit_scale=True,
        disable=not (progress and dist.main),
        dynamic_ncols=True,
    )
    window = torch.zeros((), device=run.device)
    n_window, t_window, loss_sum, n_steps = 0, time.perf_counter(), 0.0, 0
    stopped = False
    rng = np.random.default_rng([cfg.seed, epoch, run.step])
    for idx, (faces, labels) in zip(batches, run.data.batches(batches), strict=True):
        if run.step >= total:  # max_steps reached
            stopped = True
            break
        faces, labels = faces.to(run.device, non_blocking=True), labels.to(run.device)
        lr = _learning_rate(cfg, run.step, total, warmup)
        for group in run.optimiser.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if cfg.augment is not None:
            faces = torch.from_numpy(augment_faces(faces.cpu().numpy(), cfg.augment, rng))
            faces = faces.to(run.device)
        x, scheme_loss = scheme_step(
            run.scheme,
            faces,
            generator=run.generator,
            flip=cfg.augment is None,
            channels_last=cfg.channels_last,
        )
        if cfg.distill is not None:
            assert run.targets is not None  # _setup checked it
            with autocast(run.device, cfg.amp):
                embeddings, logits = run.model(x, labels)
            target = run.targets[torch.as_tensor(idx, device=run.device)]
            loss = distill_loss(
                embeddings,
                target,
                logits,
                labels,
                cosine_weight=cfg.distill.cosine_weight,
                arcface_weight=cfg.distill.arcface_weight,
            )
        else:
            with autocast(run.device, cfg.amp):
                logits = run.model(x, labels)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        if scheme_loss is not None:
            loss = loss + scheme_loss.float()
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        _average_part_grads(run)
        run.optimiser.step()
        run.step += 1
        window += loss.detach()
        n_window += 1
        bar.update(cfg.batch_size)
        last = run.step % run.steps_per_epoch == 0
        if n_window == cfg.log_every or last:
            mean = float(window) / n_window  # the one device sync of a window
            now = time.perf_counter()
            ips = n_window * cfg.batch_size / (now - t_window)
            bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.4f}", refresh=False)
            if dist.main:
                run.log.write(
                    "step", epoch=epoch + 1, step=run.step, loss=mean, lr=lr, images_per_s=ips
                )
            loss_sum += mean * n_window
            n_steps += n_window
            window.zero_()
            n_window, t_window = 0, now
            if _out_of_time(run):
                stopped = True
                break
    bar.close()
    if n_window:
        loss_sum += float(window)
        n_steps += n_window
    return loss_sum / max(n_steps, 1), stopped


def _average_part_grads(run: _Run) -> None:
    """DDP averages the network's gradients; the scheme's parts run outside it, so their
    gradients are averaged over the processes here."""
    parts = run.scheme.parts()
    if run.dist.world == 1 or parts is None:
        return
    for p in parts.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= run.dist.world


def _learning_rate(cfg: TrainConfig, step: int, total: int, warmup: int) -> float:
    if cfg.optim.schedule == "cosine":
        return cosine_lr(step, total=total, base=cfg.optim.lr, warmup=warmup)
    return poly_lr(step, total=total, base=cfg.optim.lr, power=cfg.optim.power, warmup=warmup)


def _end_epoch(run: _Run, epoch: int, loss: float, final: bool, progress: bool) -> None:
    """Validation (when due), the epoch's record and plot, and the checkpoint."""
    cfg = run.config
    if final or (epoch + 1) % cfg.validate_every == 0:
        labels = run.data.labels.cpu().numpy()[run.val_idx]
        run.metrics = validate(
            run.network,
            run.scheme,
            run.val_faces,
            labels,
            cfg,
            device=run.device,
            generator=run.generator,
        )
        run.metrics.update(
            epoch=epoch + 1,
            step=run.step,
            train_loss=loss,
            seconds=time.perf_counter() - run.t_start,
        )
        run.log.write("epoch", **run.metrics)
        plot_curves(run.log, run.out / "curves.png", title=cfg.name or cfg.scheme)
        if progress:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in run.metrics.items()}
            print(json.dumps(shown), flush=True)
    state = {
        "head": run.head.state_dict() if run.head is not None else {},
        "optimizer": run.optimiser.state_dict(),
        "epoch": epoch + 1,
        "step": run.step,
    }
    _save_checkpoint(run.out, state, **_model_kwargs(run, run.metrics))


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Train ``config`` into ``out_dir``; returns the final model directory. ``command``
    (default: this process's command line) is recorded in every model directory."""
    run = _setup(config, Path(out_dir), resume)
    run.command = command
    run.t_start = time.perf_counter()
    stopped = False
    for epoch in range(run.start_epoch, config.epochs):
        loss, stopped = _train_epoch(run, epoch, progress)
        if run.dist.main:
            _end_epoch(run, epoch, loss, stopped or epoch + 1 == config.epochs, progress)
        run.dist.barrier()
        if stopped:
            break
    model_dir = run.out / "model"
    if run.dist.main:
        metrics = {
            **run.metrics,
            "stopped_early": stopped and run.step < run.total_steps,
            "train_seconds": time.perf_counter() - run.t_start,
        }
        save_model(model_dir, **_model_kwargs(run, metrics))
    run.dist.barrier()
    if run.dist.world > 1:
        torch.distributed.destroy_process_group()
    return model_dir


def _model_kwargs(run: _Run, metrics: dict[str, Any]) -> dict[str, Any]:
    cfg = run.config
    views = "face plus mirror" if cfg.validation.flip else "single image"
    return {
        "backbone_name": cfg.backbone,
        "backbone": unwrap(run.network),
        "scheme_name": cfg.scheme,
        "protocol": cfg.protocol_config,
        "threshold": metrics.get("threshold"),
        "metrics": metrics,
        "command": run.command,
        "scheme_parts": run.scheme.parts(),
        "extra": {
            "train_config": cfg.to_dict(),
            "data": {**run.data.info, "train_images": len(run.train_idx)},
            "threshold_rule": (
                f"cosine at FAR={cfg.validation.far} over all impostor pairs of held-out "
                f"images of training identities, {views} embeddings; accept when "
                "cosine >= threshold"
            ),
        },
    }
