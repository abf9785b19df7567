"""The run's records: a JSON-lines metrics log and a PNG of loss and validation accuracy
per epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "plot_curves"]


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
    ax.plot(x, [r["train_loss"] for r in epochs], "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ArcFace loss", color="tab:blue")
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
