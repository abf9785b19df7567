"""The privacy evaluation harness, in two stages that can run on different machines:

1. :func:`reconstruct_all` trains every attack for every scheme, attacker variant and
   scenario, and reconstructs the victims (needs torch only; a GPU helps);
2. :func:`score_all` scores the reconstructions (pixel metrics, dlib identity metrics,
   SRRA) and :func:`run_privacy` writes the reports.

Work is shared where it is provably the same: a network is trained once per (scheme,
leaked tensor, preprocessing, attack) and reused by variants whose preprocessing is equal;
scenario D reuses scenario C's reconstructions when the scheme stores exactly what it
sends (the row says so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.modeldir import RecognitionModel, load_model, load_scheme
from faceobfuscator.recognition.schemes import Scheme, get_scheme
from faceobfuscator.research.privacy.attacks import get_attack
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.evaluate import (
    VictimSet,
    average_face,
    baselines,
    score,
    srra_reference_points,
)
from faceobfuscator.research.privacy.identity import DlibRecognizer, to_uint8
from faceobfuscator.research.privacy.metrics import to_unit_rgb
from faceobfuscator.research.privacy.pack import EvaluationFaces, read_pack, select_faces
from faceobfuscator.research.privacy.report import write_reports
from faceobfuscator.research.privacy.variants import Leak, Preprocessor, prepare_variant

__all__ = [
    "Reconstructions",
    "batch_source",
    "load_srra_model",
    "make_leak",
    "reconstruct_all",
    "run_privacy",
    "scheme_for",
    "score_all",
]

Log = Callable[[str], None]


def make_leak(scheme: Scheme, scenario: str) -> Leak:
    """What the attacker obtains for uint8 faces: scenario C the sent features, D what the
    server stores of them."""
    if scenario == "C":
        return lambda faces, g: scheme.client_features(faces, generator=g)
    if scenario == "D":
        return lambda faces, g: scheme.stored(scheme.client_features(faces, generator=g))
    raise ConfigError(f"unknown scenario {scenario!r}; known: ['C', 'D']")


def scheme_for(cfg: PrivacyConfig, name: str, protocol: ProtocolConfig) -> Scheme:
    """The scheme ``name`` as the client runs it. A scheme with trainable parts gets them
    from the run's model directory for it (:meth:`PrivacyConfig.srra_model_dir`) when there
    is one (else its untrained initial parts); other schemes are built fresh.

    Raises:
        ConfigError: that model directory holds another scheme or protocol.
    """
    scheme = get_scheme(name, protocol)
    directory = cfg.srra_model_dir(name)
    if scheme.parts() is None or not (directory / "config.json").is_file():
        return scheme
    scheme = load_scheme(directory)
    if scheme.name != name or scheme.protocol.hash != protocol.hash:
        raise ConfigError(
            f"{directory} holds scheme {scheme.name!r} under protocol "
            f"{scheme.protocol.hash[:12]}; the run evaluates {name!r} under {protocol.hash[:12]}"
        )
    return scheme


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
    preprocessing. Faces are uint8 ``(N, S, S, 3)`` on the generator's device."""
    n = faces.shape[0]
    while True:
        idx = torch.randint(0, n, (batch_size,), generator=generator, device=generator.device)
        batch = faces[idx]
        yield pre(leak(batch, generator)), to_unit_rgb(batch)


@dataclass
class Reconstructions:
    """Output of :func:`reconstruct_all`: one row per scheme, variant, scenario, attack and
    dataset (``set`` names its reconstructions), the reconstructions (uint8
    ``(N, S, S, 3)``) and the training logs."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    sets: dict[str, np.ndarray] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"rows": self.rows, "training": self.training, "sets": sorted(self.sets)}
        (out / "reconstructions.json").write_text(json.dumps(meta, indent=1) + "\n")
        # files per scheme and dataset, each under ~15 MB, so they can move between machines
        groups: dict[str, list[str]] = {}
        for key in sorted(self.sets):
            parts = key.split("/")
            groups.setdefault(f"{parts[0]}_{parts[-1]}", []).append(key)
        for name, keys in groups.items():
            chunks: list[list[str]] = [[]]
            size = 0
            for key in keys:
                if chunks[-1] and size + self.sets[key].nbytes > 15_000_000:
                    chunks.append([])
                    size = 0
                chunks[-1].append(key)
                size += self.sets[key].nbytes
            for i, chunk in enumerate(chunks):
                arrays = {k.replace("/", "__"): self.sets[k] for k in chunk}
                np.savez_compressed(out / f"reconstructions_{name}_{i}.npz", **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, folder: str | Path) -> Reconstructions:
        src = Path(folder)
        path = src / "reconstructions.json"
        if not path.is_file():
            raise ConfigError(f"{path} not found; run `faceobf privacy reconstruct` first")
        meta = json.loads(path.read_text())
        sets: dict[str, np.ndarray] = {}
        for f in sorted(src.glob("reconstructions_*.npz")):
            with np.load(f, allow_pickle=False) as z:
                sets.update({k.replace("__", "/"): z[k] for k in z.files})
        missing = sorted(set(meta["sets"]) - set(sets))
        if missing:
            raise ConfigError(f"{src}: reconstructions {missing[:3]} are missing")
        return cls(meta["rows"], sets, meta["training"])


def _leak_key(scheme: Scheme, scenario: str, probe: torch.Tensor, device: str) -> str:
    """``"sent"`` unless the stored tensor differs from the sent one on the probe faces."""
    if scenario == "C":
        return "sent"
    sent = scheme.client_features(probe, generator=torch.Generator(device).manual_seed(0))
    stored = scheme.stored(sent)
    same = stored.shape == sent.shape and bool(torch.equal(stored, sent))
    return "sent" if same else "stored"


def reconstruct_all(
    cfg: PrivacyConfig, faces: EvaluationFaces, *, log: Log = print
) -> Reconstructions:
    """Train the configured attacks and reconstruct every victim set."""
    torch.set_num_threads(cfg.threads)
    dev = cfg.device
    if torch.device(dev).type == "cuda":
        torch.backends.cudnn.benchmark = True
    protocol = cfg.load_protocol()
    attacker = torch.from_numpy(faces.attacker).to(dev)
    probe_faces = attacker[: cfg.probe_images]
    out = Reconstructions()
    trained: dict[tuple[str, ...], Any] = {}
    g = torch.Generator(dev).manual_seed(cfg.seed + 2)
    for scheme_name in cfg.schemes:
        scheme = scheme_for(cfg, scheme_name, protocol)
        parts = scheme.parts()
        if parts is not None:  # the client's copy runs them as deployed: eval, no training
            parts.to(dev).eval().requires_grad_(False)
        for scenario in cfg.scenarios:
            leak = make_leak(scheme, scenario)
            leak_key = _leak_key(scheme, scenario, probe_faces, dev)
            if scenario == "D" and leak_key == "sent" and "C" in cfg.scenarios:
                out.rows.extend(
                    dict(
                        r,
                        scenario="D",
                        notes=r["notes"] + "; D = C (the scheme stores what it sends)",
                    )
                    for r in list(out.rows)
                    if r["scheme"] == scheme_name and r["scenario"] == "C"
                )
                log(f"{scheme_name} D: the scheme stores what it sends; D = C")
                continue
            leaked = [leak(torch.from_numpy(v.probe).to(dev), g) for v in faces.victims]
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
                        out.training["/".join(key)] = trained[key].log
                    for v, lk in zip(faces.victims, leaked, strict=True):
                        set_key = "/".join(
                            (*key, "refined" if pre.refine_with else "plain", v.dataset)
                        )
                        if set_key not in out.sets:
                            recon = trained[key].attack.reconstruct(pre(lk))
                            recon = pre.refine(recon.to(dev), lk).cpu()
                            out.sets[set_key] = to_uint8(recon)
                        out.rows.append(
                            {
                                "scheme": scheme_name,
                                "variant": variant,
                                "scenario": scenario,
                                "attack": attack_name,
                                "dataset": v.dataset,
                                "preprocessing": pre.key,
                                "refined": pre.refine_with is not None,
                                "notes": pre.notes,
                                "set": set_key,
                            }
                        )
    return out


@dataclass
class _Trained:
    attack: Any
    log: dict[str, Any]


def _train(
    cfg: PrivacyConfig,
    attack_name: str,
    pre: Preprocessor,
    attacker: torch.Tensor,
    leak: Leak,
    log: Log,
) -> _Trained:
    settings = cfg.settings_for(attack_name)
    attack = get_attack(attack_name, pre.in_channels, settings, seed=cfg.seed, device=cfg.device)
    g = torch.Generator(cfg.device).manual_seed(cfg.seed + 3)
    batches = batch_source(attacker, leak, pre, batch_size=settings.batch_size, generator=g)
    train_log = attack.fit(batches)
    tail = [round(v, 4) for v in train_log.losses[-3:]]
    log(
        f"  trained {attack_name} on {pre.key}: {train_log.steps} steps in "
        f"{train_log.seconds:.0f} s, last losses {tail}, non-finite steps "
        f"{train_log.nonfinite_steps}"
    )
    return _Trained(attack, train_log.to_dict())


def load_srra_model(
    cfg: PrivacyConfig, scheme: str, protocol: ProtocolConfig, log: Log = print
) -> RecognitionModel | None:
    """The model that SRRA replays ``scheme``'s reconstructions through, or None (SRRA
    pending) when there is no model or it is untrained or uncalibrated. A model of another
    scheme or protocol is a configuration error: its figures would mean nothing."""
    directory = cfg.srra_model_dir(scheme)
    if not (directory / "config.json").is_file():
        log(f"SRRA pending for {scheme}: no model at {directory}")
        return None
    model = load_model(directory)
    if model.scheme.name != scheme:
        raise ConfigError(
            f"the SRRA model for {scheme!r}, {directory}, was trained for scheme "
            f"{model.scheme.name!r}; point srra_models[{scheme!r}] at a {scheme!r} model"
        )
    if model.protocol.hash != protocol.hash:
        raise ConfigError(
            f"the SRRA model {directory} uses protocol {model.protocol.hash[:12]}, the run "
            f"{protocol.hash[:12]}; use a model trained under the run's protocol"
        )
    if model.threshold is None or (model.config.get("extra") or {}).get("random"):
        log(f"SRRA pending for {scheme}: {directory} has no calibrated threshold or is random")
        return None
    log(f"SRRA for {scheme}: {directory} at threshold {model.threshold:.4f}")
    return model


def _model_info(cfg: PrivacyConfig, scheme: str, model: RecognitionModel) -> dict[str, Any]:
    metrics = model.config.get("metrics") or {}
    return {
        "directory": str(cfg.srra_model_dir(scheme)),
        "threshold": model.threshold,
        **{k: metrics[k] for k in ("val_accuracy", "val_tar", "val_far") if k in metrics},
    }


def score_all(
    cfg: PrivacyConfig,
    faces: EvaluationFaces,
    recons: Reconstructions,
    *,
    log: Log = print,
) -> dict[str, Any]:
    """Score every reconstruction set; the results dict that the reports are made from."""
    torch.set_num_threads(cfg.threads)
    protocol = cfg.load_protocol()
    rec = DlibRecognizer(protocol)
    sets = {v.dataset: VictimSet.from_faces(v, rec) for v in faces.victims}
    average = average_face(faces.attacker)
    models = {s: load_srra_model(cfg, s, protocol, log) for s in cfg.schemes}
    g = torch.Generator().manual_seed(cfg.seed + 4)
    srra_baselines = {
        s: {d: srra_reference_points(m, v, average, generator=g) for d, v in sets.items()}
        for s, m in models.items()
        if m is not None
    }
    scored: dict[str, dict[str, Any]] = {}
    rows = []
    for r in recons.rows:
        key = r["set"]
        if key not in scored:
            model = models.get(r["scheme"])
            srra = (model, g) if model is not None else None
            recon = to_unit_rgb(recons.sets[key])
            scored[key], _ = score(recon, sets[r["dataset"]], rec, srra=srra)
            m = scored[key]
            log(
                f"{key}: SSIM {m['ssim']['mean']:.3f} PSNR {m['psnr']['mean']:.2f} "
                f"COS {m['cos']['mean']:.3f} match {m['match']['mean']:.2f}"
            )
        rows.append(dict(r, srra_pending=models.get(r["scheme"]) is None, metrics=scored[key]))
    return {
        "config": cfg.to_dict(),
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash,
        "split_digest": faces.split_digest,
        "attacker_images": int(len(faces.attacker)),
        "attacker_identities": faces.attacker_identities,
        "baselines": {d: baselines(s, average, rec) for d, s in sets.items()},
        "srra_models": {s: _model_info(cfg, s, m) for s, m in models.items() if m is not None},
        "srra_baselines": srra_baselines,
        "rows": rows,
        "training": recons.training,
    }


def _grids(cfg: PrivacyConfig, recons: Reconstructions) -> dict[str, dict[str, torch.Tensor]]:
    grids: dict[str, dict[str, torch.Tensor]] = {}
    for r in recons.rows:
        if r["scenario"] == "C" and cfg.grid_victims:
            label = f"{r['scheme']} / {r['variant']} / {r['attack']}"
            grids.setdefault(r["dataset"], {})[label] = to_unit_rgb(
                recons.sets[r["set"]][: cfg.grid_victims]
            )
    return grids


def load_faces_for(cfg: PrivacyConfig, log: Log = print) -> EvaluationFaces:
    """The run's faces: from ``cfg.pack`` if set, else drawn from the prepared datasets."""
    return read_pack(cfg.pack) if cfg.pack else select_faces(cfg, log)


def run_privacy(
    cfg: PrivacyConfig,
    *,
    log: Log = print,
    reconstructions: Reconstructions | None = None,
) -> dict[str, Any]:
    """Run the evaluation described by ``cfg`` (or only score ``reconstructions`` made
    earlier, e.g. on another machine); write JSON, Markdown and PNG grids to
    ``cfg.out_dir`` and return the results."""
    started = time.perf_counter()
    faces = load_faces_for(cfg, log)
    recons = reconstructions or reconstruct_all(cfg, faces, log=log)
    results = score_all(cfg, faces, recons, log=log)
    results["seconds"] = round(time.perf_counter() - started, 1)
    originals = {v.dataset: to_unit_rgb(v.probe[: cfg.grid_victims]) for v in faces.victims}
    write_reports(results, _grids(cfg, recons), originals, Path(cfg.out_dir))
    log(f"wrote {cfg.out_dir} in {results['seconds']} s")
    return results
