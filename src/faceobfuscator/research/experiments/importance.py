"""Experiment 1, channel importance (the paper's Algorithm 3, Appendix A, Figures 4 and
12): the auxiliary network, a learnable weight per greyscale block-DCT channel
(initialised to 1) multiplying its channel before the recognition network, trained with
it by the experiment's recipe; a channel's importance is the magnitude of its weight.

Variants, as in Figure 12: (a) the 64 raw DCT channels (``dct-raw``); (b) the raw
channels without the ``remove`` most important of (a), retrained; (c) also without the
``remove`` most important of (b), retrained; (d) the 64 channels each standardised
(self-normalised, ``dct-normalised``, as the client does). The removal order of the
other experiments is (d)'s importance, computed here, never written down by hand.

Dead channels. The protocol upsamples the face by the block size before the block DCT
(``protocol.upsampling``), and some channels of such an image are zero up to rounding
(with 8x half-pixel bilinear upsampling, the 15 of row or column 4: their standard
deviation on LFW crops is 1e-16 to 1e-32 against 1e-6 to 3 for the others).
:func:`live_channels` finds them from the transform itself; they get no importance (their
weight sees no gradient and stays at 1), and the sweeps leave them out: self-normalised,
they stay near 0, the obfuscation's smallest scales push them below float32's normal
range, and identity recovery then returns NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import channel_name
from faceobfuscator.recognition.modeldir import WEIGHTS_NAME, read_model_config
from faceobfuscator.recognition.variants import (
    WEIGHTS_KEY,
    register_weighted_backbone,
)
from faceobfuscator.research.experiments.runner import Runner

__all__ = [
    "VARIANTS",
    "channel_name",
    "importance_variant",
    "live_channels",
    "learned_importance",
    "removal_order",
    "run_channel_importance",
    "plot_importance",
]

#: Figure 12's panels: label, scheme, whether the channels are standardised.
VARIANTS = {
    "a": ("raw DCT channels", "dct-raw"),
    "b": ("raw, most important of (a) removed", "dct-raw"),
    "c": ("raw, most important of (a) and (b) removed", "dct-raw"),
    "d": ("standardised channels", "dct-normalised"),
}


def removal_order(importance: np.ndarray | list[float | None]) -> list[int]:
    """Channel indices from the most to the least important; channels without an
    importance (``NaN`` or ``None``: removed before training) are left out. Ties keep
    the lower index first.

    Raises:
        InputError: not a 1-D sequence, or no channel has an importance.
    """
    imp = np.array([np.nan if v is None else v for v in importance], dtype=np.float64)
    if imp.ndim != 1:
        raise InputError(f"importance must be 1-D (one value per channel), got {imp.shape}")
    present = np.flatnonzero(~np.isnan(imp))
    if present.size == 0:
        raise InputError("no channel has an importance")
    order = present[np.argsort(-imp[present], kind="stable")]
    return [int(k) for k in order]


def live_channels(protocol: ProtocolConfig) -> list[int]:
    """The channels of ``protocol``'s block DCT that are not zero for every face: all but
    :func:`~faceobfuscator.protocol.frequency.dead_channels` (computed from the
    transform's operators, not from data)."""
    from faceobfuscator.protocol.frequency import dead_channels

    dead = set(dead_channels(protocol))
    return [k for k in range(protocol.scale**2) if k not in dead]


def learned_importance(model_dir: str | Path, protocol: ProtocolConfig) -> np.ndarray:
    """``|w|`` of the auxiliary weights of a ``weighted-*`` model, as ``(scale**2,)``
    float64 over all channels (``NaN`` for channels the model does not see and for dead
    channels, see :func:`live_channels`).

    Raises:
        ConfigError: the model has no auxiliary weights.
    """
    from safetensors.torch import load_file

    state = load_file(str(Path(model_dir) / WEIGHTS_NAME))
    if WEIGHTS_KEY not in state:
        raise ConfigError(f"{model_dir} has no {WEIGHTS_KEY}: not an auxiliary-network model")
    w = state[WEIGHTS_KEY].double().abs().numpy()
    out = np.full(protocol.scale**2, np.nan)
    out[list(protocol.channels)] = w
    dead = sorted(set(range(protocol.scale**2)) - set(live_channels(protocol)))
    out[dead] = np.nan
    return out


def importance_variant(runner: Runner, scheme: str, channels: list[int]) -> dict[str, Any]:
    """Train (or reuse) the auxiliary network on ``channels`` of ``scheme`` and return its
    model, channels, importance per channel (``None`` where absent), order and
    validation accuracy."""
    protocol = {"channels": sorted(channels)}
    backbone = register_weighted_backbone(runner.backbone)
    model_dir = runner.model(scheme, protocol, backbone=backbone)
    proto = ProtocolConfig.from_dict(runner.protocol(protocol))
    imp = learned_importance(model_dir, proto)
    metrics = read_model_config(model_dir).get("metrics") or {}
    live = set(live_channels(proto))
    return {
        "scheme": scheme,
        "model": str(model_dir),
        "channels": sorted(channels),
        "dead": [k for k in sorted(channels) if k not in live],
        "importance": [None if np.isnan(v) else float(v) for v in imp],
        "order": removal_order(imp),
        "val_accuracy": metrics.get("val_accuracy"),
    }


def run_channel_importance(runner: Runner) -> dict[str, Any]:
    """Settings: ``variants`` (subset of ``a``-``d``, default all), ``remove`` (channels
    removed per retraining step, default 1). Returns the results (JSON-ready): per
    variant the channels, removed channels, importance per channel and order; and
    ``removal_order``, (d)'s order (or (a)'s without (d))."""
    s = runner.config.settings
    unknown = sorted(set(s) - {"variants", "remove"})
    if unknown:
        raise ConfigError(f"unknown channel-importance settings {unknown}; known: remove, variants")
    wanted = list(s.get("variants", list(VARIANTS)))
    remove = int(s.get("remove", 1))
    bad = [v for v in wanted if v not in VARIANTS]
    if bad or remove < 1:
        raise ConfigError(f"variants must be among {list(VARIANTS)} and remove >= 1; got {s}")
    n = ProtocolConfig.from_dict(runner.protocol({})).scale ** 2
    everything = list(range(n))
    out: dict[str, Any] = {"variants": {}, "remove": remove}
    removed: list[int] = []
    last = None
    raw = [v for v in wanted if v != "d"]
    for v in ("a", "b", "c"):  # each removal needs the variants before it
        if not raw or v > max(raw):
            break
        if last is not None:
            removed = removed + last["order"][:remove]
        label, scheme = VARIANTS[v]
        runner.log(f"({v}) {label}: {len(everything) - len(removed)} channels")
        last = importance_variant(runner, scheme, [k for k in everything if k not in removed])
        out["variants"][v] = {"label": label, "removed": list(removed), **last}
    if "d" in wanted:
        label, scheme = VARIANTS["d"]
        runner.log(f"(d) {label}")
        trained = importance_variant(runner, scheme, everything)
        out["variants"]["d"] = {"label": label, "removed": [], **trained}
    source = "d" if "d" in out["variants"] else "a"
    out["removal_order"] = out["variants"][source]["order"] if source in out["variants"] else None
    out["removal_order_from"] = source
    return out


def plot_importance(results: dict[str, Any], path: str | Path) -> None:
    """Figure 12's layout: one 8x8 map of |w| per variant (row ``i`` vertical, column
    ``j`` horizontal frequency), coloured over the map's own range, removed channels
    crossed out (x), dead channels marked 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = results["variants"]
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3.4), squeeze=False)
    for ax, (v, r) in zip(axes[0], variants.items(), strict=True):
        imp = np.array([np.nan if x is None else x for x in r["importance"]], dtype=np.float64)
        side = int(round(np.sqrt(imp.size)))
        lo, hi = np.nanmin(imp), np.nanmax(imp)
        # the colours span this map's own range: short runs move the weights little
        image = ax.imshow(
            np.ma.masked_invalid(imp.reshape(side, side)), cmap="viridis", vmin=lo, vmax=hi
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        for k in r["removed"]:
            ax.text(k % side, k // side, "x", ha="center", va="center", color="red")
        for k in r.get("dead", []):
            ax.text(k % side, k // side, "0", ha="center", va="center", color="grey", fontsize=6)
        ax.set_title(f"({v}) {r['label']}\n|w| from {lo:.4f} to {hi:.4f}", fontsize=8)
        ax.set_xticks(range(side))
        ax.set_yticks(range(side))
        ax.tick_params(labelsize=6)
    fig.suptitle("channel importance |w| (auxiliary network; i vertical, j horizontal)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
