"""A token bucket on a clock passed in: at most `burst` at once, then `rate` per second.

Pure: taking tokens returns a new bucket, so a rule can be tested at exact injected times and
the controller keeps the one bucket it shares between pools.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace

__all__ = ["TokenBucket"]


@dataclass(frozen=True, slots=True)
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: int
    """The most tokens the bucket holds: what may be spent at once after a long quiet time."""
    tokens: float | None = None
    """Tokens held at `at`; None: full (a bucket never used)."""
    at: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs a positive rate and a burst of at least 1, not {self}")

    def available(self, now: datetime.datetime) -> float:
        if self.tokens is None or self.at is None:
            return float(self.burst)
        elapsed = max(0.0, (now - self.at).total_seconds())  # a clock never runs back into the bucket
        return min(float(self.burst), self.tokens + elapsed * self.rate)

    def take(self, wanted: int, now: datetime.datetime) -> tuple[int, TokenBucket]:
        """Up to `wanted` whole tokens now: how many were granted, and the bucket after."""
        held = self.available(now)
        granted = max(0, min(wanted, math.floor(held)))
        at = now if self.at is None else max(now, self.at)
        return granted, replace(self, tokens=held - granted, at=at)

    def ready_at(self, wanted: int, now: datetime.datetime) -> datetime.datetime:
        """The first moment `wanted` tokens (at most `burst`) are held, if none are taken meanwhile."""
        missing = min(wanted, self.burst) - self.available(now)
        if missing <= 0:
            return now
        # Rounded up to the next microsecond, and one more: at that moment the tokens are there.
        return now + datetime.timedelta(microseconds=math.ceil(missing / self.rate * 1e6) + 1)
