"""Linkage on sealed deployments, the master-key leak, and irreversibility at the
independent recognizer's FMR (issue 14, items 3 and 4).

- :func:`sealed_rows`: a linkage network trained on what a sealed deployment leaks
  (HPKE-sealed request bodies, C; envelope-encrypted rows, D; as
  :func:`~faceobfuscator.research.privacy.sealed.sealed_leak` lays them out), searched
  like every other row. Ciphertexts under fresh keys carry nothing the network can use, so
  its figures must sit at the floor.
- :func:`master_key_roundtrip`: with the master key (and the server's private key) leaked,
  the attacker decrypts each row and request to the plain payload, byte for byte; the plain
  deployment's rows are then the honest ceiling of tier-two protection.
- :func:`irreversibility`: the reconstruction attacks' success at dlib's FMR 0.1%
  threshold beside the threshold-0.6 figures (ISO/IEC 30136 style), from reconstructions
  saved by ``faceobf privacy reconstruct``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.protocol.binding import associated_data
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.payload import encode_payload
from faceobfuscator.protocol.sealing import ServerKeyPair, open_sealed
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.linkage import recognizer_embeddings
from faceobfuscator.research.privacy.linkage_config import LinkageConfig
from faceobfuscator.research.privacy.linkage_data import LinkageFaces
from faceobfuscator.research.privacy.linkage_train import train_linker
from faceobfuscator.research.privacy.metrics import mean_interval
from faceobfuscator.research.privacy.sealed import sealed_leak
from faceobfuscator.research.privacy.variants import Preprocessor
from faceobfuscator.server.security.envelope import MasterKey, decrypt_record, encrypt_record

if TYPE_CHECKING:
    from faceobfuscator.research.privacy.linkage_run import Recognition

__all__ = ["irreversibility", "master_key_roundtrip", "sealed_rows"]

Log = Callable[[str], None]


def sealed_rows(
    cfg: LinkageConfig,
    faces: LinkageFaces,
    recs: dict[str, Recognition],
    protocol: ProtocolConfig,
    *,
    log: Log = print,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """Linkage rows of sealed deployments of the schemes in ``cfg.sealed`` (those that are
    evaluated), scored with ``cfg.sealed_recognizer``; ``on_row`` gets each row as soon as it
    is measured."""
    from faceobfuscator.research.privacy.linkage_run import _evaluate, _Leaks

    rows: list[dict[str, Any]] = []
    name = cfg.sealed_recognizer
    rec = recs[name]
    g = torch.Generator().manual_seed(cfg.seed + 5)
    for scheme_name in [s for s in cfg.sealed if s in cfg.scheme_names()]:
        scheme = get_scheme(scheme_name, protocol)
        public_key = ServerKeyPair.generate().public_key
        master = MasterKey.generate()
        for scenario in cfg.scenarios:
            leak, blobs = sealed_leak(scenario, scheme, public_key=public_key, master=master)
            sample = blobs(torch.from_numpy(faces.attacker[:1]), g)[0]
            channels = int(leak(torch.from_numpy(faces.attacker[:1]), g).shape[1])
            pre = Preprocessor("sealed", scheme, (), (), channels, notes="ciphertext bytes only")
            linker, tlog = train_linker(
                faces.attacker,
                rec.targets,
                leak,
                pre,
                cfg.linker,
                seed=cfg.seed + 3,
                device=cfg.device,
            )
            row = {
                "scheme": scheme_name,
                "scenario": scenario,
                "variant": "as-paper",
                "recognizer": name,
                "deployment": "sealed",
                "preprocessing": "bytes",
                "notes": f"{len(sample)}-byte ciphertexts as {channels} byte maps",
                "training": tlog.to_dict(),
                **_evaluate(linker, rec, _Leaks(leak, faces, cfg.seed + 11, chunk=32), faces),
            }
            rows.append(row)
            log(f"sealed {scheme_name} {scenario} -> {name}: trained {tlog.steps} steps")
            on_row(row)
    return rows


def master_key_roundtrip(protocol: ProtocolConfig, faces: LinkageFaces, n: int = 8) -> dict:
    """Seal and encrypt ``n`` victims' FaceObfuscator payloads, then decrypt them with the
    leaked keys: ``identical`` is True when every decrypted payload equals the plain one
    byte for byte (the leaked deployment leaks exactly the plain rows)."""
    scheme = get_scheme("faceobfuscator", protocol)
    sent = scheme.client_features(
        torch.from_numpy(faces.probe[:n]), generator=torch.Generator().manual_seed(0)
    )
    pair, master = ServerKeyPair.generate(), MasterKey.generate()
    same = True
    for i, feature in enumerate(sent.numpy()):
        payload = encode_payload(feature, protocol)
        row = encrypt_record(payload, master, subject=f"s{i}", record_id=i)
        same &= decrypt_record(row, master, subject=f"s{i}", record_id=i) == payload
        c = Challenge(f"{i:032x}", "verify", f"s{i}", time.time() + 60)
        blob = seal_request(payload, pair.public_key, challenge=c, protocol=protocol)
        aad = associated_data(
            challenge_id=c.id,
            operation=c.operation,
            subject=c.subject,
            protocol_hash=protocol.hash,
            format_version=protocol.format_version,
        )
        same &= open_sealed(blob, pair, aad=aad) == payload
    return {"payloads": n, "identical": bool(same)}


def irreversibility(cfg: LinkageConfig, rec: Recognition | None, *, log: Log = print) -> dict:
    """dlib match rates of saved reconstructions at distance 0.6 and at the FMR threshold
    of ``rec`` (the run's dlib recognition), per reconstruction row, with the originals'
    rates (ceiling)."""
    from faceobfuscator.research.privacy.config import PrivacyConfig
    from faceobfuscator.research.privacy.run import Reconstructions, load_faces_for

    if rec is None:
        return {"skipped": "needs the dlib recognizer in the configuration"}
    chip = cfg.dlib_chip_matrix
    pcfg = PrivacyConfig.load(cfg.reconstructions["config"])
    recons = Reconstructions.load(cfg.reconstructions["folder"])
    ev = load_faces_for(pcfg, log)
    refs = {
        v.dataset: recognizer_embeddings(
            v.reference, "dlib", cache_dir=cfg.cache_dir, chip_matrix=chip
        )
        for v in ev.victims
    }
    t = -rec.fmr_threshold  # as a distance

    def rates(emb: np.ndarray, dataset: str) -> dict[str, Any]:
        d = np.linalg.norm(emb - refs[dataset], axis=1)
        return {
            "match_0.6": mean_interval((d < 0.6).astype(float), share=True).to_dict(),
            "match_fmr": mean_interval((d <= t).astype(float), share=True).to_dict(),
        }

    ceiling = {
        v.dataset: rates(
            recognizer_embeddings(v.probe, "dlib", cache_dir=cfg.cache_dir, chip_matrix=chip),
            v.dataset,
        )
        for v in ev.victims
    }
    scored: dict[str, dict[str, Any]] = {}
    rows = []
    for r in recons.rows:
        key = r["set"]
        if key not in scored:
            scored[key] = rates(
                recognizer_embeddings(recons.sets[key], "dlib", cache_dir=None, chip_matrix=chip),
                r["dataset"],
            )
        rows.append(
            {k: r[k] for k in ("scheme", "variant", "scenario", "attack", "dataset")} | scored[key]
        )
    log(f"irreversibility: {len(scored)} reconstruction sets at dlib distance 0.6 and {t:.4f}")
    return {
        "distance_at_fmr": t,
        "fmr": cfg.fmr,
        "ceiling": ceiling,
        "rows": rows,
        "source": dict(cfg.reconstructions),
    }
