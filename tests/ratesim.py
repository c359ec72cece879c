"""A discrete-event simulation of workers pacing through an AdaptiveLimiter against ACR's bucket.

Virtual time, so a registry hour takes milliseconds and every run is the
same for the same seed. The registry is modelled as the emulator models it
(tests/emulator/faults.py): a token bucket of `burst` tokens refilling at
`registry_per_minute`, answering 429 with a Retry-After up to the next token.
Each worker mirrors `Execution.attempt`: acquire (re-reserving when the epoch
moved while it waited), send, and report the answer with the epoch it was
sent in.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from retention.ratelimit import AdaptiveLimiter


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
) -> Outcome:
    now = 0.0
    limiter = AdaptiveLimiter(per_minute=client_per_minute, clock=lambda: now)
    rate = registry_per_minute / 60.0
    size = registry_per_minute if burst is None else burst  # the emulator's default: a minute's burst
    tokens, stamp = size, 0.0
    randomness = random.Random(seed)  # noqa: S311 - reproducible latency jitter, not secrets
    events: list[tuple[float, int, int, str, int, float]] = []
    order = 0

    def at(moment: float, worker: int, kind: str, epoch: int = 0, retry_after: float = 0.0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (moment, order, worker, kind, epoch, retry_after))

    for worker in range(workers):
        at(0.0, worker, "reserve")
    answered = throttled = 0
    while events:
        now, _, worker, kind, epoch, retry_after = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "reserve":
            delay, epoch = limiter.reserve()
            at(now + delay, worker, "wake", epoch)
        elif kind == "wake":
            if epoch != limiter.epoch or now < limiter.paused_until:
                at(now, worker, "reserve")
            else:
                at(now + latency_s * randomness.uniform(0.4, 0.6), worker, "arrive", epoch)
        elif kind == "arrive":
            tokens, stamp = min(size, tokens + (now - stamp) * rate), now
            back = now + latency_s / 2
            if tokens >= 1:
                tokens -= 1
                at(back, worker, "ok", epoch)
            else:
                at(back, worker, "429", epoch, max((1 - tokens) / rate, 0.001))
        else:
            answered += 1
            if kind == "ok":
                limiter.succeeded(sent_in=epoch)
            else:
                throttled += 1
                limiter.throttled(retry_after, sent_in=epoch)
            at(now, worker, "reserve")
    return Outcome(answered, throttled, limiter.decreases, seconds, registry_per_minute)
