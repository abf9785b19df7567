"""The run's records: a JSON-lines metrics log and a PNG of loss and validation accuracy
per epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "plot_curves", "plot_runs"]


class MetricsLog:
    """Append-only ``metrics.jsonl``; every record has a ``kind`` (``step`` or ``epoch``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, kind: str, **fields: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, **fields}) + "\n")

    def records(self, kind: str) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("kind") == kind:
                    out.append(rec)
        return out

    def truncate_after(self, epoch: int) -> None:
        """Drop records past ``epoch`` (resuming from that epoch's checkpoint)."""
        if not self.path.is_file():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("epoch", 0) <= epoch
        ]
        self.path.write_text("".join(k + "\n" for k in keep))


def plot_curves(log: MetricsLog, out: str | Path, title: str = "") -> Path:
    """Loss (left axis) and validation accuracy and TAR (right axis) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = log.records("epoch")
    x = [r["epoch"] for r in epochs]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = log.records("step")
    per_epoch = epochs[0]["step"] / epochs[0]["epoch"] if epochs and epochs[0]["step"] else 0
    if steps and per_epoch:  # the loss every log window, on the same epoch axis
        ax.plot(
            [r["step"] / per_epoch for r in steps],
            [r["loss"] for r in steps],
            "-",
            color="tab:blue",
            alpha=0.35,
            lw=1,
        )
    ax.plot(x, [r["train_loss"] for r in epochs], "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (ArcFace or distillation)", color="tab:blue")
    ax2 = ax.twinx()
    for key, style, label in (
        ("val_accuracy", "s-", "validation accuracy"),
        ("val_tar", "^--", "validation TAR @ FAR"),
    ):
        ys = [r.get(key, math.nan) for r in epochs]
        ax2.plot(x, ys, style, color="tab:red", label=label)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("validation", color="tab:red")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def plot_runs(logs: dict[str, str | Path], out: str | Path, *, title: str = "") -> Path:
    """Training loss against images seen for several runs (one line each, from their
    ``metrics.jsonl`` step records), with each run's final validation TAR in the legend.

    Args:
        logs: label -> ``metrics.jsonl`` path.
        out: the PNG to write.

    Raises:
        FileNotFoundError: a log is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for label, path in logs.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"no metrics log at {path}")
        log = MetricsLog(path)
        steps, epochs = log.records("step"), log.records("epoch")
        config = Path(path).with_name("train_config.json")
        batch = json.loads(config.read_text())["batch_size"] if config.is_file() else 1
        tar = epochs[-1].get("val_tar") if epochs else None
        name = label if tar is None else f"{label} (validation TAR {tar:.3f})"
        ax.plot([r["step"] * batch for r in steps], [r["loss"] for r in steps], "-", label=name)
    ax.set_xlabel("training images seen")
    ax.set_ylabel("training loss")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
