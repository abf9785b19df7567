"""What every experiment does for one setting: train a recognition model with the
experiment's recipe (or reuse the one an earlier run trained for the same configuration),
verify it on the benchmarks, and run the privacy harness on what the setting's client
sends (or reuse an earlier result for the same scheme, protocol and harness settings).

A setting is a scheme name and protocol overrides (``channels``, ``u_range``,
``v_range``, ``b``, ...). Models go to ``models_dir/<scheme>-<digest>/`` (a ``faceobf
train`` output folder; an interrupted run resumes from its last checkpoint), privacy
results to ``privacy_dir/<scheme>-<digest>/`` (a ``faceobf privacy run`` output folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from faceobfuscator.errors import FaceObfuscatorError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.experiments.config import ExperimentConfig
from faceobfuscator.research.training.config import TrainConfig, load_train_config

__all__ = ["Runner", "digest", "merge"]

Log = Callable[[str], None]


def digest(data: Any) -> str:
    """SHA-256 (hex) of ``data``'s canonical JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; nested objects merge, other values replace."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


class Runner:
    """Trains, verifies and attacks the settings of one experiment configuration."""

    def __init__(self, config: ExperimentConfig, *, log: Log = print) -> None:
        self.config, self.log = config, log
        self._base = merge(load_train_config(config.recipe).to_dict(), config.train)
        self._pack: str | None = None
        self.command = shlex.join(sys.argv)

    @property
    def device(self) -> str:
        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.config.device

    @property
    def backbone(self) -> str:
        """The recipe's backbone."""
        return str(self._base.get("backbone", ""))

    def protocol(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The recipe's protocol section with a setting's overrides applied."""
        return merge(dict(self._base.get("protocol") or {}), dict(overrides))

    def train_config(
        self, scheme: str, protocol: dict[str, Any], *, backbone: str | None = None
    ) -> TrainConfig:
        """The recipe for ``scheme`` under ``protocol`` overrides (and another backbone)."""
        data = dict(self._base, scheme=scheme, protocol=self.protocol(protocol))
        if backbone is not None:
            data["backbone"] = backbone
        if self.config.device != "auto":
            data["device"] = self.config.device
        data["name"] = f"{self.config.experiment}:{scheme}"
        return TrainConfig.from_dict(data)

    def model(self, scheme: str, protocol: dict[str, Any], *, backbone: str | None = None) -> Path:
        """The model directory of the setting: trained now, or found from an earlier run
        of the same training configuration (any experiment)."""
        from faceobfuscator.research.training.loop import train

        cfg = self.train_config(scheme, protocol, backbone=backbone)
        same = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "log_every")}
        # the protocol in its canonical form: equal settings written differently share
        same["protocol"] = cfg.protocol_config.to_dict()
        run = Path(self.config.models_dir) / f"{scheme}-{digest(same)[:12]}"
        model_dir = run / "model"
        if (model_dir / "config.json").is_file():
            self.log(f"model {scheme} {_brief(protocol)}: reusing {model_dir}")
            return model_dir
        resume = (run / "checkpoint" / "train_state.pt").is_file()
        self.log(f"model {scheme} {_brief(protocol)}: training into {run}")
        return train(cfg, run, resume=resume, progress=False, command=self.command)

    def accuracy(self, model_dir: Path, *, recovery: bool = True) -> dict[str, Any]:
        """Per benchmark: k-fold accuracy (mean, std over folds), TAR at FAR, pairs. Kept
        beside the model (``verification-<digest>.json``, by the evaluation settings) and
        reused by any later run with the same settings."""
        from faceobfuscator.research.evaluation.benchmarks import run_verification

        ev = self.config.evaluation
        key = digest({"evaluation": dataclasses.asdict(ev), "recovery": recovery})
        saved = Path(model_dir).parent / f"verification-{key[:12]}.json"
        if saved.is_file():
            self.log(f"  verification: reusing {saved}")
            return dict(json.loads(saved.read_text()))
        out = {}
        for bench in ev.benchmarks:
            r = run_verification(
                model_dir,
                bench,
                folds=ev.folds,
                recovery=recovery,
                flip=ev.flip,
                datasets_root=ev.datasets_root,
                aligned_root=ev.aligned_root,
                device=self.device,
                batch_size=ev.batch_size,
                seed=ev.seed,
                far=ev.far,
                bf16=ev.bf16,
            )
            out[bench] = {
                "accuracy": r.accuracy_mean,
                "std": r.accuracy_std,
                "tar": r.tar_at_far["tar"],
                "pairs": r.n_pairs,
            }
            self.log(f"  {bench}: accuracy {100 * r.accuracy_mean:.2f} ({r.n_pairs} pairs)")
        saved.write_text(json.dumps(out, indent=1) + "\n")
        return out

    def privacy(self, scheme: str, protocol: dict[str, Any]) -> dict[str, Any] | None:
        """Per victim dataset: the dlib judge's match rate of each attacker variant's
        reconstructions with its 95% interval, and the floor (the attacker's average
        face) and ceiling (the victims' own photos); ``None`` without a privacy section."""
        from faceobfuscator.research.privacy.config import PrivacyConfig
        from faceobfuscator.research.privacy.run import run_privacy

        if self.config.privacy is None:
            return None
        settings = dict(self.config.privacy)
        settings["pack"] = settings.get("pack") or self._privacy_pack()
        proto = ProtocolConfig.from_dict(self.protocol(protocol))
        key = digest({"scheme": scheme, "protocol": proto.to_dict(), "privacy": settings})
        folder = Path(self.config.privacy_dir) / f"{scheme}-{key[:12]}"
        results_path = folder / "results.json"
        if results_path.is_file():
            self.log(f"privacy {scheme} {_brief(protocol)}: reusing {folder}")
            return summarise_privacy(json.loads(results_path.read_text()))
        folder.mkdir(parents=True, exist_ok=True)
        proto.save(folder / "protocol.json")
        cfg = PrivacyConfig.from_dict(
            settings
            | {
                "name": f"{self.config.experiment}: {scheme} {_brief(protocol)}",
                "schemes": [scheme],
                "protocol": str(folder / "protocol.json"),
                "out_dir": str(folder),
                "scenarios": ["C"],
                "models_dir": str(folder / "no-srra-model"),
                "threads": self.config.threads,
                "device": self.device,
            }
        )
        self.log(f"privacy {scheme} {_brief(protocol)}: attacking into {folder}")
        return summarise_privacy(run_privacy(cfg, log=self.log))

    def _privacy_pack(self) -> str:
        """One pack of attacker and victim faces for every privacy run of the same face
        selection, so that all settings are attacked on the same faces."""
        from faceobfuscator.research.privacy.config import PrivacyConfig
        from faceobfuscator.research.privacy.pack import select_faces, write_pack

        if self._pack is None:
            cfg = PrivacyConfig.from_dict(dict(self.config.privacy or {}))
            chosen = {
                k: getattr(cfg, k)
                for k in (
                    "datasets_root",
                    "aligned_dir",
                    "split",
                    "attacker_images",
                    "victim_datasets",
                    "victims_per_dataset",
                    "seed",
                )
            }
            folder = Path(self.config.privacy_dir) / f"pack-{digest(chosen)[:12]}"
            if not (folder / "pack.json").is_file():
                write_pack(select_faces(cfg, self.log), folder)
            self._pack = str(folder)
        return self._pack

    def setting(
        self,
        scheme: str,
        protocol: dict[str, Any],
        *,
        privacy: bool = True,
        recovery: bool = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """One row: the setting's fields, its accuracy and privacy; a setting whose model
        cannot be trained or evaluated (a diverged run's NaN embeddings) gets ``status``
        saying why instead of figures."""
        row: dict[str, Any] = {"scheme": scheme, "protocol": dict(protocol), **fields}
        row["status"] = "ok"
        try:
            model_dir = self.model(scheme, protocol)
            row["model"] = str(model_dir)
            row["accuracy"] = self.accuracy(model_dir, recovery=recovery)
        except FaceObfuscatorError as exc:
            row["status"] = f"accuracy not measured: {exc}"
            self.log(f"  {row['status']}")
        row["privacy"] = self.privacy(scheme, protocol) if privacy else None
        return row


def summarise_privacy(results: dict[str, Any]) -> dict[str, Any]:
    """From ``faceobf privacy run`` results: ``{dataset: {variant: match, "floor": ...,
    "ceiling": ...}}``, each a ``{"mean", "ci95", "n"}`` share."""
    out: dict[str, Any] = {}
    for dataset, base in results["baselines"].items():
        out[dataset] = {"floor": base["floor_match"], "ceiling": base["ceiling_match"]}
    for r in results["rows"]:
        out[r["dataset"]][r["variant"]] = r["metrics"]["match"]
    return out


def _brief(protocol: dict[str, Any]) -> str:
    if not protocol:
        return "(default protocol)"
    parts = []
    for k, v in sorted(protocol.items()):
        if k == "channels" and isinstance(v, list | tuple) and len(v) > 6:
            v = f"{len(v)} channels"
        parts.append(f"{k}={v}")
    return " ".join(parts)
