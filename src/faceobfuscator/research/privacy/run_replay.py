"""``faceobf privacy replay CONFIG``: the measurements of the sealed-payload issue in the
privacy harness. Replay acceptance against a plain and a sealed deployment
(:mod:`.replay`), and the reconstruction attack trained on what a sealed deployment leaks
(:mod:`.sealed`), written to ``<out_dir>/replay_sealed.{json,md,png}``."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.modeldir import RecognitionModel, load_model
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.config import SCENARIOS, PrivacyConfig
from faceobfuscator.research.privacy.evaluate import average_face
from faceobfuscator.research.privacy.identity import DlibRecognizer
from faceobfuscator.research.privacy.metrics import to_unit_rgb
from faceobfuscator.research.privacy.replay import measure_replay
from faceobfuscator.research.privacy.report import replay_markdown, save_grid
from faceobfuscator.research.privacy.run import load_faces_for
from faceobfuscator.research.privacy.sealed import attack_sealed

__all__ = ["run_replay", "load_replay_model"]

Log = Callable[[str], None]


def load_replay_model(cfg: PrivacyConfig, log: Log = print) -> RecognitionModel:
    """The server's model of the replay measurements: a ``faceobfuscator`` model under the
    run's protocol with a threshold (an untrained one is allowed, and marked, for tests)."""
    directory = Path(cfg.replay.model)
    model = load_model(directory)
    protocol = cfg.load_protocol()
    problems = []
    if model.scheme.name != "faceobfuscator":
        problems.append(f"it was trained for scheme {model.scheme.name!r}, not 'faceobfuscator'")
    if model.protocol.hash != protocol.hash:
        problems.append(f"its protocol {model.protocol.hash[:12]} is not the run's")
    if model.threshold is None:
        problems.append("it has no calibrated threshold")
    if problems:
        raise ConfigError(f"replay.model {directory} cannot serve: " + "; ".join(problems))
    if (model.config.get("extra") or {}).get("random"):
        log(f"warning: {directory} is an UNTRAINED random model; figures mean nothing")
    return model


def run_replay(cfg: PrivacyConfig, *, log: Log = print) -> dict[str, Any]:
    """Run both measurements of ``cfg.replay`` and write the reports; return the results."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    settings = cfg.replay
    if settings.dataset not in cfg.victim_datasets:
        raise ConfigError(
            f"replay.dataset {settings.dataset!r} is not among victim_datasets "
            f"{list(cfg.victim_datasets)}"
        )
    model = load_replay_model(cfg, log)
    faces = load_faces_for(cfg, log)
    victims = next(v for v in faces.victims if v.dataset == settings.dataset)
    n = min(settings.victims, len(victims.probe))
    victims = dataclasses.replace(
        victims,
        probe=victims.probe[:n],
        reference=victims.reference[:n],
        identities=victims.identities[:n],
    )
    g = torch.Generator().manual_seed(cfg.seed + 5)
    with tempfile.TemporaryDirectory(prefix="faceobf-replay-") as folder:
        replay_rows = measure_replay(settings.model, victims, folder=folder, generator=g)
    for r in replay_rows:
        log(f"replay {r['deployment']} / {r['leak']}: accepted {r['acceptance']['mean']:.2f}")
    recognizer = DlibRecognizer(model.protocol)
    scheme = get_scheme("faceobfuscator", model.protocol)
    sealed, recons = [], {}
    for scenario in SCENARIOS:
        result, recons[scenario] = attack_sealed(
            scenario,
            scheme,
            faces.attacker,
            victims,
            attack=settings.attack,
            settings=settings.attack_settings,
            recognizer=recognizer,
            model=model,
            seed=cfg.seed,
            log=log,
        )
        sealed.append(result)
        m = result["metrics"]
        log(
            f"sealed {scenario}: SSIM {m['ssim']['mean']:.3f} COS {m['cos']['mean']:.3f} "
            f"match {m['match']['mean']:.2f} SRRA {m['srra']['mean']:.2f}"
        )
    metrics = model.config.get("metrics") or {}
    results = {
        "config": cfg.to_dict(),
        "protocol_hash": model.protocol.hash,
        "split_digest": faces.split_digest,
        "attacker_images": int(len(faces.attacker)),
        "model": {
            "directory": settings.model,
            "threshold": model.threshold,
            "random": bool((model.config.get("extra") or {}).get("random")),
            **{k: metrics[k] for k in ("val_accuracy", "val_tar", "val_far") if k in metrics},
        },
        "victims": {"dataset": settings.dataset, "count": n},
        "replay": replay_rows,
        "sealed": sealed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay_sealed.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "replay_sealed.md").write_text(replay_markdown(results))
    k = cfg.grid_victims
    if k:
        average = to_unit_rgb(average_face(faces.attacker)[None]).expand(k, -1, -1, -1)
        columns = {f"sealed {s} / {settings.attack}": to_unit_rgb(r[:k]) for s, r in recons.items()}
        columns["attacker's average face"] = average
        save_grid(to_unit_rgb(victims.probe[:k]), columns, out / "replay_sealed.png")
    log(f"wrote {out}/replay_sealed.* in {results['seconds']} s")
    return results
