"""Table 3: storage and client time per scheme, the Table 4 verdicts, and the whole table
on a toy LFW."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.data.datasets import ManifestEntry
from faceobfuscator.research.evaluation.table3 import (
    client_time,
    leakage_verdicts,
    model_directories,
    run_table3,
    storage_kb,
    table3_markdown,
)
from tests.helpers import smooth_face_like
from tests.research.evaluation.test_benchmarks import PAIRS


def _faces(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 112, 112, 3), dtype=torch.uint8)


@pytest.mark.parametrize(
    ("name", "channels"), [("arcface", 3), ("faceobfuscator", 2), ("ppfr-fd", 36), ("cloak", 3)]
)
def test_storage_is_the_stored_tensor_in_float32(name, channels):
    scheme = get_scheme(name, ProtocolConfig())
    kb = storage_kb(scheme, _faces(2), generator=torch.Generator().manual_seed(0))
    assert kb == pytest.approx(channels * 112 * 112 * 4 / 1024)


def test_client_time_per_face():
    scheme = get_scheme("arcface-fd", ProtocolConfig())
    t = client_time(scheme, _faces(8), generator=torch.Generator(), batch=8, repeats=2, singles=3)
    assert t["batch"] == 8 and t["batched_calls"]["count"] == 2 and t["single_calls"]["count"] == 3
    assert t["batched_ms_per_face"] == pytest.approx(t["batched_calls"]["p50_ms"] / 8, abs=1e-4)
    assert 0 < t["batched_ms_per_face"] and 0 < t["single_ms_per_face"]
    with pytest.raises(ConfigError, match="needs 16 faces"):
        client_time(scheme, _faces(8), generator=torch.Generator(), batch=16)


def test_leakage_verdicts_from_table4(tmp_path):
    assert leakage_verdicts(tmp_path / "absent.json") == {}
    path = tmp_path / "table4.json"
    path.write_text(json.dumps({"verdicts": {"cloak": {"channel": "leaks"}}}))
    assert leakage_verdicts(path) == {"cloak": {"channel": "leaks"}}
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ConfigError, match="no 'verdicts'"):
        leakage_verdicts(path)


@pytest.fixture
def complete_toy_lfw(tmp_path, rng):
    """Two folds of one same and one different pair each, every crop present."""
    root, aligned = tmp_path / "datasets", tmp_path / "aligned"
    (root / "lfw_meta").mkdir(parents=True)
    (root / "lfw_meta" / "pairs.txt").write_text(PAIRS)
    names = ["Ann_A", "Ann_A", "Bob_B", "Cid_C", "Dan_D", "Dan_D", "Eve_E", "Fay_F"]
    images = [(n, 1 + names[:i].count(n)) for i, n in enumerate(names)]
    lines = []
    for (name, i), face in zip(images, smooth_face_like(rng, n=len(images)), strict=True):
        rel = f"{name}/{name}_{i:04d}"
        (aligned / "lfw" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(aligned / "lfw" / f"{rel}.png")
        lines.append(ManifestEntry(name, f"{rel}.jpg", "detected", f"{rel}.png").to_json())
    (aligned / "lfw" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root, aligned


def test_table3_end_to_end_on_a_toy_lfw(complete_toy_lfw, tmp_path):
    root, aligned = complete_toy_lfw
    models = tmp_path / "models"
    make_random_model(models / "a-cloak", scheme="cloak", embedding_size=32)
    make_random_model(models / "b-arcface", scheme="arcface", embedding_size=32)
    (models / "notes").mkdir()
    found = model_directories(models)
    assert [p.name for p in found] == ["a-cloak", "b-arcface"]
    table4 = tmp_path / "table4.json"
    table4.write_text(
        json.dumps({"verdicts": {"cloak": {"channel": "leaks", "database": "protected"}}})
    )
    results = run_table3(
        found,
        benchmarks=("lfw",),
        folds=(1, 2),
        table4=table4,
        datasets_root=root,
        aligned_root=aligned,
        timing_batch=2,
        log=lambda s: None,
    )
    rows = {r["scheme"]: r for r in results["rows"]}
    assert set(rows) == {"cloak", "arcface"}
    lfw = rows["cloak"]["verification"]["lfw"]
    assert lfw["n_pairs"] == 4 and lfw["extra"]["scheme"] == "cloak"
    assert rows["cloak"]["leakage"] == {"channel": "leaks", "database": "protected"}
    assert rows["arcface"]["leakage"] == {}
    assert rows["arcface"]["storage_kb_per_face"] == pytest.approx(147.0)
    md = table3_markdown(results, command="faceobf eval table3 --x")
    line = next(x for x in md.splitlines() if x.startswith(f"| {models / 'a-cloak'} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    acc = 100 * lfw["accuracy_mean"]
    assert cells[2].startswith(f"{acc:.2f} ±") and cells[-2:] == ["leaks", "protected"]
    assert "`faceobf eval table3 --x`" in md and "folds [1, 2]" in md


def test_cli_writes_json_and_markdown(complete_toy_lfw, tmp_path, capsys):
    from faceobfuscator.cli import main

    root, aligned = complete_toy_lfw
    model = make_random_model(tmp_path / "m", scheme="ppfr-fd", embedding_size=32)
    out, md = tmp_path / "t3.json", tmp_path / "t3.md"
    argv = ["eval", "table3", "--models", str(model), "--benchmarks", "lfw", "--folds", "1-2"]
    argv += ["--timing-batch", "2"]
    argv += ["--root", str(root), "--aligned", str(aligned), "--device", "cpu"]
    argv += ["--table4", str(tmp_path / "none.json"), "--out", str(out), "--markdown", str(md)]
    assert main(argv) == 0
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["scheme"] == "ppfr-fd" and saved["table4"] is None
    assert saved["command"].startswith("faceobf ") and md.read_text() in capsys.readouterr().out
    assert saved["rows"][0]["storage_kb_per_face"] == pytest.approx(36 * 112 * 112 * 4 / 1024)


def test_cli_eval_verify_beside_table3(complete_toy_lfw, tmp_path):
    """`eval verify` and `eval results` share the CLI module with table3; both still run."""
    from faceobfuscator.cli import main

    root, aligned = complete_toy_lfw
    model = make_random_model(tmp_path / "m", scheme="arcface", embedding_size=32)
    common = ["--root", str(root), "--aligned", str(aligned), "--device", "cpu"]
    out = tmp_path / "v.json"
    argv = ["eval", "verify", "--model", str(model), "--benchmark", "lfw", "--folds", "1-2"]
    assert main([*argv, *common, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_pairs"] == 4
