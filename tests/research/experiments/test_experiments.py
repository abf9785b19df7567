"""Every experiment end to end on the tiny setup (seconds each): the files it writes, and
the values that follow from its definition (removal steps, kept channels, ranges,
accuracy loss, shared privacy figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig, safe_exponent_range
from faceobfuscator.research.experiments import (
    ExperimentConfig,
    list_experiments,
    load_experiment_config,
    removal_order,
    run_experiment,
)
from faceobfuscator.research.experiments.importance import (
    channel_name,
    learned_importance,
    live_channels,
)
from faceobfuscator.research.experiments.runner import Runner
from faceobfuscator.research.privacy.config import PrivacyConfig


def _run(tiny: dict, tmp_path: Path, name: str, settings: dict) -> tuple[dict, Path]:
    out = tmp_path / name
    cfg = ExperimentConfig.from_dict(
        {**tiny, "experiment": name, "settings": settings, "out_dir": str(out)}
    )
    logs: list[str] = []
    results = run_experiment(name, cfg, log=logs.append)
    assert {p.name for p in out.iterdir()} == {"results.json", "table.md", "figure.png"}
    assert json.loads((out / "results.json").read_text())["experiment"] == name
    with Image.open(out / "figure.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
    results["logs"] = logs
    return results, out


def _accuracies(row: dict) -> list[float]:
    return [v["accuracy"] for v in row["accuracy"].values()]


def test_channel_importance(tiny: dict, tmp_path: Path) -> None:
    r, out = _run(tiny, tmp_path, "channel-importance", {"remove": 2})
    v = r["variants"]
    assert list(v) == ["a", "b", "c", "d"]
    assert (v["a"]["scheme"], v["d"]["scheme"]) == ("dct-raw", "dct-normalised")
    # each retraining removes the `remove` most important channels of the one before
    assert v["b"]["removed"] == v["a"]["order"][:2]
    assert v["c"]["removed"] == v["a"]["order"][:2] + v["b"]["order"][:2]
    for k in v["c"]["removed"]:
        assert v["c"]["importance"][k] is None and k not in v["c"]["channels"]
    assert len(v["c"]["channels"]) == 60
    for name in "abcd":  # the order is the learned weights' order, read back from the model
        imp = learned_importance(
            v[name]["model"], ProtocolConfig(channels=tuple(v[name]["channels"]))
        )
        assert v[name]["order"] == removal_order(imp)
        assert np.nanmin(imp) != np.nanmax(imp)  # the weights moved away from 1 in training
    assert r["removal_order"] == v["d"]["order"] and r["removal_order_from"] == "d"
    table = (out / "table.md").read_text()
    assert f"({v['d']['removed'] or '-'}" not in table and channel_name(v["a"]["order"][0]) in table


def test_live_channels_are_those_the_upsampling_keeps() -> None:
    live = live_channels(ProtocolConfig())
    # 8x half-pixel bilinear upsampling zeroes row and column 4 of every 8x8 block's DCT
    assert live == [k for k in range(64) if 4 not in (k // 8, k % 8)]


def test_removal_order_is_computed_from_importance() -> None:
    assert removal_order([0.2, 0.9, None, 0.5, 0.9]) == [1, 4, 3, 0]
    assert removal_order(np.array([np.nan, 3.0, 1.0])) == [1, 2]
    with pytest.raises(ValueError, match="no channel"):
        removal_order([None, np.nan])


def test_single_channels(tiny: dict, tmp_path: Path) -> None:
    r, out = _run(tiny, tmp_path, "single-channels", {"channels": [0, 63]})
    assert [row["setting"] for row in r["rows"]] == ["DC", "AC77"]
    assert [row["protocol"] for row in r["rows"]] == [{"channels": [0]}, {"channels": [63]}]
    for row in r["rows"]:
        assert row["status"] == "ok" and row["privacy"] is None
        assert all(0 <= a <= 1 for a in _accuracies(row))
    assert "| - | DC | `dct-normalised` |" in (out / "table.md").read_text()


def test_channel_count(tiny: dict, tmp_path: Path) -> None:
    r, _ = _run(tiny, tmp_path, "channel-count", {"keep": [64, 2]})
    order = r["order"]
    live = live_channels(ProtocolConfig())
    assert sorted(order) == live and order != live
    assert [row["kept"] for row in r["rows"]] == [49, 2] * 2  # 64 asked, 49 live
    for row in r["rows"]:
        assert row["protocol"]["channels"] == sorted(order[: row["kept"]])
        assert set(row["privacy"]["lfw"]) >= {"as-paper", "adaptive", "floor", "ceiling"}
        if row["kept"] == 49:
            assert all(v == 0 for v in row["accuracy_loss"].values())
    fo = {row["kept"]: row for row in r["rows"] if row["group"] == "with obfuscation"}
    for row in fo.values():
        for b, loss in row["accuracy_loss"].items():
            assert loss == pytest.approx(
                fo[49]["accuracy"][b]["accuracy"] - row["accuracy"][b]["accuracy"]
            )


def test_uv_range_and_base_b(tiny: dict, tmp_path: Path) -> None:
    r, _ = _run(tiny, tmp_path, "uv-range", {"ranges": [[0, 1], "max"]})
    widest = list(safe_exponent_range(2.0, 112 * 112))
    assert [row["protocol"]["v_range"] for row in r["rows"]] == [[0, 1], widest]
    assert r["rows"][1]["setting"].endswith("(max)")
    m = r["rows"][0]["privacy"]["lfw"]["adaptive"]
    assert 0 <= m["ci95"][0] <= m["mean"] <= m["ci95"][1] <= 1 and m["n"] == 3
    r, _ = _run(tiny, tmp_path, "base-b", {"bases": [{"b": 10, "v_range": "max"}]})
    assert r["rows"][0]["protocol"] == {"b": 10.0, "v_range": list(safe_exponent_range(10, 112**2))}


def test_components(tiny: dict, tmp_path: Path) -> None:
    r, _ = _run(tiny, tmp_path, "components", {})
    rows = {(row["group"], row["setting"]): row for row in r["rows"]}
    assert len(rows) == 7
    assert rows[("deletion only", "no recovery step")]["scheme"] == "dct-normalised"
    both = rows[("deletion + obfuscation", "recovery")]
    test_only = rows[("deletion + obfuscation", "no recovery (test time only)")]
    trained = rows[("deletion + obfuscation", "no recovery (trained without)")]
    assert test_only["model"] == both["model"] != trained["model"]
    assert trained["scheme"] == "faceobfuscator-no-recovery"
    assert test_only["privacy"] == trained["privacy"] == both["privacy"] is not None
    assert rows[("obfuscation only", "recovery")]["protocol"] == {
        "channels": live_channels(ProtocolConfig())
    }
    assert all(row["status"] == "ok" for row in r["rows"])
    # a second run reuses every model and privacy result
    r2, _ = _run(tiny, tmp_path / "again", "components", {})
    assert not any("training into" in s or "attacking into" in s for s in r2["logs"])
    assert sum("verification: reusing" in s for s in r2["logs"]) == 7
    assert [row.get("accuracy") for row in r2["rows"]] == [row.get("accuracy") for row in r["rows"]]


def test_configuration_errors(tiny: dict, tmp_path: Path) -> None:
    cfg = ExperimentConfig.from_dict({**tiny, "experiment": "uv-range"})
    with pytest.raises(ConfigError, match="not 'base-b'"):
        run_experiment("base-b", cfg)
    with pytest.raises(ConfigError, match="known:"):
        run_experiment("no-such-experiment", cfg)
    bad = ExperimentConfig.from_dict({**tiny, "experiment": "uv-range", "settings": {"rangez": []}})
    with pytest.raises(ConfigError, match="rangez"):
        run_experiment("uv-range", bad)
    with pytest.raises(ConfigError, match="two folds"):
        ExperimentConfig.from_dict({**tiny, "experiment": "uv-range", "evaluation": {"folds": [6]}})
    with pytest.raises(ConfigError, match="unknown keys"):
        ExperimentConfig.from_dict({**tiny, "experiment": "uv-range", "epochs": 3})


def test_cli_names_are_the_registry() -> None:
    from faceobfuscator.cli.experiment import NAMES

    assert list(NAMES) == list_experiments()


@pytest.mark.parametrize("path", sorted(Path("configs/experiments").glob("*.json")), ids=str)
def test_shipped_configurations_resolve(path: Path) -> None:
    cfg = load_experiment_config(path)
    match = re.fullmatch(r"(.+)-(cpu|gpu)(-quick)?", path.stem)
    assert match is not None and cfg.experiment == match[1]
    kind = match[2]
    train = Runner(cfg).train_config("faceobfuscator", {"channels": [1]})
    assert train.distill is not None and train.init == "pretrained"
    assert train.device == ("cpu" if kind == "cpu" else "cuda")
    if cfg.privacy is not None:
        PrivacyConfig.from_dict(cfg.privacy)


def test_cpu_configurations_share_models_and_attacks() -> None:
    cpu = [
        load_experiment_config(p) for p in sorted(Path("configs/experiments").glob("*-cpu*.json"))
    ]
    assert len({json.dumps(c.train, sort_keys=True) for c in cpu}) == 1
    assert len({c.recipe for c in cpu} | {c.models_dir for c in cpu}) == 2
    assert len({json.dumps(c.privacy, sort_keys=True) for c in cpu if c.privacy}) == 1
