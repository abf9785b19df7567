"""The server's embedding runtimes (``server.runtime``): CPU time per payload at batch
sizes, and how far each runtime's embeddings are from the float32 reference."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.protocol.payload import decode_payload
from faceobfuscator.server.embedder import ModelEmbedder
from faceobfuscator.server.runtime import RUNTIMES

__all__ = ["runtime_bench"]


def runtime_bench(
    model_dir: str | Path,
    payloads: list[bytes],
    *,
    batches: tuple[int, ...] = (1, 4),
    repeats: int = 10,
    runtimes: tuple[str, ...] = RUNTIMES,
) -> dict[str, Any]:
    """For each of ``runtimes`` (the first is the reference, normally ``fp32``): the
    process's CPU ms per payload (median of ``repeats``) at each batch size, one torch
    thread, and the smallest cosine between its embeddings of ``payloads`` and the
    reference's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows, ref = [], None
        for runtime in runtimes:
            model = ModelEmbedder(model_dir, runtime=runtime)
            feats = np.stack([decode_payload(p, model.protocol).feature for p in payloads])
            emb = model.embed(feats)
            ref = emb if ref is None else ref
            row: dict[str, Any] = {
                "runtime": runtime,
                "min_cosine_to_fp32": round(float((emb * ref).sum(1).min()), 5),
            }
            for b in batches:
                x = feats[:b]
                model.embed(x)  # warm-up
                cpu = []
                for _ in range(repeats):
                    t = time.process_time()
                    model.embed(x)
                    cpu.append(1000 * (time.process_time() - t) / b)
                row[f"cpu_ms_per_payload_batch{b}"] = round(statistics.median(cpu), 1)
            rows.append(row)
        return {
            "model": str(model_dir),
            "payloads": len(payloads),
            "torch_threads": 1,
            "rows": rows,
        }
    finally:
        torch.set_num_threads(threads)
