"""The adaptive limiter's pacing on a fake clock, and the progress line."""

from __future__ import annotations

import asyncio
import io

from retention.apply import Progress
from retention.executor import Outcome, Record
from retention.plan import DeleteManifest
from retention.ratelimit import AdaptiveLimiter
from tests.builders import NOW


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def paced(limiter: AdaptiveLimiter, clock: FakeClock, requests: int) -> float:
    async def run() -> None:
        for _ in range(requests):
            await limiter.acquire()
            limiter.succeeded()

    asyncio.run(run())
    return clock.now


def test_requests_are_spread_to_the_budget() -> None:
    """600 per minute admits 60 requests in about 6 seconds, not in a burst."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(per_minute=600, clock=clock, sleep=clock.sleep)
    assert 5.8 <= paced(limiter, clock, 60) <= 6.1


def test_a_429_halves_the_rate_and_waits_out_retry_after() -> None:
    """After a 429 nobody starts before Retry-After has passed, then at half the rate."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(per_minute=600, clock=clock, sleep=clock.sleep)
    limiter.throttled(retry_after=5.0)
    assert limiter.per_minute == 300
    assert limiter.throttled_count == 1
    asyncio.run(limiter.acquire())
    assert clock.now >= 5.0


def test_successes_restore_the_rate_up_to_the_ceiling_and_never_past_it() -> None:
    """Additive increase: twenty successes bring a halved rate back; it never exceeds the budget."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(per_minute=600, clock=clock, sleep=clock.sleep)
    limiter.throttled(None)
    limiter.throttled(None)
    assert limiter.per_minute == 150
    for _ in range(20):
        limiter.succeeded()
    assert limiter.per_minute == 600


def test_the_rate_has_a_floor() -> None:
    """However many 429s, the limiter keeps making progress."""
    limiter = AdaptiveLimiter(per_minute=600, floor_per_minute=6)
    for _ in range(50):
        limiter.throttled(None)
    assert limiter.per_minute == 6


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(outcome: Outcome) -> Record:
    action = DeleteManifest(repository="r", digest="sha256:a1", tags=(), reasons=(), updated_at=NOW)
    return Record(time=NOW, action=action, outcome=outcome)


def test_progress_is_one_line_on_a_terminal_and_nothing_elsewhere() -> None:
    """A terminal gets a redrawn line ending with the totals; a pipe gets nothing."""
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(2, stream)
        progress.update(record(Outcome.DONE))
        progress.update(record(Outcome.FAILED))
        progress.close()
    assert pipe.getvalue() == ""
    last = terminal.getvalue().rstrip("\n").split("\r")[-1]
    assert last == "[" + "#" * 30 + "] 2/2  1 done, 1 failed\x1b[K"
