"""The paper's Table 4 for every scheme with a model directory (``faceobf privacy table4
CONFIG``): the privacy harness (DN and pix2pix attacks; ``as-paper`` and ``adaptive``
attackers, the latter with the scheme's own preprocessing, :mod:`.adaptive`; scenarios C
and D; identity judged by the independent dlib recognizer against its floor and ceiling;
SRRA with the scheme's own model), the leakage verdicts that Table 3 reads, and a figure
per dataset like the paper's Figure 9 (originals, then one row of reconstructions per
scheme).

Outputs: ``<out_dir>/table4.json`` (the harness's results plus ``verdicts``, ``evaluated``
and ``missing``), ``<out_dir>/table4.md`` and ``<figure_dir>/figure9_<dataset>.png``.

Verdicts (``results["verdicts"][scheme]``): ``channel`` (scenario C) and ``database``
(scenario D) are ``"protected"`` when no row of that scheme and scenario (any dataset,
attack, variant) re-identifies victims more often than chance: the lower end of the 95%
interval of its dlib match rate stays at or below the upper end of both the impostor rate
(another victim's photo) and the floor (the attacker's average face), and the same for its
SRRA against the SRRA impostor and floor rates where a calibrated model exists; otherwise
``"leaks"``, with the row that shows it. A verdict is only as strong as the attack budget,
so the unprotected ``arcface`` scheme (the RGB face itself leaks) is the control: when it is
evaluated and its channel shows no leak, the attacks were too weak to show anything and
every ``"protected"`` becomes ``"inconclusive"``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.metrics import to_unit_rgb
from faceobfuscator.research.privacy.report import _plain, markdown_table, save_png
from faceobfuscator.research.privacy.run import (
    Log,
    Reconstructions,
    load_faces_for,
    reconstruct_all,
    score_all,
)

__all__ = ["CONTROL", "TABLE4_VARIANTS", "leakage_verdicts", "run_table4", "schemes_with_models"]

TABLE4_VARIANTS = ("as-paper", "adaptive")
#: the unprotected scheme whose leak shows that the attacks are strong enough to judge
CONTROL = "arcface"
_SCENARIO_LEAK = {"C": "channel", "D": "database"}


def schemes_with_models(cfg: PrivacyConfig) -> tuple[list[str], list[str]]:
    """``cfg.schemes`` split into those with a model directory (for SRRA and trained
    client parts) and those without."""
    present = [s for s in cfg.schemes if (cfg.srra_model_dir(s) / "config.json").is_file()]
    return present, [s for s in cfg.schemes if s not in present]


def _above(m: dict[str, Any] | None, *refs: dict[str, Any]) -> bool:
    return m is not None and m["ci95"][0] > max(r["ci95"][1] for r in refs)


def leakage_verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per scheme, ``channel`` and ``database`` verdicts (``"protected"``, ``"leaks"`` or
    ``"inconclusive"``) and, for a leak, the evidence (see the module); from
    :func:`score_all`'s results."""
    out: dict[str, dict[str, Any]] = {}
    for r in results["rows"]:
        verdict = out.setdefault(r["scheme"], {})
        leak = _SCENARIO_LEAK[r["scenario"]]
        verdict.setdefault(leak, "protected")
        base = results["baselines"][r["dataset"]]
        m = r["metrics"]
        why = []
        if _above(m["match"], base["impostor_match"], base["floor_match"]):
            why.append(f"dlib match {m['match']['mean']:.2f}")
        srra_base = (results.get("srra_baselines") or {}).get(r["scheme"], {}).get(r["dataset"])
        if srra_base and _above(m.get("srra"), srra_base["impostor"], srra_base["floor"]):
            why.append(f"SRRA {m['srra']['mean']:.2f}")
        if why:
            verdict[leak] = "leaks"
            verdict.setdefault(f"{leak}_evidence", []).append(
                f"{r['dataset']} {r['attack']} {r['variant']}: " + ", ".join(why)
            )
    if out.get(CONTROL, {}).get("channel") == "protected":  # the attacks show nothing
        for verdict in out.values():
            for leak in _SCENARIO_LEAK.values():
                if verdict.get(leak) == "protected":
                    verdict[leak] = "inconclusive"
    return out


def _best_rows(results: dict[str, Any], dataset: str) -> dict[str, dict[str, Any]]:
    """Per scheme, its scenario-C adaptive row with the highest dlib match rate (pix2pix
    first among equals): the reconstruction the figure shows."""
    best: dict[str, dict[str, Any]] = {}
    for r in results["rows"]:
        if r["dataset"] != dataset or r["scenario"] != "C" or r["variant"] != "adaptive":
            continue
        key = (r["metrics"]["match"]["mean"], r["attack"] == "pix2pix")
        old = best.get(r["scheme"])
        if old is None or key > (old["metrics"]["match"]["mean"], old["attack"] == "pix2pix"):
            best[r["scheme"]] = r
    return best


def save_figure9(
    originals: torch.Tensor,
    rows: dict[str, torch.Tensor],
    path: Path,
    *,
    note: str = "",
    tile: int = 64,
) -> None:
    """A PNG like the paper's Figure 9: the originals ``(V, 3, S, S)`` in [0, 1] on the
    first row, then one row per labelled reconstruction set of the same victims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {"original": originals, **rows}
    n_rows, n_cols = len(sets), originals.shape[0]
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(n_cols * tile / 80 + 1.6, n_rows * tile / 80 + 0.4),
        dpi=80,
        squeeze=False,
    )
    for r, (label, imgs) in enumerate(sets.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(imgs[c].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label.replace(" / ", "\n"), fontsize=6, rotation=0, ha="right")
    if note:
        fig.suptitle(note, fontsize=6)
    fig.subplots_adjust(left=0.2, right=0.99, bottom=0.01, top=0.95, wspace=0.03, hspace=0.05)
    save_png(fig, path)


_FIGURE_NOTES = {
    "cfp": "CFP photos: for non-commercial research use only (the dataset's terms)",
}


def _figures(
    results: dict[str, Any],
    recons: Reconstructions,
    originals: dict[str, np.ndarray],
    figure_dir: Path,
    victims: int,
) -> list[str]:
    written = []
    figure_dir.mkdir(parents=True, exist_ok=True)
    for dataset, probe in originals.items():
        best = _best_rows(results, dataset)
        if not best or victims == 0:
            continue
        rows = {
            f"{s} / {r['attack']}": to_unit_rgb(recons.sets[r["set"]][:victims])
            for s, r in best.items()
        }
        path = figure_dir / f"figure9_{dataset}.png"
        save_figure9(to_unit_rgb(probe[:victims]), rows, path, note=_FIGURE_NOTES.get(dataset, ""))
        written.append(str(path))
    return written


def _markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "# Table 4: privacy of every scheme with a model directory\n",
        f"Made by `{command}` in {results['seconds']} s; attacker: "
        f"{results['attacker_images']} faces of training identities; protocol "
        f"{results['protocol_hash'][:12]}. Attack budget: "
        + ", ".join(
            f"{a} {s.get('steps')} steps (at most {s.get('max_seconds')} s)"
            for a, s in results["config"]["attack_settings"].items()
        )
        + ". Cells: mean ±95% half-width. Match: share of reconstructions dlib matches to "
        "another photo of the victim. SRRA: share accepted as the victim by the scheme's own "
        "client and model at its threshold.\n",
    ]
    if results["missing"]:
        lines.append("Not evaluated (no model directory): " + ", ".join(results["missing"]) + ".\n")
    lines += [markdown_table(results), "## Leakage verdicts (read by Table 3)\n"]
    lines.append("| Scheme | Channel (C) | Database (D) | Evidence | Adaptive preprocessing |")
    lines.append("|---|---|---|---|---|")
    notes = {r["scheme"]: r["notes"] for r in results["rows"] if r["variant"] == "adaptive"}
    for scheme, v in results["verdicts"].items():
        evidence = "; ".join(v.get("channel_evidence", []) + v.get("database_evidence", []))
        lines.append(
            f"| {scheme} | {v.get('channel', '–')} | {v.get('database', '–')} | "
            f"{evidence or '–'} | {notes.get(scheme, '–')} |"
        )
    lines.append(
        "\nProtected: no attack, variant or dataset re-identifies victims (dlib match, SRRA) "
        "above the impostor and floor rates (95% intervals); only as strong as the attack "
        "budget above. Inconclusive: the same, but the unprotected control (arcface, the RGB "
        "face) does not leak either, so these attacks are too weak to tell.\n"
    )
    return "\n".join(lines)


def run_table4(
    cfg: PrivacyConfig,
    *,
    out_dir: str | Path = "results",
    figure_dir: str | Path = "docs",
    command: str = "faceobf privacy table4",
    log: Log = print,
) -> dict[str, Any]:
    """Run Table 4 over the schemes of ``cfg`` that have a model directory (``as-paper``
    and ``adaptive`` variants, both scenarios); write ``table4.json``, ``table4.md`` and
    the Figure 9 PNGs; return the results.

    Raises:
        ConfigError: no scheme of ``cfg`` has a model directory.
    """
    started = time.perf_counter()
    present, missing = schemes_with_models(cfg)
    if not present:
        raise ConfigError(
            f"none of the schemes {list(cfg.schemes)} has a model directory "
            f"(config.json under srra_models or {cfg.models_dir}/<scheme>); train one first"
        )
    for s in missing:
        log(f"{s}: no model directory at {cfg.srra_model_dir(s)}; not evaluated")
    run_cfg = dataclasses.replace(
        cfg,
        schemes=tuple(present),
        srra_models={s: p for s, p in cfg.srra_models.items() if s in present},
        variants=TABLE4_VARIANTS,
        scenarios=("C", "D"),
    )
    faces = load_faces_for(run_cfg, log)
    recons = reconstruct_all(run_cfg, faces, log=log)
    results = score_all(run_cfg, faces, recons, log=log)
    results["evaluated"], results["missing"] = present, missing
    results["verdicts"] = leakage_verdicts(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    originals = {v.dataset: v.probe for v in faces.victims}
    results["figures"] = _figures(results, recons, originals, Path(figure_dir), cfg.grid_victims)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table4.json").write_text(json.dumps(results, indent=1, default=_plain) + "\n")
    (out / "table4.md").write_text(_markdown(results, command))
    log(f"wrote {out / 'table4.json'}, {out / 'table4.md'} and {results['figures']}")
    return results
