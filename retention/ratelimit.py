"""Client-side request budgets per operation class, adapting to the registry's 429s.

ACR throttles per registry and per identity with token buckets, separately
for reads, writes (PUT/PATCH/POST) and deletes (ops.md §1.1), and answers
429 with a whole-second Retry-After that counts down to the refill. Those
limits bound a run on a big registry, so a limiter paces every request of a
class, for the whole run: the inventory's (retention.registry.budget, every
reader process sharing one `SharedBudget`) and the executor's.

It starts at the SKU's documented limit and adapts as TCP's congestion
control does, tuned for a bucket that allows only a short burst and a pause
that costs a whole second (tests/ratesim.py simulates it in virtual time;
benchmarks/apply.md and inventory.md measure it against the emulator):

- Epochs. Each request carries the epoch it was sent in; a decrease starts a
  new epoch. Requests already in flight at the old rate answer 429 too, but
  only the first 429 of an epoch decreases the rate, and only successes sent
  at the current rate raise it. Halving once per in-flight 429 collapsed the
  rate; raising it on stale successes pushed it straight back into the wall.
- A gentle cut: 30%, not half, and every worker waits out Retry-After.
- Quick recovery to 95% of the rate that was throttled (the registry granted
  nearly that much a moment ago): a twentieth of the gap per success. A slow
  climb from the cut (0.1% a success) left the rate under the registry's for
  tens of seconds after every 429, and a 20-request bucket cannot bank that.
- A creep from there to the throttled rate paced by time and by the pause
  the registry asked for (5% over 50 pauses): each tooth of the saw costs one
  pause for everyone, whatever the request rate, so teeth must be as rare at
  10,000 reads a minute as at 500 deletes. Growth per success made them
  fifteen times more frequent at read rates (3.7% of reads answered 429 in
  the simulation, 0.06% now).
- A probe past the throttled rate, and before any 429: 1% a pause, at most
  0.1% a success, with no ceiling unless one is given. The documented limits
  are approximate and support can raise them; capping at the start left a
  raised limit unused.

The executor takes a budget only once it has a free slot, right before
sending, so a cut applies to the very next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableSequence
    from contextlib import AbstractContextManager
    from multiprocessing.context import BaseContext


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
# After a cut, the rate climbs back quickly to just under the rate that was throttled (the
# registry granted about that much a moment ago); only past it does the slow probe resume.
RECOVERY_SHARE = 0.95
RECOVERY_STEPS = 20  # each success closes 1/RECOVERY_STEPS of the gap to that rate
# Between there and the throttled rate it creeps by time, not by successes: what a tooth of the
# saw costs is its Retry-After pause (a whole second on ACR, however fast requests go), so the
# creep is paced by the last pause: the 5% take CREEP_PAUSES pauses (50 s after 1 s pauses), and
# the teeth stay as rare at 10,000 reads a minute as at 500 deletes.
CREEP_PAUSES = 50
DEFAULT_PAUSE_S = 1.0  # a 429 without Retry-After: the second ACR would have said
# Past the throttled rate (or before any 429) it probes for more, 1% per pause (1% a second on
# ACR: a limit raised to twice the documented one is found in about 70 s, and a registry at
# its documented limit costs one tooth every 10-20 s, not every second).
PROBE_PER_PAUSE = 0.01
# A request answered nothing but 429 for this long is given up on (the inventory hands it back to
# the SDK, the executor records a failure): the registry is not throttling a burst any more,
# something else is wrong. Until then a 429 is only a pause: it costs time, never the request.
GIVE_UP_AFTER_S = 600.0

# A limiter's state, slot by slot: a plain list for one process, shared memory for several.
(
    _RATE,
    _CEILING,
    _FLOOR,
    _NEXT,
    _PAUSED,
    _EPOCH,
    _THROTTLED,
    _DECREASES,
    _THROTTLED_AT,
    _CREPT_AT,
    _PAUSE,
    _SENT,
) = range(12)
_SLOTS = 12


def _initial(per_minute: float, ceiling: float | None, floor: float) -> list[float]:
    values = [0.0] * _SLOTS
    values[_RATE] = per_minute if ceiling is None else min(per_minute, ceiling)
    values[_CEILING] = math.inf if ceiling is None else ceiling
    values[_FLOOR] = floor
    values[_NEXT] = values[_PAUSED] = -math.inf
    return values


class SharedBudget:
    """One operation class's budget in shared memory, paced through by every process of a run.

    The identity has one budget per class however many reader processes spend it, so they share
    one limiter state, not a copy each. Hand it to a process when starting it (shared memory
    travels by inheritance, not through queues). Times are `time.monotonic`: one clock for every
    process of the machine.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        ceiling_per_minute: float | None = None,
        floor_per_minute: float = 6.0,
        context: BaseContext | None = None,
    ) -> None:
        context = context or multiprocessing.get_context("spawn")
        self.values: MutableSequence[float] = context.RawArray(
            "d", _initial(per_minute, ceiling_per_minute, floor_per_minute)
        )
        self.lock: AbstractContextManager[Any] = context.Lock()


class AdaptiveLimiter:
    """Paces requests at `per_minute`, which adapts: cut by 30% on a 429, raised on success.

    Without `ceiling_per_minute` the rate keeps probing upward (documented limits are
    approximate and support can raise them); with one, it never passes it. `shared` puts the
    state in shared memory, for several processes spending one budget. `reserve` is the pure
    core (the clock is a parameter, so a simulation can drive it); `acquire` waits for the slot.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        ceiling_per_minute: float | None = None,
        floor_per_minute: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        shared: SharedBudget | None = None,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        if shared is not None:
            self._values, self._lock = shared.values, shared.lock
        elif per_minute is None:
            raise TypeError("AdaptiveLimiter needs per_minute or shared")
        else:
            self._values = _initial(per_minute, ceiling_per_minute, floor_per_minute)
            self._lock = contextlib.nullcontext()

    @property
    def per_minute(self) -> float:
        return self._values[_RATE]

    @per_minute.setter
    def per_minute(self, value: float) -> None:
        with self._lock:
            self._values[_RATE] = value

    @property
    def ceiling_per_minute(self) -> float | None:
        ceiling = self._values[_CEILING]
        return None if math.isinf(ceiling) else ceiling

    @property
    def epoch(self) -> int:
        return int(self._values[_EPOCH])

    @property
    def paused_until(self) -> float:
        return self._values[_PAUSED]

    @property
    def throttled_count(self) -> int:
        """429s seen, by every process sharing the budget."""
        return int(self._values[_THROTTLED])

    @property
    def decreases(self) -> int:
        return int(self._values[_DECREASES])

    @property
    def sent(self) -> int:
        """Slots handed out: requests sent (or about to be), by every process sharing the budget."""
        return int(self._values[_SENT])

    def reserve(self, *, urgent: bool = False) -> tuple[float, int]:
        """Claim the next slot: (seconds to wait before sending, the epoch it belongs to).

        No burst is saved up while idle: a burst is what makes ACR throttle "for up to a full
        minute after a large burst". An `urgent` request goes ahead of the queue (as soon as no
        pause holds it) and pushes every later slot back by one, so the rate over any stretch
        longer than the queue is the same: the slot it takes is one nobody had reserved yet.
        """
        with self._lock:
            values = self._values
            now = self.clock()
            interval = 60.0 / values[_RATE]
            if urgent:
                start = max(now, values[_PAUSED])
                values[_NEXT] = max(values[_NEXT], start) + interval
                return start - now, int(values[_EPOCH])
            start = max(now, values[_NEXT], values[_PAUSED])
            values[_NEXT] = start + interval
            return start - now, int(values[_EPOCH])

    async def acquire(self, *, urgent: bool = False) -> int:
        """Wait until a request of this class may start; returns its epoch for the answer."""
        while True:
            delay, epoch = self.reserve(urgent=urgent)
            if delay > 0:
                await self.sleep(delay)
            # A decrease while this slot was waiting re-spaces it at the new rate.
            with self._lock:
                values = self._values
                if epoch == values[_EPOCH] and self.clock() >= values[_PAUSED]:
                    values[_SENT] += 1
                    return epoch

    def throttled(self, retry_after: float | None, sent_in: int | None = None) -> None:
        """A 429: hold every worker until Retry-After; decrease once per epoch."""
        with self._lock:
            values = self._values
            values[_THROTTLED] += 1
            now = self.clock()
            if retry_after is not None and retry_after > 0:
                values[_PAUSED] = max(values[_PAUSED], now + retry_after)
            if sent_in is not None and sent_in != values[_EPOCH]:
                return
            values[_DECREASES] += 1
            values[_EPOCH] += 1
            values[_THROTTLED_AT] = values[_RATE]
            values[_CREPT_AT] = now
            values[_PAUSE] = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_PAUSE_S
            values[_RATE] = max(values[_FLOOR], values[_RATE] * DECREASE_FACTOR)
            values[_NEXT] = max(now, values[_PAUSED])

    def succeeded(self, sent_in: int | None = None) -> None:
        """A success at the current rate: back up quickly to just under the last throttled rate,
        then 0.1% at a time; never past the ceiling."""
        with self._lock:
            values = self._values
            if sent_in is not None and sent_in != values[_EPOCH]:
                return
            rate = values[_RATE]
            throttled_at = values[_THROTTLED_AT]
            if rate < throttled_at * RECOVERY_SHARE - rate / INCREASE_STEPS:
                rate += (throttled_at * RECOVERY_SHARE - rate) / RECOVERY_STEPS
            else:
                now = self.clock()
                pause = values[_PAUSE] or DEFAULT_PAUSE_S
                waited = min(pause, max(0.0, now - values[_CREPT_AT]))
                values[_CREPT_AT] = now
                if rate < throttled_at:
                    rate *= 1.0 + (1.0 - RECOVERY_SHARE) / CREEP_PAUSES * waited / pause
                else:
                    # At most 0.1% a success too (pauses of milliseconds, a time-scaled registry,
                    # would otherwise make the probe a leap); time not used yet stays credited.
                    step = min(PROBE_PER_PAUSE * waited / pause, 1.0 / INCREASE_STEPS)
                    values[_CREPT_AT] = now - (waited - step * pause / PROBE_PER_PAUSE)
                    rate *= 1.0 + step
            values[_RATE] = min(values[_CEILING], rate)


@dataclass(frozen=True)
class Budgets:
    """Where each class's limiter starts, and where it stops: the documented per-identity limits
    of the registry's SKU, probed upward from there; or what `--max-*-per-minute` says, which is
    then also the cap."""

    per_minute: dict[OperationClass, float]
    ceilings: dict[OperationClass, float] = field(default_factory=dict)

    @classmethod
    def for_sku(
        cls,
        sku: str,
        *,
        deletes: float | None = None,
        writes: float | None = None,
        reads: float | None = None,
    ) -> Budgets:
        given = {OperationClass.DELETE: deletes, OperationClass.WRITE: writes, OperationClass.READ: reads}
        caps = {op: float(value) for op, value in given.items() if value is not None}
        return cls(
            per_minute={op: caps.get(op, limit) for op, limit in SKU_LIMITS[sku].items()}, ceilings=caps
        )

    def limiters(self) -> dict[OperationClass, AdaptiveLimiter]:
        """A limiter per class, for this process alone."""
        return {
            op: AdaptiveLimiter(per_minute=rate, ceiling_per_minute=self.ceilings.get(op))
            for op, rate in self.per_minute.items()
        }

    def shared(self, context: BaseContext | None = None) -> dict[OperationClass, SharedBudget]:
        """The same, in shared memory: one budget per class for every process of the run."""
        return {
            op: SharedBudget(rate, ceiling_per_minute=self.ceilings.get(op), context=context)
            for op, rate in self.per_minute.items()
        }
