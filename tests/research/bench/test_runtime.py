"""The runtime rows of ``faceobf bench server``."""

from __future__ import annotations

from pathlib import Path

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.bench.runtime import runtime_bench
from faceobfuscator.research.bench.server import synthetic_payloads

SFACE = Path(__file__).resolve().parents[3] / "models" / "sface-faceobfuscator"


def test_runtime_bench_times_each_runtime_and_compares_it_with_fp32():
    out = runtime_bench(
        SFACE,
        synthetic_payloads(3, ProtocolConfig()),
        batches=(1, 2),
        repeats=2,
        runtimes=("fp32", "bf16"),  # bf16-compiled: tests/server/test_runtime.py (slow)
    )
    fp32, bf16 = out["rows"]
    assert (fp32["runtime"], bf16["runtime"]) == ("fp32", "bf16")
    assert fp32["min_cosine_to_fp32"] == 1.0 and 0.99 < bf16["min_cosine_to_fp32"] < 1.0
    for row in (fp32, bf16):
        assert row["cpu_ms_per_payload_batch1"] > 0 and row["cpu_ms_per_payload_batch2"] > 0
