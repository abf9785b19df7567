"""The privacy evaluation harness: train every attack for every scheme, attacker variant and
scenario, reconstruct the victims, score, and write the reports.

Work is shared where it is provably the same: a network is trained once per (scheme,
leaked tensor, preprocessing, attack) and reused by variants whose preprocessing is equal;
scenario D reuses scenario C's results when the scheme stores exactly what it sends (the
record says so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ProtocolConfig
from ..errors import ConfigError
from ..modeldir import RecognitionModel, load_model
from ..schemes import Scheme, get_scheme
from ..split import compute_split, read_split
from .attacks import ReconstructionAttack, TrainLog, get_attack
from .config import PrivacyConfig
from .data import attacker_entries, check_disjoint, load_faces, victims
from .evaluate import VictimSet, baselines, score
from .identity import DlibRecognizer
from .metrics import to_unit_rgb
from .report import write_reports
from .variants import Leak, Preprocessor, prepare_variant

__all__ = ["run_privacy", "make_leak", "batch_source"]

Log = Callable[[str], None]


def make_leak(scheme: Scheme, scenario: str) -> Leak:
    """What the attacker obtains for uint8 faces: scenario C the sent features, D what the
    server stores of them."""
    if scenario == "C":
        return lambda faces, g: scheme.client_features(faces, generator=g)
    if scenario == "D":
        return lambda faces, g: scheme.stored(scheme.client_features(faces, generator=g))
    raise ConfigError(f"unknown scenario {scenario!r}; known: ['C', 'D']")


def batch_source(
    faces: torch.Tensor,
    leak: Leak,
    pre: Preprocessor,
    *,
    batch_size: int,
    generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (features, image) batches: random attacker faces, a fresh client run for
    each batch (the attacker queries its copy of the client), then the variant's
    preprocessing. Faces are uint8 ``(N, S, S, 3)``."""
    n = faces.shape[0]
    while True:
        idx = torch.randint(0, n, (batch_size,), generator=generator)
        batch = faces[idx]
        yield pre(leak(batch, generator)), to_unit_rgb(batch)


def _load_srra_model(models_dir: Path, scheme: str, log: Log) -> RecognitionModel | None:
    directory = models_dir / scheme
    if not (directory / "config.json").is_file():
        log(f"  SRRA pending for {scheme}: no model at {directory}")
        return None
    model = load_model(directory)
    if model.threshold is None or model.config.get("random"):
        log(f"  SRRA pending for {scheme}: {directory} has no calibrated threshold or is random")
        return None
    return model


def _victim_sets(
    cfg: PrivacyConfig, split: Any, attacker_keys: set[str], rec: DlibRecognizer, log: Log
) -> list[VictimSet]:
    rng = np.random.default_rng(cfg.seed + 1)
    sets = []
    for dataset in cfg.victim_datasets:
        chosen = victims(
            dataset,
            split,
            cfg.aligned_dir,
            cfg.datasets_root,
            count=cfg.victims_per_dataset,
            rng=rng,
        )
        check_disjoint(attacker_keys, chosen, split)
        probe = load_faces([v.probe for v in chosen])
        reference = load_faces([v.reference for v in chosen])
        log(f"victims {dataset}: {len(chosen)} people, disjoint from the attacker's")
        sets.append(
            VictimSet(
                dataset,
                probe,
                reference,
                to_unit_rgb(probe),
                rec.embed(probe),
                rec.embed(reference),
                [v.identity for v in chosen],
            )
        )
    return sets


def run_privacy(cfg: PrivacyConfig, *, log: Log = print) -> dict[str, Any]:
    """Run the evaluation described by ``cfg``; write JSON, Markdown and PNG grids to
    ``cfg.out_dir`` and return the results."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    protocol: ProtocolConfig = cfg.load_protocol()
    split = read_split(cfg.split) if cfg.split else compute_split(cfg.datasets_root)
    rec = DlibRecognizer(protocol)

    entries = attacker_entries(split, cfg.aligned_dir, cfg.datasets_root)
    attacker_keys = {k for k, _ in entries}
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(entries), size=min(cfg.attacker_images, len(entries)), replace=False)
    attacker = torch.from_numpy(load_faces([entries[i][1] for i in sorted(pick)]))
    log(f"attacker: {attacker.shape[0]} faces of {len(attacker_keys)} training identities")
    average_face = attacker.double().mean(0).round().to(torch.uint8).numpy()
    probe_faces = attacker[: cfg.probe_images]

    sets = _victim_sets(cfg, split, attacker_keys, rec, log)
    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash,
        "split_digest": split.digest,
        "attacker_images": int(attacker.shape[0]),
        "baselines": {s.dataset: baselines(s, average_face, rec) for s in sets},
        "rows": [],
        "training": {},
    }
    grids: dict[str, dict[str, torch.Tensor]] = {s.dataset: {} for s in sets}
    trained: dict[tuple[str, ...], tuple[ReconstructionAttack, TrainLog]] = {}
    scored: dict[tuple[Any, ...], dict[str, Any]] = {}
    g = torch.Generator().manual_seed(cfg.seed + 2)

    for scheme_name in cfg.schemes:
        scheme = get_scheme(scheme_name, protocol)
        model = _load_srra_model(Path(cfg.models_dir), scheme_name, log)
        c_leak_key = None
        for scenario in cfg.scenarios:
            leak = make_leak(scheme, scenario)
            leak_key = _leak_key(scheme, scenario, probe_faces)
            if scenario == "D" and leak_key == c_leak_key:
                results["rows"].extend(_copy_c_rows(results["rows"], scheme_name))
                log(f"{scheme_name} D: the scheme stores what it sends; D = C")
                continue
            if scenario == "C":
                c_leak_key = leak_key
            leaked = [leak(torch.from_numpy(s.probe), g) for s in sets]
            for variant in cfg.variants:
                pre = prepare_variant(
                    variant,
                    scheme=scheme,
                    leak=leak,
                    probe_faces=probe_faces,
                    generator=g,
                    extras=cfg.adaptive_extras,
                    refine_settings=cfg.refine,
                )
                log(f"{scheme_name} {scenario} {variant}: {pre.notes}")
                for attack_name in cfg.attacks:
                    key = (scheme_name, leak_key, pre.key, attack_name)
                    if key not in trained:
                        trained[key] = _train(cfg, attack_name, pre, attacker, leak, log)
                        results["training"]["/".join(key)] = trained[key][1].to_dict()
                    attack = trained[key][0]
                    for s, lk in zip(sets, leaked, strict=True):
                        skey = (*key, pre.refine_with is not None, s.dataset)
                        if skey not in scored:
                            recon = pre.refine(attack.reconstruct(pre(lk)), lk)
                            srra = (model, scheme, g) if model is not None else None
                            metrics, _ = score(recon, s, rec, srra=srra)
                            scored[skey] = metrics
                            label = f"{scheme_name} / {variant} / {attack_name}"
                            if scenario == "C" and cfg.grid_victims:
                                grids[s.dataset][label] = recon[: cfg.grid_victims]
                        results["rows"].append(
                            {
                                "scheme": scheme_name,
                                "variant": variant,
                                "scenario": scenario,
                                "attack": attack_name,
                                "dataset": s.dataset,
                                "preprocessing": pre.key,
                                "refined": pre.refine_with is not None,
                                "notes": pre.notes,
                                "srra_pending": model is None,
                                "metrics": scored[skey],
                            }
                        )
                        m = scored[skey]
                        log(
                            f"  {attack_name} {s.dataset}: SSIM {m['ssim']['mean']:.3f} "
                            f"PSNR {m['psnr']['mean']:.2f} COS {m['cos']['mean']:.3f} "
                            f"match {m['match']['mean']:.2f}"
                        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    originals = {s.dataset: s.probe_rgb[: cfg.grid_victims] for s in sets}
    write_reports(results, grids, originals, Path(cfg.out_dir))
    log(f"wrote {cfg.out_dir} in {results['seconds']} s")
    return results


def _leak_key(scheme: Scheme, scenario: str, probe: torch.Tensor) -> str:
    """``"sent"`` unless the stored tensor differs from the sent one on the probe faces."""
    if scenario == "C":
        return "sent"
    sent = scheme.client_features(probe, generator=torch.Generator().manual_seed(0))
    stored = scheme.stored(sent)
    same = stored.shape == sent.shape and bool(torch.equal(stored, sent))
    return "sent" if same else "stored"


def _copy_c_rows(rows: list[dict[str, Any]], scheme: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["scheme"] == scheme and r["scenario"] == "C":
            out.append(dict(r, scenario="D", notes=r["notes"] + "; D = C (stored == sent)"))
    return out


def _train(
    cfg: PrivacyConfig,
    attack_name: str,
    pre: Preprocessor,
    attacker: torch.Tensor,
    leak: Leak,
    log: Log,
) -> tuple[ReconstructionAttack, TrainLog]:
    settings = cfg.settings_for(attack_name)
    attack = get_attack(attack_name, pre.in_channels, settings, seed=cfg.seed, device=cfg.device)
    g = torch.Generator().manual_seed(cfg.seed + 3)
    batches = batch_source(attacker, leak, pre, batch_size=settings.batch_size, generator=g)
    train_log = attack.fit(batches)
    tail = [round(v, 4) for v in train_log.losses[-3:]]
    log(
        f"  trained {attack_name} on {pre.key}: {settings.steps} steps in "
        f"{train_log.seconds:.0f} s, last losses {tail}, non-finite steps "
        f"{train_log.nonfinite_steps}"
    )
    return attack, train_log


def save_results(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=1) + "\n")
