import numpy as np
import pytest
from PIL import Image

from faceobfuscator import InputError
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.research.data.datasets import ManifestEntry
from faceobfuscator.research.evaluation.benchmarks import (
    load_benchmark,
    results_table,
    run_verification,
)
from tests.helpers import smooth_face_like

# two folds of one same and one different pair each
PAIRS = """2\t1
Ann_A\t1\t2
Bob_B\t1\tCid_C\t1
Dan_D\t1\t2
Eve_E\t1\tFay_F\t1
"""


@pytest.fixture
def toy_lfw(tmp_path, rng):
    root, aligned = tmp_path / "datasets", tmp_path / "aligned" / "lfw"
    (root / "lfw_meta").mkdir(parents=True)
    (root / "lfw_meta" / "pairs.txt").write_text(PAIRS)
    lines = []
    images = [("Ann_A", 1), ("Ann_A", 2), ("Bob_B", 1), ("Cid_C", 1), ("Dan_D", 1), ("Eve_E", 1)]
    faces = smooth_face_like(rng, n=len(images))
    for (name, i), face in zip(images, faces, strict=True):
        rel = f"{name}/{name}_{i:04d}"
        (aligned / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(aligned / f"{rel}.png")
        lines.append(ManifestEntry(name, f"{rel}.jpg", "detected", f"{rel}.png").to_json())
    # Dan_D_0002 failed alignment and Fay_F has no entry: fold 2 loses both of its pairs
    lines.append(ManifestEntry("Dan_D", "Dan_D/Dan_D_0002.jpg", "failed").to_json())
    (aligned / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "aligned", faces


def test_missing_crops_are_counted_not_dropped_silently(toy_lfw):
    root, aligned, faces = toy_lfw
    bench = load_benchmark("lfw", folds=(1, 2), datasets_root=root, aligned_root=aligned)
    assert bench.missing_pairs == {1: 0, 2: 2}
    assert bench.same.tolist() == [True, False] and bench.folds.tolist() == [1, 1]
    np.testing.assert_array_equal(bench.faces[bench.pairs[0, 1]].numpy(), faces[1])
    # with a fold left empty the k-fold protocol has nothing to test on: it says so
    with pytest.raises(InputError, match="at least two folds"):
        run_verification(
            make_random_model(root / "m"),
            "lfw",
            folds=(1, 2),
            datasets_root=root,
            aligned_root=aligned,
            device="cpu",
            seed=0,
        )


def test_results_table():
    def row(model, bench, mean, std, recovery=True):
        return {
            "benchmark": bench,
            "accuracy_mean": mean,
            "accuracy_std": std,
            "recovery": recovery,
            "extra": {"model": f"models/{model}", "scheme": model},
            "n_pairs": 90,
            "missing_pairs": 10 if bench == "cfp-fp" else 0,
            "tar_at_far": {"tar": mean - 0.1, "n_impostor": 45},
        }

    table = results_table(
        [
            row("arcface", "lfw", 0.9, 0.01),
            row("arcface", "cfp-fp", 0.8, 0.02),
            row("faceobfuscator", "lfw", 0.85, 0.015),
            row("faceobfuscator", "lfw", 0.5, 0.0, recovery=False),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| model | scheme | lfw | cfp-fp |"
    assert lines[2] == "| arcface | arcface | 90.00 ± 1.00 | 80.00 ± 2.00 |"
    assert lines[3] == "| faceobfuscator | faceobfuscator | 85.00 ± 1.50 | - |"
    assert lines[4].startswith("| faceobfuscator | faceobfuscator, no recovery (Table 5) | 50.00")
    assert lines[-1] == "Pairs left out because a crop is missing: cfp-fp 10 of 100"
    assert "| arcface | arcface | 80.0 (45) | 70.0 (45) |" in lines
    assert "| faceobfuscator | faceobfuscator | 75.0 (45) | - |" in lines


def test_tar_on_every_non_mated_comparison(rng):
    import torch

    from faceobfuscator.research.evaluation.benchmarks import tar_all_non_mated

    ids = np.repeat(np.arange(50), 4).astype(str)
    centres = rng.normal(size=(50, 32))
    e = centres[ids.astype(int)] + 0.5 * rng.normal(size=(200, 32))
    e = torch.nn.functional.normalize(torch.from_numpy(e), dim=1)
    mated = np.array([float(e[4 * k] @ e[4 * k + 1]) for k in range(50)])
    out = tar_all_non_mated(e, ids, mated, far=1e-2)
    assert out["n_non_mated"] == 200 * 199 // 2 - 50 * 6
    assert out["n_mated"] == 50
    assert out["far"] <= 1e-2
    scores = (e @ e.T).numpy()[np.triu_indices(200, 1)]
    same = (ids[:, None] == ids[None, :])[np.triu_indices(200, 1)]
    assert np.mean(scores[~same] >= out["threshold"]) == out["far"]
    assert out["tar"] == np.mean(mated >= out["threshold"])
