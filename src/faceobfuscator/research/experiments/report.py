"""Tables and figures of the sweep experiments (2-6): one Markdown table of every row, and
a figure of accuracy (left) and the identity judge's match rate of the reconstructions
(right, with the floor and ceiling) against the setting, one line per series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["sweep_table", "plot_sweep", "importance_table"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _share(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    lo, hi = m["ci95"]
    return f"{100 * m['mean']:.0f} [{100 * lo:.0f}, {100 * hi:.0f}]"


def _variants(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(dataset, variant) pairs present in any row's privacy, in a stable order."""
    seen: dict[tuple[str, str], None] = {}
    for r in rows:
        for dataset, per in (r.get("privacy") or {}).items():
            for v in per:
                if v not in ("floor", "ceiling"):
                    seen[(dataset, v)] = None
    return list(seen)


def _benchmarks(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for b in r.get("accuracy") or {}:
            seen[b] = None
    return list(seen)


def _bounds(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Floor and ceiling per victim dataset (the same victims for every row)."""
    out: dict[str, tuple[Any, Any]] = {}
    for r in rows:
        for dataset, per in (r.get("privacy") or {}).items():
            out.setdefault(dataset, (per.get("floor"), per.get("ceiling")))
    return out


def sweep_table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per setting; accuracy (%) and TAR at FAR (%) per
    benchmark, accuracy loss where computed, match rate (%) [95% interval] per victim
    dataset and attacker variant; then the floor and ceiling of each victim dataset."""
    rows = results["rows"]
    benches = _benchmarks(rows)
    pairs = _variants(rows)
    loss = any("accuracy_loss" in r for r in rows)
    head = ["series", "setting", "scheme"]
    head += [f"{b} acc. %" for b in benches] + [f"{b} TAR %" for b in benches]
    head += [f"{b} loss (pts)" for b in benches] if loss else []
    head += [f"match {v} ({d}) %" for d, v in pairs] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = r.get("accuracy") or {}
        cells = [r.get("group") or "-", str(r.get("setting")), f"`{r['scheme']}`"]
        cells += [
            f"{100 * acc[b]['accuracy']:.2f} ± {100 * acc[b]['std']:.2f}" if b in acc else "-"
            for b in benches
        ]
        cells += [_pct(acc[b]["tar"]) if b in acc else "-" for b in benches]
        if loss:
            lost = r.get("accuracy_loss") or {}
            cells += [f"{100 * lost[b]:.2f}" if b in lost else "-" for b in benches]
        priv = r.get("privacy") or {}
        cells += [_share((priv.get(d) or {}).get(v)) for d, v in pairs]
        cells.append(r.get("status", "ok"))
        lines.append("| " + " | ".join(cells) + " |")
    for dataset, (floor, ceiling) in _bounds(rows).items():
        lines.append(
            f"\nVictims {dataset}: floor (the attacker's average face) {_share(floor)} %, "
            f"ceiling (the victims' own photos) {_share(ceiling)} %."
        )
    return "\n".join(lines) + "\n"


def importance_table(results: dict[str, Any]) -> str:
    """A Markdown table of experiment 1: per variant the channels kept, the ten most
    important channels with their |w| relative to the largest, and validation accuracy."""
    from faceobfuscator.research.experiments.importance import channel_name

    lines = [
        "| variant | channels | removed | \\|w\\| range | most important (\\|w\\| / max) | val. accuracy % |",
        "|---|---|---|---|---|---|",
    ]
    for v, r in results["variants"].items():
        imp = r["importance"]
        top = max(x for x in imp if x is not None)
        bottom = min(x for x in imp if x is not None)
        best = ", ".join(f"{channel_name(k)} {imp[k] / top:.3f}" for k in r["order"][:10])
        removed = ", ".join(channel_name(k) for k in r["removed"]) or "-"
        lines.append(
            f"| ({v}) {r['label']} | {len(r['channels'])} | {removed} | "
            f"{bottom:.4f} - {top:.4f} | {best} | "
            f"{_pct(r.get('val_accuracy'))} |"
        )
    dead: list[int] = next((r["dead"] for r in results["variants"].values() if r.get("dead")), [])
    if dead:
        names = ", ".join(channel_name(k) for k in dead)
        lines.append(
            f"\nDead channels (zero up to rounding after upsampling, not ranked): {names}."
        )
    order = results.get("removal_order")
    if order:
        names = ", ".join(channel_name(k) for k in order)
        lines.append(f"\nRemoval order (from ({results['removal_order_from']})): {names}.")
    return "\n".join(lines) + "\n"


def plot_sweep(results: dict[str, Any], path: str | Path, *, title: str) -> None:
    """Accuracy per benchmark (left) and match rate per victim dataset and variant
    (right) against the settings, one line per series; floor and ceiling as dashed
    lines. Rows without figures are left out of their line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    groups = list(dict.fromkeys(r.get("group") or "" for r in rows))
    settings = list(dict.fromkeys(str(r["setting"]) for r in rows))
    x_of = {s: i for i, s in enumerate(settings)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for g in groups:
        mine = [r for r in rows if (r.get("group") or "") == g]
        for b in _benchmarks(mine):
            pts = [
                (x_of[str(r["setting"])], r["accuracy"][b]["accuracy"])
                for r in mine
                if b in (r.get("accuracy") or {})
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                left.plot(xs, 100 * np.array(ys), "o-", label=f"{g} {b}".strip())
        for d, v in _variants(mine):
            pts = [
                (x_of[str(r["setting"])], r["privacy"][d][v]["mean"])
                for r in mine
                if v in ((r.get("privacy") or {}).get(d) or {})
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                right.plot(xs, 100 * np.array(ys), "o-", label=f"{g} {v} ({d})".strip())
    for d, (floor, ceiling) in _bounds(rows).items():
        for m, name in ((floor, "floor"), (ceiling, "ceiling")):
            if m:
                right.axhline(100 * m["mean"], ls="--", lw=0.8, color="grey")
                right.text(0, 100 * m["mean"], f"{name} ({d})", fontsize=7, va="bottom")
    for ax, label in ((left, "verification accuracy %"), (right, "judge's match rate %")):
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels(settings, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    right.set_ylim(-2, 102)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
