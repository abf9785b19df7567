"""The bf16 runtime stays within 1e-3 cosine of the float32 model; micro-batching gives
each concurrent caller its own rows from fewer network calls."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.payload import decode_payload
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.server.embedder import ModelEmbedder
from faceobfuscator.server.runtime import MicroBatcher, bf16_network
from tests.server.fakes import faces, payloads

SFACE = Path(__file__).resolve().parents[2] / "models" / "sface-faceobfuscator"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN for bf16")
def test_bf16_embeddings_are_within_1e3_cosine_of_the_float32_model():
    fp32 = ModelEmbedder(SFACE)
    bf16 = ModelEmbedder(SFACE, runtime="bf16")
    assert bf16.model_hash == fp32.model_hash  # the same cache: the embeddings agree
    feats = np.stack([decode_payload(p, fp32.protocol).feature for p in payloads(faces(12))])
    ref, got = fp32.embed(feats), bf16.embed(feats)
    assert got.dtype == np.float32 and got.shape == ref.shape == (12, 128)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    cos = (ref * got).sum(1)
    assert cos.min() >= 1 - 1e-3, cos.min()
    assert not np.array_equal(ref, got)  # it did run in bfloat16


def test_bf16_folds_batchnorms_into_a_copy_and_leaves_the_model_unchanged():
    from faceobfuscator.recognition.sface import SFaceNet

    torch.manual_seed(0)
    net = SFaceNet(in_channels=2).eval()
    for m in net.modules():  # non-trivial running statistics, so folding changes weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = bf16_network(net)
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    body_bns = [m for m in fast.net.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert body_bns == [] and isinstance(net.body[0][1], torch.nn.BatchNorm2d)
    x = torch.randn(3, 2, 112, 112)
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(net(x), dim=1)
        got = torch.nn.functional.normalize(fast(x), dim=1)
    assert got.shape == (3, 128) and float((ref * got).sum(1).min()) > 0.99


def test_bf16_refuses_a_network_it_cannot_split_and_unknown_runtimes(tmp_path):
    model = make_random_model(tmp_path / "m")  # MobileFaceNet
    with pytest.raises(ConfigError, match="SFace networks only.*FACEOBF_RUNTIME=fp32"):
        ModelEmbedder(model, runtime="bf16", threshold=0.5)
    with pytest.raises(ConfigError, match="known: fp32, bf16"):
        ModelEmbedder(model, runtime="int4", threshold=0.5)
    with pytest.raises(ConfigError, match="SFace networks only"):
        bf16_network(torch.nn.Linear(2, 2))


def _call_concurrently(batcher: MicroBatcher, n: int, *, width: int) -> dict[int, np.ndarray]:
    """Call ``batcher`` from ``n`` threads at once, thread ``i`` with a row of ``i``s."""
    results: dict[int, np.ndarray] = {}

    def caller(i: int) -> None:
        results[i] = batcher(np.full((1, width), i, dtype=np.float32))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_calls_share_network_calls_and_get_their_own_rows():
    sizes: list[int] = []

    def fn(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        time.sleep(0.02)  # a network call
        return x * 2

    batcher = MicroBatcher(fn, window_s=0.01, max_rows=8)
    results = _call_concurrently(batcher, 12, width=3)
    for i in range(12):
        np.testing.assert_array_equal(results[i], np.full((1, 3), 2 * i))
    assert sum(sizes) == 12 and max(sizes) <= 8 and batcher.calls == len(sizes) < 12
    # alone, a call runs by itself; a call larger than max_rows is not split
    assert batcher(np.ones((20, 3))).shape == (20, 3) and sizes[-1] == 20


def test_a_failed_batch_raises_in_each_of_its_callers_and_the_next_one_runs():
    calls = 0

    def fn(x: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.02)
            raise RuntimeError("network failed")
        return x

    batcher = MicroBatcher(fn, window_s=0.01)
    errors: list[str] = []

    def caller() -> None:
        try:
            batcher(np.zeros((1, 2)))
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and set(errors) == {"network failed"}
    assert batcher(np.ones((1, 2))).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="max_rows >= 1"):
        MicroBatcher(fn, max_rows=0)


def test_lanes_run_that_many_batches_at_once_and_every_caller_gets_its_rows():
    guard = threading.Lock()
    running = {"now": 0, "most": 0}  # fn calls in progress, and the most seen at once

    def fn(x: np.ndarray) -> np.ndarray:
        with guard:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.03)  # a network call that releases the GIL
        with guard:
            running["now"] -= 1
        return x + 1

    for lanes in (1, 2, 3):
        running["most"] = 0
        batcher = MicroBatcher(fn, window_s=0.001, max_rows=2, lanes=lanes)
        results = _call_concurrently(batcher, 12, width=2)
        for i in range(12):
            np.testing.assert_array_equal(results[i], np.full((1, 2), i + 1))
        assert running["most"] == lanes, (lanes, running["most"])
        assert batcher._running == 0 and batcher._queue == []  # every lane handed back
    with pytest.raises(ValueError, match="lanes >= 1"):
        MicroBatcher(fn, lanes=0)


def test_compiled_network_pads_and_splits_batches_to_its_compiled_sizes():
    from faceobfuscator.server.runtime import CompiledNetwork

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.PReLU(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5),
    ).eval()
    compiled = CompiledNetwork(net, (2, 8, 8), batches=(1, 2))
    x = torch.randn(5, 2, 8, 8)
    with torch.inference_mode():
        ref = net(x)
        for n in (1, 2, 3, 5):  # compiled, compiled, padded + split, split
            got = compiled(x[:n])
            assert got.shape == (n, 5)
            torch.testing.assert_close(got, ref[:n], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="ascending"):
        CompiledNetwork(net, (2, 8, 8), batches=(2, 1))


@pytest.mark.slow
def test_bf16_compiled_embeddings_are_within_1e3_cosine_of_the_float32_model():
    fp32 = ModelEmbedder(SFACE)
    fast = ModelEmbedder(SFACE, runtime="bf16-compiled")
    feats = np.stack([decode_payload(p, fp32.protocol).feature for p in payloads(faces(7))])
    ref, got = fp32.embed(feats), fast.embed(feats)  # 7 rows: chunks of 4 and 3 (padded)
    assert got.shape == ref.shape == (7, 128)
    assert (ref * got).sum(1).min() >= 1 - 1e-3
