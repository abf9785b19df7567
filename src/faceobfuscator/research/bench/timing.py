"""One latency summary for every measurement: count, p50, p95 and p99 in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["latency_summary"]


def latency_summary(ms: Sequence[float] | np.ndarray, *, digits: int = 3) -> dict[str, float]:
    """``{"count", "p50_ms", "p95_ms", "p99_ms"}`` of latencies ``ms`` (milliseconds),
    rounded to ``digits`` decimals; only ``{"count": 0}`` when there are none."""
    values = np.asarray(ms, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "count": int(values.size),
        "p50_ms": round(float(p50), digits),
        "p95_ms": round(float(p95), digits),
        "p99_ms": round(float(p99), digits),
    }
