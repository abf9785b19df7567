"""Report writers: the results as JSON, a Markdown table laid out like the paper's Table 4
(rows: scheme, variant and scenario; columns: metric by dataset and attack), and PNG grids
of originals beside their reconstructions (the paper's Figures 9 and 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["write_reports", "markdown_table", "replay_markdown", "save_grid", "save_png"]

_METRICS = (("ssim", "SSIM", 3), ("psnr", "PSNR", 2), ("cos", "COS", 3), ("match", "Match", 2))
_ATTACK_LABELS = {"dn": "DN", "pix2pix": "cGAN"}


def _cell(m: dict[str, Any] | None, digits: int) -> str:
    if m is None:
        return "–"
    lo, hi = m["ci95"]
    return f"{m['mean']:.{digits}f} ±{(hi - lo) / 2:.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One table per dataset: a row per scheme, variant and scenario; for each attack the
    columns SSIM, PSNR, COS, dlib match rate and SRRA (mean ±95% half-width); then the
    dataset's reference points."""
    rows = results["rows"]
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    lines: list[str] = []
    for dataset, base in results["baselines"].items():
        lines.append(f"### {dataset.upper()} ({base['victims']} victims)\n")
        head = ["Scheme", "Variant", "Sc."]
        for a in attacks:
            label = _ATTACK_LABELS.get(a, a)
            head += [f"{label} {name}" for _, name, _ in _METRICS] + [f"{label} SRRA"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        keyed: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        for r in rows:
            if r["dataset"] == dataset:
                keyed.setdefault((r["scheme"], r["variant"], r["scenario"]), {})[r["attack"]] = r
        for (scheme, variant, scenario), by_attack in keyed.items():
            cells = [scheme, variant, scenario]
            for a in attacks:
                r = by_attack.get(a)
                m = r["metrics"] if r else {}
                cells += [_cell(m.get(k), d) for k, _, d in _METRICS]
                if r is None:
                    cells.append("–")
                else:
                    cells.append("pending" if r["srra_pending"] else _cell(m.get("srra"), 2))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            "Reference points: originals matched to their other photo (ceiling) "
            f"{_cell(base['ceiling_match'], 2)}; another victim's photo (impostor) "
            f"{_cell(base['impostor_match'], 2)}; the attacker's average face (floor) "
            f"{_cell(base['floor_match'], 2)}, with SSIM {_cell(base['floor_ssim'], 3)}, "
            f"PSNR {_cell(base['floor_psnr'], 2)}, COS {_cell(base['floor_cos'], 3)}.\n"
        )
        for scheme, by_dataset in (results.get("srra_baselines") or {}).items():
            if dataset in by_dataset:
                srra, model = by_dataset[dataset], results["srra_models"][scheme]
                lines.append(
                    f"SRRA reference points for {scheme} ({model['directory']}, threshold "
                    f"{model['threshold']:.3f}): originals (ceiling) {_cell(srra['ceiling'], 2)}; "
                    f"another victim's photo (impostor) {_cell(srra['impostor'], 2)}; the "
                    f"attacker's average face (floor) {_cell(srra['floor'], 2)}.\n"
                )
    return "\n".join(lines)


def replay_markdown(results: dict[str, Any]) -> str:
    """The report of ``faceobf privacy replay``: replay acceptance per deployment and leak,
    then the reconstruction attack on a sealed deployment's leaks beside its floor."""
    model, victims = results["model"], results["victims"]
    lines = [
        "# Replay and sealed deployments\n",
        f"Server model {model['directory']} at its calibrated threshold "
        f"{model['threshold']:.3f}"
        + (" (UNTRAINED random weights)" if model["random"] else "")
        + f"; {victims['count']} {victims['dataset'].upper()} test-fold victims, each enrolled "
        "from one photo and verifying with another; protocol "
        f"{results['protocol_hash'][:12]}; {results['seconds']} s.\n",
        "## Replay: a leaked feature, re-obfuscated, submitted as the victim\n",
        "Plain: the paper's design. Sealed: payloads sealed to the server's key and bound to a "
        "single-use challenge (required), templates encrypted at rest. The first row of each "
        "deployment is the victims' own verification (the model's true acceptance rate on "
        "these pairs). Cells: share accepted, 95% Wilson interval.\n",
        "| Deployment | Leak | Sc. | Attempts | Accepted | Outcomes |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["replay"]:
        outcomes = "; ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
        acc = r["acceptance"]
        lines.append(
            f"| {r['deployment']} | {r['leak']} | {r['scenario']} | {r['attempts']} | "
            f"{acc['mean']:.2f} [{acc['ci95'][0]:.2f}, {acc['ci95'][1]:.2f}] | {outcomes} |"
        )
    lines += [
        "",
        "## Reconstruction from what a sealed deployment leaks\n",
        "The attacker trains on (ciphertext bytes, face) pairs from its own copy of the "
        "client: request bodies sealed to the published key (C), or rows of its own "
        "enrolments encrypted under the master key (D). Cells: mean ±95% half-width.\n",
        "| Sc. | Attack (steps) | SSIM | PSNR | COS | Match | SRRA | Output spread "
        "(originals) | Mean abs. diff. to average face | Byte mean / std | Equal bytes, "
        "two encryptions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sealed"]:
        m, o, c = r["metrics"], r["output"], r["ciphertexts"]
        label = _ATTACK_LABELS.get(r["attack"], r["attack"])
        cells = [_cell(m[k], d) for k, _, d in _METRICS] + [_cell(m["srra"], 2)]
        lines.append(
            f"| {r['scenario']} | {label} ({r['training']['steps']}) | "
            + " | ".join(cells)
            + f" | {o['spread_across_victims']:.4f} ({o['originals_spread']:.3f}) | "
            f"{o['mean_abs_difference_to_average_face']:.4f} | {c['byte_mean']:.1f} / "
            f"{c['byte_std']:.1f} | {c['equal_bytes_between_two_encryptions']:.4f} |"
        )
    base, srra = results["sealed"][0]["baselines"], results["sealed"][0]["srra_baselines"]
    lines += [
        "",
        "Floor, the attacker's average face: SSIM "
        f"{_cell(base['floor_ssim'], 3)}, PSNR {_cell(base['floor_psnr'], 2)}, COS "
        f"{_cell(base['floor_cos'], 3)}, match {_cell(base['floor_match'], 2)}, SRRA "
        f"{_cell(srra['floor'], 2)}. Ceiling, the original photos: match "
        f"{_cell(base['ceiling_match'], 2)}, SRRA {_cell(srra['ceiling'], 2)}; another "
        f"victim's photo: match {_cell(base['impostor_match'], 2)}, SRRA "
        f"{_cell(srra['impostor'], 2)}. Uniform random bytes: mean 127.5, std 73.9, equal "
        "bytes 0.0039.\n",
    ]
    return "\n".join(lines)


def save_grid(
    originals: torch.Tensor, columns: dict[str, torch.Tensor], path: Path, *, tile: int = 80
) -> None:
    """A grid PNG: a row per victim, the original first, then one column per labelled
    reconstruction set; tiles resized to ``tile`` pixels and the image reduced to a 256
    colour palette to keep the file small."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {"original": originals, **columns}
    n_rows, n_cols = originals.shape[0], len(sets)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(n_cols * tile / 80, n_rows * tile / 80 + 0.9),
        dpi=80,
        squeeze=False,
    )
    for c, (label, imgs) in enumerate(sets.items()):
        for r in range(n_rows):
            ax = axes[r][c]
            ax.imshow(imgs[r].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][c].set_title(label.replace(" / ", "\n"), fontsize=6)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.03, hspace=0.03)
    save_png(fig, path)


def save_png(fig: Any, path: Path) -> None:
    """Save and close a matplotlib figure as a PNG reduced to a 256 colour palette."""
    import matplotlib.pyplot as plt
    from PIL import Image

    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    with Image.open(tmp) as im:
        im.convert("RGB").quantize(256).save(path, optimize=True)
    tmp.unlink()


def write_reports(
    results: dict[str, Any],
    grids: dict[str, dict[str, torch.Tensor]],
    originals: dict[str, torch.Tensor],
    out_dir: Path,
) -> None:
    """``results.json``, ``table.md`` and ``grid_<dataset>.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=_plain) + "\n")
    header = (
        f"# Privacy evaluation: {results['config']['name']}\n\n"
        f"Attacker: {results['attacker_images']} faces of training identities; "
        f"protocol {results['protocol_hash'][:12]}; {results['seconds']} s.\n"
        "Cells: mean ±95% half-width. Match: share of reconstructions that dlib's ResNet "
        "matches (distance < 0.6) to another photo of the victim. SRRA: share accepted as the "
        "victim by our own client and server at the model's threshold.\n\n"
    )
    (out_dir / "table.md").write_text(header + markdown_table(results))
    for dataset, columns in grids.items():
        if columns and dataset in originals:
            save_grid(originals[dataset], columns, out_dir / f"grid_{dataset}.png")


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__}")
