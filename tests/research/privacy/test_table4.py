"""Table 4 end to end on synthetic faces (no datasets): the schemes with a model directory
are evaluated with their own adaptive preprocessing, the others listed as missing; the
verdicts follow the intervals; the table, the JSON and the Figure 9 PNG are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.research.privacy.attacks import AttackSettings
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.pack import EvaluationFaces, VictimFaces, write_pack
from faceobfuscator.research.privacy.table4 import leakage_verdicts, run_table4
from tests.research.privacy.synthetic import synthetic_faces

EVALUATED = ("dctdp", "duetface", "minusface", "partialface")


def _interval(mean: float, lo: float, hi: float) -> dict:
    return {"mean": mean, "ci95": [lo, hi], "n": 20}


def test_verdicts_follow_the_intervals():
    base = {
        "impostor_match": _interval(0.05, 0.0, 0.2),
        "floor_match": _interval(0.0, 0.0, 0.15),
    }
    rows = [
        {
            "scheme": "a",
            "scenario": "C",
            "dataset": "lfw",
            "attack": "dn",
            "variant": "adaptive",
            "metrics": {"match": _interval(0.6, 0.4, 0.8)},
        },
        {
            "scheme": "a",
            "scenario": "D",
            "dataset": "lfw",
            "attack": "dn",
            "variant": "adaptive",
            "metrics": {"match": _interval(0.3, 0.15, 0.5)},
        },  # overlaps the impostor rate
        {
            "scheme": "b",
            "scenario": "C",
            "dataset": "lfw",
            "attack": "dn",
            "variant": "as-paper",
            "metrics": {"match": _interval(0.0, 0.0, 0.1), "srra": _interval(0.9, 0.7, 1.0)},
        },
    ]
    srra = {"b": {"lfw": {"impostor": _interval(0.0, 0.0, 0.2), "floor": _interval(0, 0, 0.2)}}}
    v = leakage_verdicts({"rows": rows, "baselines": {"lfw": base}, "srra_baselines": srra})
    assert v["a"]["channel"] == "leaks" and "dlib match 0.60" in v["a"]["channel_evidence"][0]
    assert v["a"]["database"] == "protected"
    assert v["b"] == {"channel": "leaks", "channel_evidence": ["lfw dn as-paper: SRRA 0.90"]}
    # an unprotected control that shows no leak makes every "protected" inconclusive
    control = dict(rows[1], scheme="arcface", scenario="C")
    v = leakage_verdicts({"rows": [*rows, control], "baselines": {"lfw": base}})
    assert v["arcface"]["channel"] == v["a"]["database"] == "inconclusive"
    assert v["a"]["channel"] == "leaks"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PrivacyConfig:
    folder = tmp_path_factory.mktemp("table4")
    faces = synthetic_faces(14, 112, seed=3)
    victims = VictimFaces("lfw", faces[10:13], faces[11:14], ["a", "b", "c"])
    write_pack(EvaluationFaces(faces[:10], 10, [victims], "digest"), folder / "pack")
    for name in EVALUATED:
        make_random_model(folder / "models" / name, scheme=name, embedding_size=32)
    tiny = AttackSettings(steps=1, batch_size=2, width=4, dense_layers=1)
    return PrivacyConfig(
        out_dir=str(folder / "unused"),
        models_dir=str(folder / "models"),
        pack=str(folder / "pack"),
        schemes=(*EVALUATED, "arcface"),
        attack_settings={"dn": tiny, "pix2pix": tiny},
        victim_datasets=("lfw",),
        probe_images=3,
        grid_victims=2,
    )


def test_table4_end_to_end(config: PrivacyConfig, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    results = run_table4(
        config, out_dir=tmp_path / "results", figure_dir=tmp_path / "docs", log=lambda s: None
    )
    assert results["evaluated"] == list(EVALUATED) and results["missing"] == ["arcface"]
    rows = results["rows"]
    assert len(rows) == 4 * 2 * 2 * 2  # schemes x variants x scenarios x attacks
    chains = {r["scheme"]: r["preprocessing"] for r in rows if r["variant"] == "adaptive"}
    assert chains == {
        "dctdp": "dctdp-whiten",
        "duetface": "server",
        "minusface": "minusface-sort",
        "partialface": "partialface-sort",
    }
    assert {r["variant"] for r in rows} == {"as-paper", "adaptive"}
    assert set(results["verdicts"]) == set(EVALUATED)
    for v in results["verdicts"].values():
        assert {v["channel"], v["database"]} <= {"protected", "leaks", "inconclusive"}
    saved = json.loads((tmp_path / "results" / "table4.json").read_text())
    assert saved["verdicts"] == results["verdicts"]
    md = (tmp_path / "results" / "table4.md").read_text()
    assert "Not evaluated (no model directory): arcface" in md
    assert "| partialface |" in md and "Leakage verdicts" in md
    with Image.open(tmp_path / "docs" / "figure9_lfw.png") as im:
        assert im.height > im.width * 1.2  # five rows (originals + 4 schemes), two columns


def test_table4_needs_a_model(config: PrivacyConfig, tmp_path: Path) -> None:
    import dataclasses

    with pytest.raises(ConfigError, match="has a model directory"):
        run_table4(dataclasses.replace(config, schemes=("arcface",)), out_dir=tmp_path)
