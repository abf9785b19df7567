"""The harness end to end on synthetic faces (no datasets needed): every scheme, variant,
scenario and attack gets a row; work is shared only where it is the same; reconstructions
survive a save and load; the reports are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceobfuscator.research.privacy.attacks import AttackSettings
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.pack import EvaluationFaces, VictimFaces, read_pack, write_pack
from faceobfuscator.research.privacy.run import Reconstructions, reconstruct_all, run_privacy
from faceobfuscator.research.privacy.variants import RefineSettings
from tests.research.privacy.synthetic import synthetic_faces


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrivacyConfig, EvaluationFaces]:
    faces = synthetic_faces(20, 112, seed=11)
    victims = VictimFaces("lfw", faces[16:19], faces[17:20], ["a", "b", "c"])
    ev = EvaluationFaces(faces[:16], 16, [victims], "digest")
    folder = tmp_path_factory.mktemp("pack")
    write_pack(ev, folder)
    tiny = AttackSettings(steps=2, batch_size=4, width=4, dense_layers=1)
    cfg = PrivacyConfig(
        out_dir=str(folder / "out"),
        models_dir=str(folder / "no-models"),
        pack=str(folder),
        attack_settings={"dn": tiny, "pix2pix": tiny},
        victim_datasets=("lfw",),
        probe_images=4,
        refine=RefineSettings(steps=2),
        grid_victims=2,
    )
    return cfg, read_pack(folder)


def test_pack_round_trip(setup: tuple[PrivacyConfig, EvaluationFaces]) -> None:
    _, ev = setup
    original = synthetic_faces(20, 112, seed=11)
    np.testing.assert_array_equal(ev.victims[0].probe, original[16:19])  # lossless
    # the attacker's faces travel as JPEG (quality 95): close, not exact
    assert np.abs(ev.attacker.astype(int) - original[:16].astype(int)).mean() < 3


def test_harness_end_to_end(setup: tuple[PrivacyConfig, EvaluationFaces], tmp_path: Path) -> None:
    cfg, ev = setup
    torch.set_num_threads(1)
    recons = reconstruct_all(cfg, ev, log=lambda s: None)
    assert len(recons.rows) == 2 * 3 * 2 * 2  # schemes x variants x scenarios x attacks
    by = {(r["scheme"], r["variant"], r["scenario"], r["attack"]): r for r in recons.rows}
    assert by[("faceobfuscator", "adaptive", "C", "dn")]["preprocessing"] == "server+rms+abs"
    assert by[("arcface-fd", "adaptive", "C", "dn")]["preprocessing"] == "none"
    # equal preprocessing shares one network; the white-box row is refined on top of it
    fo = [
        by[("faceobfuscator", v, "C", "dn")]["set"] for v in ("as-paper", "adaptive", "white-box")
    ]
    assert len(set(fo)) == 3
    assert sum(k.startswith("faceobfuscator") for k in recons.training) == 4
    assert "D = C" in by[("faceobfuscator", "adaptive", "D", "dn")]["notes"]
    assert all(r["refined"] == (r["variant"] == "white-box") for r in recons.rows)
    for arr in recons.sets.values():
        assert arr.dtype == np.uint8 and arr.shape == (3, 112, 112, 3)

    recons.save(tmp_path / "rec")
    again = Reconstructions.load(tmp_path / "rec")
    assert again.rows == recons.rows
    assert all(np.array_equal(again.sets[k], v) for k, v in recons.sets.items())

    results = run_privacy(cfg, log=lambda s: None, reconstructions=again)
    out = Path(cfg.out_dir)
    assert {p.name for p in out.iterdir()} == {"results.json", "table.md", "grid_lfw.png"}
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["rows"]) == len(results["rows"]) == 24
    m = saved["rows"][0]["metrics"]
    assert set(m) == {"mse", "psnr", "ssim", "cos", "match"}  # no model: SRRA pending
    assert saved["rows"][0]["srra_pending"] is True
    assert saved["baselines"]["lfw"]["victims"] == 3
