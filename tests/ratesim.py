"""A simulation of the executor's workers pacing through the real limiter against ACR's bucket.

Virtual time, so a registry hour takes seconds and every run is the same for the same seed: an
asyncio event loop whose clock jumps to the next timer whenever every task waits
(`VirtualTimeLoop`). Nothing is re-implemented: each worker sends through `Execution.attempt`,
which takes a slot, waits in `AdaptiveLimiter.acquire` (re-reserving when a cut or a Retry-After
came while it waited), retries 429s and reports each answer with the epoch it was sent in, all
with `asyncio.sleep` and `loop.time` as in production. Only the registry is modelled, as the
emulator models it (tests/emulator/faults.py): a token bucket of `burst` tokens refilling at
`registry_per_minute`, answering 429 with a Retry-After up to the next token.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import selectors
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast

from retention.errors import WriteFailedError
from retention.executor import Execution, Limits
from retention.ratelimit import AdaptiveLimiter, OperationClass

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable, Coroutine

    from retention.executor import Writer
    from retention.policy import Policy

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# Timers due within this of the one the loop waits for fire together (float sums of delays).
_SLACK = 1e-9


class _JumpingSelector(selectors.SelectSelector):
    """Never blocks: when nothing is ready, the virtual clock moves on by the loop's timeout."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("every task waits for something other than time: the simulation is stuck")
        self._advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, from 0: `asyncio.sleep` and `loop.time` work as usual, and
    whenever every task waits the clock jumps straight to the next timer."""

    def __init__(self) -> None:
        self._now = 0.0
        self._timers: list[float] = []
        super().__init__(_JumpingSelector(self._advance))

    def time(self) -> float:
        return self._now

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        heapq.heappush(self._timers, when)
        return super().call_at(when, callback, *args, context=context)

    def _advance(self, timeout: float) -> None:
        # Land exactly on the due timer's time, not on now + (when - now): the limiter compares
        # the clock with the times it computed, and a clock one rounding short would wait again.
        target = self._now + timeout
        landed = target
        while self._timers and self._timers[0] <= target + _SLACK:
            landed = heapq.heappop(self._timers)  # cancelled timers' times pass by harmlessly
        self._now = max(self._now, landed)


def run_virtual(main: Coroutine[Any, Any, _T]) -> _T:
    """Run `main` to completion on a fresh `VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


@dataclass(frozen=True)
class Outcome:
    answered: int
    throttled: int
    decreases: int
    seconds: float
    registry_per_minute: float

    @property
    def rate_share(self) -> float:
        """Successful requests per minute over what the registry grants."""
        return (self.answered - self.throttled) / self.seconds * 60.0 / self.registry_per_minute

    @property
    def throttled_share(self) -> float:
        return self.throttled / max(1, self.answered)


def simulate(
    *,
    registry_per_minute: float,
    client_per_minute: float,
    burst: float | None = None,
    workers: int = 8,
    latency_s: float = 0.020,
    seconds: float = 600.0,
    seed: int = 1,
    ceiling_per_minute: float | None = None,
    whole_seconds: bool = False,
) -> Outcome:
    """`workers` tasks sending back to back for `seconds` through one executor with
    `--concurrency workers`, against a registry bucket; what the registry answered."""
    return run_virtual(
        _simulate(
            registry_per_minute=registry_per_minute,
            client_per_minute=client_per_minute,
            burst=burst,
            workers=workers,
            latency_s=latency_s,
            seconds=seconds,
            seed=seed,
            ceiling_per_minute=ceiling_per_minute,
            whole_seconds=whole_seconds,
        )
    )


async def _simulate(
    *,
    registry_per_minute: float,
    client_per_minute: float,
    burst: float | None,
    workers: int,
    latency_s: float,
    seconds: float,
    seed: int,
    ceiling_per_minute: float | None,
    whole_seconds: bool,
) -> Outcome:
    loop = asyncio.get_running_loop()
    limiter = AdaptiveLimiter(
        per_minute=client_per_minute, ceiling_per_minute=ceiling_per_minute, clock=loop.time
    )
    execution = Execution(
        # `attempt` touches neither the writer nor the policy: the call it makes is `send` below.
        writer=cast("Writer", None),
        limits=Limits(limiters={OperationClass.DELETE: limiter}, concurrency=workers),
        report=lambda _record: None,
        stop=asyncio.Event(),
        policy=cast("Policy", None),
    )
    rate = registry_per_minute / 60.0
    size = registry_per_minute if burst is None else burst  # the emulator's default: a minute's burst
    bucket = {"tokens": size, "stamp": 0.0}
    randomness = random.Random(seed)  # noqa: S311 - reproducible latency jitter, not secrets
    answered = throttled = 0

    async def send() -> bool:
        nonlocal answered, throttled
        await asyncio.sleep(latency_s * randomness.uniform(0.4, 0.6))  # on its way to the registry
        now = loop.time()
        tokens = min(size, bucket["tokens"] + (now - bucket["stamp"]) * rate)
        bucket["stamp"] = now
        allowed = tokens >= 1
        bucket["tokens"] = tokens - 1 if allowed else tokens
        await asyncio.sleep(latency_s / 2)  # the answer on its way back
        if loop.time() > seconds:
            return True  # answered after the measured window: not counted
        answered += 1
        if allowed:
            return True
        throttled += 1
        wait = max((1 - tokens) / rate, 0.001)
        # ACR and RFC 9110 say whole seconds; the emulator's time-scaled tests use fractions.
        retry_after = float(math.ceil(wait)) if whole_seconds else wait
        raise WriteFailedError("429 throttled", status=429, retryable=True, retry_after=retry_after)

    async def worker() -> None:
        while loop.time() < seconds:
            try:
                await execution.attempt(OperationClass.DELETE, send)
            except WriteFailedError:
                continue  # six 429s in a row: the executor records a failure and moves on

    await asyncio.gather(*(worker() for _ in range(workers)))
    return Outcome(answered, throttled, limiter.decreases, seconds, registry_per_minute)
