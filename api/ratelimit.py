"""Per-key rate limiting: one token bucket per API key.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one. An empty bucket answers how long until the next token, which becomes the 429's
``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    def __init__(
        self, rate_per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = rate_per_second
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, otherwise the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key id, created on first use (a few hundred bytes per active key)."""

    def __init__(
        self, requests_per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = requests_per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def check(self, key: str) -> int:
        """0 when the request may go ahead, else the whole seconds to put in ``Retry-After``."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
            wait = bucket.take()
            if wait <= 0.0:
                return 0
            self.rejected += 1
            return max(1, math.ceil(wait))
