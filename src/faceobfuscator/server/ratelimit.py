"""Per-key rate limits: a token bucket for each API key, in each API process.

A key may send ``burst`` requests at once, then ``rate`` per second. Buckets exist only for
keys that passed authentication, so their number is bounded by the key ring. Limits are
per process: with ``P`` API processes behind one balancer a key gets up to ``P`` times the
rate (divide the setting by ``P`` for a global limit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets keyed by a key's digest.

    Args:
        rate: tokens (requests) per second.
        burst: bucket size.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self, rate: float, *, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when admitted, else the seconds until a
        token is available (nothing is spent)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
