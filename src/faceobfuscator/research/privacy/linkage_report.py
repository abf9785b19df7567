"""Reports of ``faceobf privacy linkage``: ``linkage.json``, a Markdown table
``linkage.md`` and the mated/non-mated score densities with D<->sys
(``linkage_densities.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_linkage_reports", "linkage_markdown", "density_figure"]

MAIN_SCHEMES = ("arcface", "arcface-fd", "faceobfuscator")
_MEASURES = (("linked_threshold", "thr"), ("linked_fmr", "FMR"), ("rank1", "R1"), ("rank10", "R10"))


def _cell(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.2f} [{lo:.2f}, {hi:.2f}]"


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _search_cells(search: dict[str, Any], datasets: list[str]) -> list[str]:
    return [_cell(search[d][m]) if d in search else "-" for d in datasets for m, _ in _MEASURES]


def linkage_markdown(results: dict[str, Any]) -> str:
    """The Markdown report of a linkage run's results."""
    cfg = results["config"]
    datasets = sorted(results["victims"])
    lines = [
        f"# Linkage attacks and unlinkability: {cfg['name']}",
        "",
        f"Attacker: {results['attacker_sources']} faces (SFace-initialised network, "
        f"{cfg['linker']['steps']} steps of {cfg['linker']['batch_size']}, at most "
        f"{cfg['linker']['max_seconds']} s each); victims {results['victims']}; gallery of "
        f"{results['gallery_identities']} identities (real photos); wall time of the last "
        f"invocation {results.get('seconds', 0)} s (rows measured by earlier invocations with "
        "the same settings are resumed, not measured again).",
        "",
        "Cells: share of victims and its Wilson 95% interval. thr: the victim's other photo "
        "passes the recognizer's own threshold; FMR: passes the threshold at which "
        f"{cfg['fmr']:.1%} of LFW non-mated pairs match; R1/R10: the victim's photo ranks "
        "first / in the top ten of the gallery. D<->sys (Gomez-Barrero et al. 2018): 0 = "
        "unlinkable, 1 = fully linkable across two deployments (same face / same person).",
    ]
    head = ["Scheme", "Deployment", "Variant", "Sc."]
    head += [f"{d.upper()} {short}" for d in datasets for _, short in _MEASURES]
    head += ["D<->sys face", "D<->sys person"]
    for r, info in results["recognizers"].items():
        note = (
            " Our server networks are initialised from SFace and distilled to it, so this "
            "attacker is not independent of the server network."
            if r == "sface"
            else ""
        )
        lines += [
            "",
            f"## Recognizer {r}",
            "",
            f"Own threshold {info['threshold']} (FMR {info['threshold_fmr']:.4f} on "
            f"{info['nonmated_pairs']} LFW non-mated pairs); FMR {info['fmr']} at score "
            f"{info['fmr_threshold']:.4f}.{note}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        rows = [x for x in results["rows"] + results.get("sealed", []) if x["recognizer"] == r]
        for x in rows:
            u = x["unlinkability"]
            cells = [x["scheme"], x["deployment"], x["variant"], x["scenario"]]
            cells += _search_cells(x["search"], datasets)
            cells += [f"{u['same_face']['d_sys']:.2f}", f"{u['same_person']['d_sys']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        unl = info.get("unlinkability_reference", {})
        for label, search in info["reference"].items():
            cells = [label, "", "", ""] + _search_cells(search, datasets) + ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
        for label, u in unl.items():
            cells = [f"D<->sys {label}", "", "", ""] + [""] * (len(head) - 6)
            cells += [f"{u['same_face']['d_sys']:.2f}", f"{u['same_person']['d_sys']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    server = results.get("server_unlinkability") or {}
    if server:
        lines += [
            "",
            "## Unlinkability with the server's own model",
            "",
            "Scores: cosine of the server model's embeddings of two independent protections.",
            "",
            "| Scheme / scenario | D<->sys same face | D<->sys same person |",
            "|---|---|---|",
        ]
        for k, u in server.items():
            lines.append(
                f"| {k} | {u['same_face']['d_sys']:.2f} | {u['same_person']['d_sys']:.2f} |"
            )
    mk = results.get("master_key_leak")
    if mk:
        lines += [
            "",
            f"Master key (and server private key) leaked: {mk['payloads']} sealed requests and "
            f"envelope rows decrypt to the plain payloads byte for byte: {mk['identical']}. "
            "A sealed deployment whose keys leaked therefore leaks what the plain rows above "
            "show (the ceiling of tier-two protection).",
        ]
    irr = results.get("irreversibility")
    if irr and "rows" in irr:
        lines += [
            "",
            "## Irreversibility: reconstruction attacks at dlib's FMR "
            f"{irr['fmr']:.1%} (distance <= {irr['distance_at_fmr']:.4f}) beside distance 0.6",
            "",
            f"Reconstructions: {irr['source']}.",
            "",
            "| Scheme | Variant | Sc. | Attack | Dataset | match @0.6 | match @FMR |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in irr["rows"]:
            lines.append(
                f"| {x['scheme']} | {x['variant']} | {x['scenario']} | {x['attack']} | "
                f"{x['dataset']} | {_cell(x['match_0.6'])} | {_cell(x['match_fmr'])} |"
            )
        for d, c in irr["ceiling"].items():
            lines.append(
                f"| originals (ceiling) | | | | {d} | {_cell(c['match_0.6'])} | "
                f"{_cell(c['match_fmr'])} |"
            )
    return "\n".join(lines) + "\n"


def density_figure(results: dict[str, Any], path: Path) -> Path | None:
    """Mated (same person) and non-mated score densities with D<->sys: per main scheme
    (scenario C), the server's model and the adaptive linkage network of each recognizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recognizers = list(results["recognizers"])
    grid: list[list[tuple[str, dict[str, Any] | None]]] = []
    for scheme in MAIN_SCHEMES:
        row: list[tuple[str, dict[str, Any] | None]] = [
            (
                f"{scheme}: server model",
                (results.get("server_unlinkability") or {}).get(f"{scheme}/C"),
            )
        ]
        for r in recognizers:
            link = next(
                (
                    x["unlinkability"]
                    for x in results["rows"]
                    if (x["scheme"], x["scenario"], x["variant"], x["recognizer"])
                    == (scheme, "C", "adaptive", r)
                ),
                None,
            )
            row.append((f"{scheme}: linkage to {r}", link))
        if any(u is not None for _, u in row):
            grid.append(row)
    if not grid:
        return None
    cols = 1 + len(recognizers)
    fig, axes = plt.subplots(len(grid), cols, figsize=(4.2 * cols, 2.5 * len(grid)), squeeze=False)
    for axes_row, row in zip(axes, grid, strict=True):
        for ax, (label, u) in zip(axes_row, row, strict=True):
            if u is None:
                ax.axis("off")
                continue
            p = u["same_person"]
            edges = p["edges"]
            centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
            ax.fill_between(centres, p["nonmated"], alpha=0.5, label="non-mated", step="mid")
            ax.fill_between(centres, p["mated"], alpha=0.5, label="mated (same person)", step="mid")
            ax.set_title(f"{label}\nD<->sys {p['d_sys']:.2f}", fontsize=8)
            ax.set_xlabel("score", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_linkage_reports(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``linkage.json``, ``linkage.md`` and ``linkage_densities.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "linkage.json").write_text(json.dumps(_round(results), indent=1) + "\n")
    (out / "linkage.md").write_text(linkage_markdown(results))
    density_figure(results, out / "linkage_densities.png")
    return out
