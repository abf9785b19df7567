import numpy as np
import pytest
import torch

from faceobfuscator import InputError, ProtocolConfig
from faceobfuscator.recognition.modeldir import load_model, make_random_model
from faceobfuscator.research.data.formats import write_bin
from faceobfuscator.research.evaluation.benchmarks import load_benchmark
from faceobfuscator.research.evaluation.verification import (
    accuracy_at,
    best_threshold,
    contiguous_folds,
    embed_faces,
    evaluate_pairs,
    kfold_accuracy,
    tar_at_far,
    threshold_at_far,
)
from tests.helpers import smooth_face_like

# three folds of four pairs, worked by hand in the comments of test_kfold_by_hand
SCORES = np.array([0.9, 0.8, 0.3, 0.62, 0.7, 0.2, 0.1, 0.5, 0.95, 0.68, 0.4, 0.55])
SAME = np.array([1, 1, 0, 0] * 3, dtype=bool)
FOLDS = np.repeat([1, 2, 3], 4)


def test_kfold_by_hand():
    # fold 1: train on folds 2+3, best cut between 0.55 (diff) and 0.68 (same) -> 0.615;
    #   fold 1 then accepts the different pair at 0.62: 3/4
    # fold 2: train on 1+3, perfect cut between 0.62 and 0.68 -> 0.65; rejects 0.2 (same): 3/4
    # fold 3: train on 1+2, cut between 0.62 and 0.7 -> 0.66; all right: 4/4
    acc, thr = kfold_accuracy(SCORES, SAME, FOLDS)
    assert thr == pytest.approx({1: 0.615, 2: 0.65, 3: 0.66})
    assert acc == {1: 0.75, 2: 0.75, 3: 1.0}
    result = evaluate_pairs("toy", SCORES, SAME, FOLDS)
    assert result.accuracy_mean == pytest.approx(2.5 / 3)
    assert result.accuracy_std == pytest.approx(np.std([0.75, 0.75, 1.0]))


def test_best_threshold_edges_and_ties():
    assert best_threshold(np.array([0.1, 0.2]), np.array([True, True])) < 0.1
    assert best_threshold(np.array([0.1, 0.2]), np.array([False, False])) > 0.2
    # equal scores cannot be separated: the cut goes around both
    t = best_threshold(np.array([0.5, 0.5, 0.9]), np.array([True, False, True]))
    assert accuracy_at(np.array([0.5, 0.5, 0.9]), np.array([True, False, True]), t) == 2 / 3


def test_threshold_at_far_gives_the_requested_far(rng):
    impostor = rng.normal(0.0, 0.1, 20_000)
    t = threshold_at_far(impostor, 1e-3)
    assert np.sum(impostor >= t) == 20  # floor(1e-3 * 20000)
    assert np.sum(impostor >= np.nextafter(t, -np.inf)) == 21  # and it is the lowest such t
    genuine = np.array([t - 0.01, t, t + 0.5, 1.0])
    scores = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(4, bool), np.zeros(impostor.size, bool)])
    r = tar_at_far(scores, same, 1e-3)
    assert r["tar"] == 0.75 and r["far"] == pytest.approx(1e-3) and r["n_impostor"] == 20_000


def test_contiguous_folds_match_kfold():
    f = contiguous_folds(23, 10)
    assert np.bincount(f)[1:].tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert (np.diff(f) >= 0).all()


def test_scores_are_checked():
    with pytest.raises(InputError):
        kfold_accuracy(SCORES, SAME, np.ones(12))
    with pytest.raises(InputError):
        best_threshold(np.array([np.nan]), np.array([True]))


def test_embed_faces_fresh_draws_and_no_recovery(tmp_path, rng):
    model = load_model(make_random_model(tmp_path))
    faces = torch.from_numpy(smooth_face_like(rng, n=3))
    g = torch.Generator().manual_seed(0)
    combined, single = embed_faces(model.embed, model.scheme, faces, generator=g)
    assert combined.shape == single.shape == (3, 512)
    torch.testing.assert_close(combined.norm(dim=1), torch.ones(3))
    again, _ = embed_faces(model.embed, model.scheme, faces, generator=g)
    assert not torch.equal(again, combined)  # a fresh obfuscation each time
    raw, _ = embed_faces(model.embed, model.scheme, faces, generator=g, recovery=False)
    assert (raw * combined).sum(1).abs().max() < 0.999


def test_bin_benchmark_round_trip(tmp_path, rng):
    faces = smooth_face_like(rng, n=8)
    issame = [True, False, True, False]
    write_bin(tmp_path / "toy.bin", list(faces), issame)
    bench = load_benchmark(f"bin:{tmp_path / 'toy.bin'}", folds=(1, 2, 3, 4))
    assert bench.pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert bench.same.tolist() == issame and bench.folds.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(bench.faces.numpy(), faces)
    assert ProtocolConfig().image_size == bench.faces.shape[1]
