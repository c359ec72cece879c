"""Client-side request budgets per operation class, adapting to the registry's 429s.

ACR throttles per registry and per identity with token buckets, separately
for reads, writes (PUT/PATCH/POST) and deletes (ops.md §1.1), and answers
429 with a Retry-After that counts down to the refill. A limiter paces
requests at a rate that starts from a budget and adapts as TCP's congestion
control does: it grows while requests succeed, shrinks on a 429, and every
worker waits out Retry-After.

Set above what the registry grants (a Premium preset on a Standard registry,
another job sharing the identity's bucket), the rate saws around the
registry's: it grows until the registry's bucket runs dry, and every tooth
costs the 429s of the requests in flight at that moment. Three choices keep
that under 2% (tests/ratesim.py simulates them, benchmarks/apply.md measures
them against the emulator):

- Epochs. Each request carries the epoch it was sent in; a decrease starts a
  new epoch. Requests already in flight at the old rate answer 429 too, but
  only the first 429 of an epoch decreases the rate, and only successes sent
  at the current rate raise it. Halving once per in-flight 429 collapsed the
  rate; raising it on stale successes pushed it straight back into the wall.
- Slow growth: 0.1% per success at the current rate, so a tooth lasts a few
  hundred successes whatever the budget (a step proportional to the budget
  made teeth shorter the more the budget overshot: 15% of requests answered
  429 at four times the registry's rate).
- A gentle cut: 30%, not half. Against a registry whose bucket allows only a
  short burst, what a deeper cut leaves unused is lost (75% of its rate with
  halving, about 90% with a 30% cut).

The executor takes a budget only once it has a free slot, right before
sending, so a cut applies to the very next request.
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

DECREASE_FACTOR = 0.7
INCREASE_STEPS = 1000  # each success at the current rate raises it by 1/INCREASE_STEPS


@dataclass
class AdaptiveLimiter:
    """Paces requests at `per_minute`, which adapts: cut by 30% on a 429, raised on success.

    `reserve` is the pure core (the clock is a parameter of the limiter, so a
    simulation can drive it); `acquire` waits for the reserved slot.
    """

    per_minute: float
    ceiling_per_minute: float | None = None  # default: the starting budget
    floor_per_minute: float = 6.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    throttled_count: int = 0
    decreases: int = 0
    _next_slot: float = field(init=False, default=float("-inf"))
    _paused_until: float = field(init=False, default=float("-inf"))
    _epoch: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.ceiling_per_minute is None:
            self.ceiling_per_minute = self.per_minute

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def reserve(self) -> tuple[float, int]:
        """Claim the next slot: (seconds to wait before sending, the epoch it belongs to).

        No burst is saved up while idle: a burst is what makes ACR throttle "for up
        to a full minute after a large burst".
        """
        now = self.clock()
        start = max(now, self._next_slot, self._paused_until)
        self._next_slot = start + 60.0 / self.per_minute
        return start - now, self._epoch

    async def acquire(self) -> int:
        """Wait until a request of this class may start; returns its epoch for the answer."""
        while True:
            delay, epoch = self.reserve()
            if delay > 0:
                await self.sleep(delay)
            # A decrease while this slot was waiting re-spaces it at the new rate.
            if epoch == self._epoch and self.clock() >= self._paused_until:
                return epoch

    def throttled(self, retry_after: float | None, sent_in: int | None = None) -> None:
        """A 429: hold every worker until Retry-After; decrease once per epoch."""
        self.throttled_count += 1
        now = self.clock()
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if sent_in is not None and sent_in != self._epoch:
            return
        self.decreases += 1
        self._epoch += 1
        self.per_minute = max(self.floor_per_minute, self.per_minute * DECREASE_FACTOR)
        self._next_slot = max(now, self._paused_until)

    def succeeded(self, sent_in: int | None = None) -> None:
        """A success at the current rate: 0.1% up, never past the ceiling."""
        if sent_in is not None and sent_in != self._epoch:
            return
        ceiling = self.ceiling_per_minute or self.per_minute
        self.per_minute = min(ceiling, self.per_minute * (1.0 + 1.0 / INCREASE_STEPS))
