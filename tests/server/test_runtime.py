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


def test_bf16_refuses_a_network_it_cannot_split_and_unknown_runtimes(tmp_path):
    model = make_random_model(tmp_path / "m")  # MobileFaceNet
    with pytest.raises(ConfigError, match="SFace networks only.*FACEOBF_RUNTIME=fp32"):
        ModelEmbedder(model, runtime="bf16", threshold=0.5)
    with pytest.raises(ConfigError, match="known: fp32, bf16"):
        ModelEmbedder(model, runtime="int4", threshold=0.5)
    with pytest.raises(ConfigError, match="SFace networks only"):
        bf16_network(torch.nn.Linear(2, 2))


def test_concurrent_calls_share_network_calls_and_get_their_own_rows():
    sizes: list[int] = []

    def fn(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        time.sleep(0.02)  # a network call
        return x * 2

    batcher = MicroBatcher(fn, window_s=0.01, max_rows=8)
    results: dict[int, np.ndarray] = {}

    def caller(i: int) -> None:
        results[i] = batcher(np.full((1, 3), i, dtype=np.float32))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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
