"""Run configurations, report writers and the CLI entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from faceobfuscator.cli import build_parser
from faceobfuscator.errors import ConfigError
from faceobfuscator.research.privacy import PrivacyConfig
from faceobfuscator.research.privacy.report import markdown_table, save_grid

# privacy-linkage-*.json are linkage configurations (tests/research/privacy/test_linkage.py)
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[3] / "configs").glob("privacy-*.json")
    if not p.name.startswith("privacy-linkage-")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = PrivacyConfig.load(path)
    assert PrivacyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown privacy configuration keys \\['stepz'\\]"):
        PrivacyConfig.from_dict({"stepz": 1})
    with pytest.raises(ConfigError, match="attacks=\\['gan'\\]"):
        PrivacyConfig(attacks=("gan",))
    with pytest.raises(ConfigError, match="scenarios"):
        PrivacyConfig(scenarios=("E",))
    with pytest.raises(ConfigError, match="(?s)replay.dataset='ms1m'.*replay.attack='gan'"):
        PrivacyConfig.from_dict({"replay": {"dataset": "ms1m", "attack": "gan"}})
    with pytest.raises(ConfigError, match="bad privacy configuration entry"):
        PrivacyConfig.from_dict({"replay": {"victimz": 3}})


def test_replay_settings_round_trip() -> None:
    cfg = PrivacyConfig.from_dict(
        {"replay": {"victims": 7, "attack_settings": {"steps": 5, "max_seconds": 9}}}
    )
    assert (cfg.replay.victims, cfg.replay.attack_settings.steps) == (7, 5)
    assert cfg.replay.attack_settings.max_seconds == 9
    assert cfg.to_dict()["replay"]["attack_settings"]["steps"] == 5


def _interval(m: float) -> dict:
    return {"mean": m, "ci95": [m - 0.01, m + 0.01], "n": 10}


def test_markdown_table_layout() -> None:
    metrics = {
        k: _interval(v) for k, v in {"ssim": 0.5, "psnr": 15.0, "cos": 0.9, "match": 0.7}.items()
    }
    rows = [
        {
            "scheme": "s",
            "variant": v,
            "scenario": "C",
            "attack": a,
            "dataset": "lfw",
            "srra_pending": True,
            "metrics": metrics,
        }
        for v in ("as-paper", "adaptive")
        for a in ("dn", "pix2pix")
    ]
    base = {
        k: _interval(0.1)
        for k in (
            "ceiling_match",
            "impostor_match",
            "floor_match",
            "floor_ssim",
            "floor_psnr",
            "floor_cos",
        )
    }
    text = markdown_table({"rows": rows, "baselines": {"lfw": base | {"victims": 10}}})
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[4].strip() == "DN SSIM" and "cGAN Match" in lines[0]
    assert len(lines) == 2 + 2  # header, rule, one row per variant
    assert (
        "| s | adaptive | C | 0.500 ±0.010 | 15.00 ±0.01 | 0.900 ±0.010 | 0.70 ±0.01 | pending |"
        in text
    )


def test_grid_is_small(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(4, 3, 112, 112, generator=g)
    cols = {f"scheme / v{i} / dn": torch.rand(4, 3, 112, 112, generator=g) for i in range(6)}
    save_grid(originals, cols, tmp_path / "grid.png")
    assert 0 < (tmp_path / "grid.png").stat().st_size < 500_000


def test_cli_registers_privacy_run() -> None:
    args = build_parser().parse_args(["privacy", "run", "configs/privacy-quick.json"])
    assert args.config == "configs/privacy-quick.json" and callable(args.func)
