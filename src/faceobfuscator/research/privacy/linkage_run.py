"""``faceobf privacy linkage CONFIG``: linkage attacks, unlinkability and irreversibility
at the recognizers' operating points, for every scheme of the registry (issue 14).

For each scheme, scenario (C: the request payload; D: what the server stores), attacker
variant and independent recognizer, a linkage network is trained
(:mod:`.linkage_train`) and every victim's leaked payload is searched among real photos
(:mod:`.linkage`). Networks are shared where their input and recipe are provably the same
(as-paper and adaptive for a scheme without randomness; D and C where the scheme stores
what it sends). Beside each row: D<->sys (:mod:`.unlinkability`) of two independent
deployments, from the linkage network and from the server's own model. Sealed
deployments (:mod:`.sealed`) are attacked on their ciphertexts; with the master key
leaked they leak the plain rows (the unsealed rows are then the honest ceiling).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.recognition.modeldir import RecognitionModel, load_model, load_scheme
from faceobfuscator.recognition.schemes import Scheme, get_scheme
from faceobfuscator.research.privacy.evaluate import average_face
from faceobfuscator.research.privacy.linkage import (
    Space,
    fmr_threshold,
    link_summary,
    recognizer_embeddings,
    search,
)
from faceobfuscator.research.privacy.linkage_config import LinkageConfig
from faceobfuscator.research.privacy.linkage_data import LinkageFaces, select_linkage_faces
from faceobfuscator.research.privacy.linkage_train import Linker, train_linker
from faceobfuscator.research.privacy.run import make_leak
from faceobfuscator.research.privacy.unlinkability import unlinkability
from faceobfuscator.research.privacy.variants import Leak, Preprocessor, prepare_variant
from faceobfuscator.research.training.config import AugmentConfig

__all__ = [
    "Recognition",
    "deployment_scores",
    "model_digest",
    "prepare_recognition",
    "random_unlinkability",
    "run_linkage",
]

Log = Callable[[str], None]


class Recognition:
    """One recognizer's view of the run: its space, the attacker's targets, the gallery,
    the real probes, thresholds (own and at the configured FMR) and reference points."""

    def __init__(self, cfg: LinkageConfig, faces: LinkageFaces, name: str, log: Log) -> None:
        t = time.perf_counter()
        chip = cfg.dlib_chip_matrix
        emb = {
            part: recognizer_embeddings(
                getattr(faces, part), name, cache_dir=cfg.cache_dir, chip_matrix=chip
            )
            for part in ("attacker", "gallery", "probe")
        }
        avg = recognizer_embeddings(
            average_face(faces.attacker)[None], name, cache_dir=None, chip_matrix=chip
        )
        scale = float(np.linalg.norm(emb["attacker"], axis=1).mean()) if name == "dlib" else 1.0
        self.space = Space(name, scale)
        self.targets, self.gallery, self.probe = emb["attacker"], emb["gallery"], emb["probe"]
        lfw = [i for i, d in enumerate(faces.gallery_datasets) if d == "lfw"]
        s = self.space.scores(self.gallery[lfw], self.gallery[lfw])
        keys = np.asarray(faces.gallery_keys)[lfw]
        upper = np.triu(np.ones_like(s, bool), 1) & (keys[:, None] != keys[None])
        nonmated = s[upper]
        self.fmr_threshold = fmr_threshold(nonmated, cfg.fmr)
        self.thresholds = {"threshold": self.space.threshold, "fmr": self.fmr_threshold}
        n = len(faces.probe)
        rng = np.random.default_rng(cfg.seed + 7)
        random_unit = rng.normal(size=(n, self.probe.shape[1]))
        random_unit /= np.linalg.norm(random_unit, axis=1, keepdims=True)
        self.unlinkability_reference = {
            # real photos: the victim's two photos (a recognizer's own linkability)
            "ceiling (real photos)": deployment_scores(
                self.space, self.probe, self.probe, self.gallery[:n], faces.victim_keys
            ),
            "floor (random embeddings)": random_unlinkability(self.space, n, seed=cfg.seed + 8),
        }
        self.info: dict[str, Any] = {
            "threshold": self.space.threshold,
            "threshold_fmr": float((nonmated >= self.space.threshold).mean()),
            "fmr": cfg.fmr,
            "fmr_threshold": self.fmr_threshold,
            "nonmated_pairs": int(len(nonmated)),
            "scale": scale,
            "seconds": round(time.perf_counter() - t, 1),
            "unlinkability_reference": self.unlinkability_reference,
            "reference": {
                "ceiling (the victim's real photo)": self.summaries(faces, self.probe),
                "floor (a random embedding)": self.summaries(
                    faces, self.space.from_unit(random_unit)
                ),
                "floor (the average face)": self.summaries(faces, np.repeat(avg, n, axis=0)),
            },
        }
        log(
            f"{name}: threshold {self.space.threshold} (FMR {self.info['threshold_fmr']:.4f} "
            f"on {len(nonmated)} LFW non-mated pairs), FMR {cfg.fmr} at "
            f"{self.fmr_threshold:.4f}; {self.info['seconds']} s"
        )

    def summaries(self, faces: LinkageFaces, probes: np.ndarray) -> dict[str, Any]:
        """Search measures per victim dataset for probe embeddings in this space."""
        found = search(self.space, probes, faces.victim_keys, self.gallery, faces.gallery_keys)
        ds = np.asarray(faces.victim_datasets)
        return {
            d: link_summary({k: v[ds == d] for k, v in found.items()}, self.thresholds)
            for d in sorted(set(faces.victim_datasets))
        }


def random_unlinkability(space: Space, n: int, *, seed: int) -> dict[str, Any]:
    """D<->sys of ``n`` people whose embeddings in A and B are independent random unit
    vectors (at the space's scale): the estimator's level when nothing links."""
    rng = np.random.default_rng(seed)
    a, b, r = (
        space.from_unit(x / np.linalg.norm(x, axis=1, keepdims=True))
        for x in rng.normal(size=(3, n, 128))
    )
    return deployment_scores(space, a, b, r, [str(i) for i in range(n)])


def prepare_recognition(
    cfg: LinkageConfig, faces: LinkageFaces, log: Log
) -> dict[str, Recognition]:
    return {r: Recognition(cfg, faces, r, log) for r in cfg.recognizers}


def deployment_scores(
    space: Space,
    a_probe: np.ndarray,
    b_probe: np.ndarray,
    b_reference: np.ndarray,
    keys: list[str],
) -> dict[str, Any]:
    """D<->sys across two deployments A and B from embeddings of each victim's probe in A
    and B and reference in B: mated = the same face (probe A vs probe B) or the same person
    (probe A vs reference B); non-mated = probe A vs another person's reference B."""
    s_face = np.diag(space.scores(a_probe, b_probe))
    cross = space.scores(a_probe, b_reference)
    k = np.asarray(keys)
    other = k[:, None] != k[None]
    out = {}
    for name, mated in (("same_face", s_face), ("same_person", np.diag(cross))):
        ok = np.isfinite(mated)
        nm = cross[other]
        u = unlinkability(
            np.where(ok, mated, -1e9), np.where(np.isfinite(nm), nm, -1e9)
        )  # a network that outputs nothing usable scores far below every real score
        out[name] = u.to_dict(densities=True)
    return out


def _server_model(cfg: LinkageConfig, scheme: Scheme, log: Log) -> RecognitionModel | None:
    d = cfg.model_dir(scheme.name)
    if not (d / "config.json").is_file():
        log(f"{scheme.name}: no server model at {d}; server-model unlinkability and recipe skipped")
        return None
    model = load_model(d)
    if model.scheme.name != scheme.name or model.protocol.hash != scheme.protocol.hash:
        log(f"{scheme.name}: {d} is for another scheme or protocol; not used")
        return None
    return model


def model_digest(directory: Path) -> str | None:
    """SHA-256 (hex) over the weight files of the model folder ``directory``
    (``model.safetensors``, then ``scheme.safetensors`` where present); ``None`` without a
    model. Rows of an earlier run are resumed only for the same digest."""
    files = [directory / n for n in ("model.safetensors", "scheme.safetensors")]
    if not files[0].is_file():
        return None
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _recipe_augment(model: RecognitionModel | None) -> AugmentConfig:
    train = ((model.config.get("extra") or {}).get("train_config") or {}) if model else {}
    aug = train.get("augment")
    if not isinstance(aug, dict):
        return AugmentConfig()
    fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
    return AugmentConfig(**fixed)


def _variant(
    name: str, scheme: Scheme, leak: Leak, probe: torch.Tensor, g: torch.Generator
) -> Preprocessor:
    if name != "server-recipe":
        return prepare_variant(name, scheme=scheme, leak=leak, probe_faces=probe, generator=g)
    channels = int(scheme.server_input(leak(probe[:1], g)).shape[1])
    return Preprocessor(
        name,
        scheme,
        ("server",),
        (),
        channels,
        notes="the server's input (identity recovery) and recipe (augmentation before protection)",
    )


def _stores_what_it_sends(scheme: Scheme, probe: torch.Tensor) -> bool:
    sent = scheme.client_features(probe, generator=torch.Generator().manual_seed(0))
    stored = scheme.stored(sent)
    return stored.shape == sent.shape and bool(torch.equal(stored, sent))


class _Leaks:
    """The victims' leaks in two independent deployments A and B, made again for every
    embedder chunk by chunk (a wide scheme's leaks of every victim would not fit in memory);
    seeded generators give each embedder the same leaks."""

    def __init__(self, leak: Leak, faces: LinkageFaces, seed: int, chunk: int = 32) -> None:
        self.leak, self.seed, self.chunk = leak, seed, chunk
        self.probe = torch.from_numpy(faces.probe)
        self.reference = torch.from_numpy(faces.gallery[: len(faces.probe)])

    def embed(self, fn: Callable[[torch.Tensor], np.ndarray]) -> tuple[np.ndarray, ...]:
        """``fn`` of the probe leaked in A, the probe in B and the reference in B."""
        ga = torch.Generator().manual_seed(self.seed)
        gb = torch.Generator().manual_seed(self.seed + 1)
        parts: list[list[np.ndarray]] = [[], [], []]
        for i in range(0, len(self.probe), self.chunk):
            p, r = self.probe[i : i + self.chunk], self.reference[i : i + self.chunk]
            for out, (faces, g) in zip(parts, ((p, ga), (p, gb), (r, gb)), strict=True):
                out.append(fn(self.leak(faces, g)))
        return tuple(np.concatenate(x) for x in parts)


def _evaluate(
    linker: Linker, rec: Recognition, leaks: _Leaks, faces: LinkageFaces
) -> dict[str, Any]:
    sp = rec.space
    a, b, r = (sp.from_unit(x) for x in leaks.embed(linker.embed))
    return {
        "search": rec.summaries(faces, a),
        "unlinkability": deployment_scores(sp, a, b, r, faces.victim_keys),
    }


def _server_unlinkability(model: RecognitionModel, leaks: _Leaks, keys: list[str]) -> dict:
    a, b, r = leaks.embed(lambda x: model.embed_sent(x).numpy())
    return deployment_scores(Space("sface"), a, b, r, keys)


#: configuration fields that do not change a row (what is run, where it goes)
_SCOPE = (
    "name",
    "out_dir",
    "schemes",
    "require_model",
    "variants",
    "scenarios",
    "sealed",
    "reconstructions",
    "sealed_recognizer",
    "threads",
    "device",
)


def _fingerprint(cfg: LinkageConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in _SCOPE}


def _previous(cfg: LinkageConfig, faces_digest: str, log: Log) -> dict[str, Any]:
    """Rows of an earlier run in ``cfg.out_dir`` made with the same settings and the same
    attacker, victim and gallery faces (``faces_digest``), to resume."""
    path = Path(cfg.out_dir) / "linkage.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if {k: v for k, v in old.get("config", {}).items() if k not in _SCOPE} != json.loads(
        json.dumps(_fingerprint(cfg))
    ):
        log(f"{path}: made with other settings; not resumed")
        return {}
    if old.get("faces_digest") != faces_digest:
        log(f"{path}: made with other attacker, victim or gallery faces; not resumed")
        return {}
    log(f"{path}: resuming {len(old.get('rows', []))} rows")
    return old


def run_linkage(cfg: LinkageConfig, *, log: Log = print) -> dict[str, Any]:
    """Run the evaluation of ``cfg``; write ``linkage.json``/``.md`` and the density figure
    to ``cfg.out_dir`` (after every row, so an interrupted run keeps what it measured).
    Rows (and the irreversibility scores) of an earlier run in ``cfg.out_dir`` made with
    the same settings (:data:`_SCOPE` aside) are kept, not measured again."""
    from faceobfuscator.research.privacy.linkage_report import write_linkage_reports
    from faceobfuscator.research.privacy.linkage_sealed import (
        irreversibility,
        master_key_roundtrip,
        sealed_rows,
    )

    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    protocol = cfg.load_protocol()
    faces = select_linkage_faces(cfg, log)
    recs = prepare_recognition(cfg, faces, log)
    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "protocol_hash": protocol.hash,
        "split_digest": faces.split_digest,
        "faces_digest": faces.digest(),
        "attacker_sources": faces.attacker_sources,
        "victims": {d: faces.victim_datasets.count(d) for d in sorted(set(faces.victim_datasets))},
        "gallery_identities": len(set(faces.gallery_keys)),
        "recognizers": {r: rec.info for r, rec in recs.items()},
        "rows": [],
        "server_unlinkability": {},
        "sealed": [],
    }
    out = Path(cfg.out_dir)

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_linkage_reports(results, out)

    previous = _previous(cfg, results["faces_digest"], log)
    done = {
        (x["scheme"], x["scenario"], x["variant"], x["recognizer"]): x
        for x in previous.get("rows", [])
    }
    if cfg.reconstructions:
        old_irr = previous.get("irreversibility")
        if old_irr and old_irr.get("source") == dict(cfg.reconstructions):
            results["irreversibility"] = old_irr
        else:
            results["irreversibility"] = irreversibility(cfg, recs.get("dlib"), log=log)
        save()
    probe = torch.from_numpy(faces.attacker[:8])
    g = torch.Generator().manual_seed(cfg.seed + 2)
    trained: dict[tuple[Any, ...], tuple[Linker | None, dict[str, Any]]] = {}
    for scheme_name in cfg.scheme_names():
        scheme = get_scheme(scheme_name, protocol)
        model = _server_model(cfg, scheme, log)
        digest = model_digest(cfg.model_dir(scheme_name)) if model is not None else None
        changed = any(  # rows of another model are measured again, not resumed
            x["scheme"] == scheme_name and x.get("model_sha256") != digest
            for x in previous.get("rows", [])
        )
        if changed:
            log(f"{scheme_name}: the server model changed since the last run; measured again")
        kept = {} if changed else previous.get("server_unlinkability", {})
        if model is not None and scheme.parts() is not None:
            scheme = load_scheme(cfg.model_dir(scheme_name))  # the client as deployed
            scheme.parts().requires_grad_(False)  # type: ignore[union-attr]
        stores_sent = _stores_what_it_sends(scheme, probe)
        for scenario in cfg.scenarios:
            if scenario == "D" and stores_sent and "C" in cfg.scenarios:
                copies = [
                    dict(
                        r,
                        scenario="D",
                        notes=r["notes"] + "; D = C (the scheme stores what it sends)",
                    )
                    for r in results["rows"]
                    if r["scheme"] == scheme_name and r["scenario"] == "C"
                ]
                results["rows"] += copies
                if scheme_name + "/C" in results["server_unlinkability"]:
                    results["server_unlinkability"][scheme_name + "/D"] = results[
                        "server_unlinkability"
                    ][scheme_name + "/C"]
                log(f"{scheme_name} D: the scheme stores what it sends; D = C")
                continue
            leak = make_leak(scheme, scenario)
            leaks = _Leaks(leak, faces, cfg.seed + 11)
            tag = f"{scheme_name}/{scenario}"
            if tag in kept:
                results["server_unlinkability"][tag] = kept[tag]
            elif model is not None and (scenario == "C" or stores_sent):
                results["server_unlinkability"][tag] = _server_unlinkability(
                    model, leaks, faces.victim_keys
                )
            for variant in cfg.variants:
                pre = _variant(variant, scheme, leak, probe, g)
                augment = _recipe_augment(model) if variant == "server-recipe" else None
                for r, rec in recs.items():
                    key = (scheme_name, scenario, pre.key, augment is not None, r)
                    old_row = None if changed else done.get((scheme_name, scenario, variant, r))
                    if key not in trained and old_row is not None:
                        keep = ("training", "search", "unlinkability")
                        trained[key] = (None, {k: old_row[k] for k in keep})
                    if key not in trained:
                        linker, tlog = train_linker(
                            faces.attacker,
                            rec.targets,
                            leak,
                            pre,
                            cfg.linker,
                            augment=augment,
                            seed=cfg.seed + 3,
                            device=cfg.device,
                        )
                        trained[key] = (
                            linker,
                            {"training": tlog.to_dict(), **_evaluate(linker, rec, leaks, faces)},
                        )
                        log(f"{scheme_name} {scenario} {variant} -> {r}: {_brief(trained[key][1])}")
                    results["rows"].append(
                        {
                            "scheme": scheme_name,
                            "scenario": scenario,
                            "variant": variant,
                            "recognizer": r,
                            "deployment": "plain",
                            "model_sha256": digest,
                            "preprocessing": pre.key,
                            "notes": pre.notes,
                            **trained[key][1],
                        }
                    )
                    save()

    def sealed_row(row: dict[str, Any]) -> None:
        results["sealed"].append(row)
        save()

    sealed_rows(cfg, faces, recs, protocol, log=log, on_row=sealed_row)
    results["master_key_leak"] = master_key_roundtrip(protocol, faces)
    save()
    log(f"wrote {out} in {results['seconds']} s")
    return results


def _brief(r: dict[str, Any]) -> str:
    parts = []
    for d, s in r["search"].items():
        parts.append(
            f"{d} rank-1 {s['rank1']['mean']:.2f} linked@fmr {s['linked_fmr']['mean']:.2f}"
        )
    u = r["unlinkability"]["same_person"]["d_sys"]
    t = r["training"]
    return "; ".join(parts) + f"; D<->sys(person) {u:.2f}; {t['steps']} steps {t['seconds']} s"


def load_results(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
