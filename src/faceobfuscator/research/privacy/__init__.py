"""Privacy evaluation: reconstruction attacks on leaked features, attacker variants,
leakage scenarios, metrics and reports (``faceobf privacy run CONFIG``).

Attacks see only tensors, so a new protection scheme needs no change here: register it in
:mod:`faceobfuscator.recognition.schemes` and name it in a configuration.

``faceobf privacy replay CONFIG`` (:mod:`.run_replay`, not loaded here: it starts API
servers) measures replay attacks on plain and sealed deployments (:mod:`.replay`) and the
reconstruction attacks on what a sealed deployment leaks (:mod:`.sealed`).
"""

from __future__ import annotations

from faceobfuscator.research.privacy.attacks import (
    AttackSettings,
    ReconstructionAttack,
    get_attack,
    list_attacks,
    register_attack,
)
from faceobfuscator.research.privacy.config import SCENARIOS, PrivacyConfig
from faceobfuscator.research.privacy.identity import DLIB_THRESHOLD, DlibRecognizer
from faceobfuscator.research.privacy.metrics import Interval, mean_interval, mse, psnr, ssim
from faceobfuscator.research.privacy.run import run_privacy
from faceobfuscator.research.privacy.variants import (
    Preprocessor,
    RefineSettings,
    list_variants,
    prepare_variant,
)

__all__ = [
    "AttackSettings",
    "DLIB_THRESHOLD",
    "DlibRecognizer",
    "Interval",
    "Preprocessor",
    "PrivacyConfig",
    "ReconstructionAttack",
    "RefineSettings",
    "SCENARIOS",
    "get_attack",
    "list_attacks",
    "list_variants",
    "mean_interval",
    "mse",
    "prepare_variant",
    "psnr",
    "register_attack",
    "run_privacy",
    "ssim",
]
