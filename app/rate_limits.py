"""Request-rate limits on the HTTP routes, in the app itself (an edge in front is not always there): a token bucket per
caller (its login or API key) and one per client address, each ``per_minute`` requests with bursts up to
``burst``. Over either, the answer is 429 with ``Retry-After``; other callers are not slowed. Memory is bounded: the
least recently seen buckets go first past ``max_buckets``."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Optional, Tuple


class TokenBuckets:
    def __init__(self, per_minute: float, burst: int, max_buckets: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(max(1, burst))
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, Tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when ``key`` may go now (a token is taken); else the seconds until it may."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate_per_s)
            wait_s = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait_s = (1.0 - tokens) / self.rate_per_s
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
            return wait_s


class RateLimits:
    """The caller's bucket and the address's; a request waits for neither or is refused."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.callers = TokenBuckets(per_minute, burst)
        self.addresses = TokenBuckets(per_minute, burst)

    def retry_after_s(self, caller: Optional[str], address: str) -> float:
        wait_s = self.addresses.take("addr:" + address)
        if caller:
            wait_s = max(wait_s, self.callers.take("caller:" + caller))
        return wait_s
