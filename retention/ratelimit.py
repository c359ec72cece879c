"""Client-side request budgets per operation class, adapting to the registry's 429s.

ACR throttles per registry and per identity with token buckets, separately
for reads, writes (PUT/PATCH/POST) and deletes (ops.md §1.1), and answers
429 with a Retry-After that counts down to the refill. A limiter starts from
a budget, halves its rate on every 429 (and waits out Retry-After, for every
worker at once), and creeps back up while requests succeed: additive
increase, multiplicative decrease, as TCP does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class OperationClass(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


# Per-identity limits per minute from ACR's documentation (ops.md §1.1): the budget one job gets.
SKU_LIMITS: dict[str, dict[OperationClass, float]] = {
    "basic": {OperationClass.READ: 5000, OperationClass.WRITE: 1000, OperationClass.DELETE: 500},
    "standard": {OperationClass.READ: 5000, OperationClass.WRITE: 1000, OperationClass.DELETE: 500},
    "premium": {OperationClass.READ: 10000, OperationClass.WRITE: 2000, OperationClass.DELETE: 2000},
}


@dataclass
class AdaptiveLimiter:
    """A token bucket whose rate adapts: halved on 429, raised by a step on each success."""

    per_minute: float
    ceiling_per_minute: float | None = None  # default: the starting budget
    floor_per_minute: float = 6.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    throttled_count: int = 0
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)
    _paused_until: float = field(init=False, default=0.0)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.ceiling_per_minute is None:
            self.ceiling_per_minute = self.per_minute
        # A small burst only: a full minute's burst is what makes ACR throttle "for up to a
        # full minute after a large burst".
        self._tokens = 1.0
        self._stamp = self.clock()

    @property
    def _capacity(self) -> float:
        return max(1.0, self.per_minute / 60.0)

    async def acquire(self) -> None:
        """Wait until a request of this class may start."""
        async with self._lock:
            while True:
                now = self.clock()
                if now < self._paused_until:
                    await self.sleep(self._paused_until - now)
                    continue
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._stamp) * self.per_minute / 60.0
                )
                self._stamp = now
                # The tolerance keeps float rounding from asking for ever tinier waits.
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self.sleep((1.0 - self._tokens) * 60.0 / self.per_minute)

    def throttled(self, retry_after: float | None) -> None:
        """A 429: slow down, and hold every worker of this class until the registry's refill."""
        self.throttled_count += 1
        self.per_minute = max(self.floor_per_minute, self.per_minute / 2)
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, self.clock() + retry_after)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        """A success: speed up again, by a twentieth of the ceiling per success, up to it."""
        ceiling = self.ceiling_per_minute or self.per_minute
        self.per_minute = min(ceiling, self.per_minute + ceiling / 20.0)
