"""Client-side speed: the reference and fast transforms, and photo-to-payload latency.

Throughput uses one single-threaded worker process per core: on this class of machine,
intra-op threading of small tensors costs more than it gains.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import torch

from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE, ProtocolConfig
from faceobfuscator.protocol.features import protect_faces
from faceobfuscator.protocol.frequency import reference_transform, to_greyscale
from faceobfuscator.protocol.obfuscation import obfuscate, self_normalise
from faceobfuscator.protocol.payload import payload_size
from faceobfuscator.research.bench.timing import latency_summary

__all__ = ["transform_benchmark", "reference_images_per_s", "fast_images_per_s", "client_latency"]


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (n, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3), dtype=np.uint8
    )


def reference_images_per_s(config: ProtocolConfig, *, batch: int = 8, repeats: int = 3) -> float:
    """The paper's pipeline: 8x upsampling, all 64 block-DCT channels, then keep the
    retained ones, normalise and obfuscate."""
    faces = _faces(batch)
    keep = list(config.channels)
    gen = None  # production: a fresh secure ChaCha20 stream per call

    def run() -> None:
        coeffs = reference_transform(to_greyscale(faces, config), config)[:, keep].float()
        obfuscate(self_normalise(coeffs, config), config, generator=gen)

    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return batch * repeats / (time.perf_counter() - start)


def _fast_worker(args: tuple[dict, int, int, float]) -> tuple[int, float]:
    config_dict, batch, batches, start_at = args
    torch.set_num_threads(1)
    config = ProtocolConfig.from_dict(config_dict)
    faces = torch.from_numpy(_faces(batch, seed=os.getpid()))
    gen = None  # production: a fresh secure ChaCha20 stream per call
    protect_faces(faces, config, generator=gen)  # warm caches
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for _ in range(batches):
        protect_faces(faces, config, generator=gen)
    return batch * batches, time.perf_counter() - t0


def fast_images_per_s(
    config: ProtocolConfig, *, workers: int = 2, batch: int = 64, batches: int = 40
) -> float:
    """Aligned faces -> obfuscated features with the fast path, batched, on ``workers``
    single-threaded processes started together."""
    ctx = mp.get_context("fork")
    start_at = time.time() + 1.0
    with ctx.Pool(workers) as pool:
        results = pool.map(_fast_worker, [(config.to_dict(), batch, batches, start_at)] * workers)
    images = sum(n for n, _ in results)
    return images / max(t for _, t in results)


def client_latency(
    config: ProtocolConfig, photos: list[Path], *, repeats: int = 1
) -> dict[str, float]:
    """Milliseconds from JPEG bytes to payload bytes for one photo, detection included."""
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.protect import protect_photo
    from faceobfuscator.errors import NoFaceError

    aligner = FaceAligner(config)
    datas = [p.read_bytes() for p in photos]
    protect_photo(datas[0], config, aligner=aligner)  # load models once
    times = []
    for _ in range(repeats):
        for data in datas:
            t0 = time.perf_counter()
            try:
                protect_photo(data, config, aligner=aligner)
            except NoFaceError:
                continue
            times.append((time.perf_counter() - t0) * 1000)
    summary = latency_summary(times)
    return {
        "client_ms_p50": summary.get("p50_ms", float("nan")),
        "client_ms_p95": summary.get("p95_ms", float("nan")),
        "client_ms_p99": summary.get("p99_ms", float("nan")),
        "client_photos": len(times),
    }


def transform_benchmark(config: ProtocolConfig, photos: list[Path]) -> dict[str, object]:
    ref = reference_images_per_s(config)
    fast = fast_images_per_s(config)
    out: dict[str, object] = {
        "reference_images_per_s": ref,
        "fast_images_per_s": fast,
        "fast_over_reference": fast / ref,
        "payload_bytes": payload_size(config),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    out.update(client_latency(config, photos))
    return out
