"""Progress lines: one updating line on a terminal's stderr, nothing elsewhere; for the live
inventory, and for `apply`'s actions.

On a big registry the inventory is the long phase of `plan`, `snapshot`, `diff` and `apply
--policy`; a line that says how many repositories of how many are read, how many requests went
out and how many were answered 429 tells an operator throttling from a hang. Off a terminal
(CI, a CronJob) nothing is drawn: the log's `repositories_listed` and the command's own summary
say it once.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from retention.ratelimit import AdaptiveLimiter, OperationClass
from retention.timefmt import format_duration

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from retention.executor import Record
    from retention.inventory import Repository
    from retention.registry import Connection

_REDRAW_S = 0.1  # a line redrawn more often only flickers


class InventoryProgress:
    def __init__(
        self,
        stream: IO[str],
        *,
        reads: AdaptiveLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.reads = reads
        self.clock = clock
        self.total: int | None = None
        self.repositories = 0
        self.manifests = 0
        self._started = clock()
        self._shown = float("-inf")
        self._drawn = False

    @classmethod
    def on(cls, stream: IO[str], connection: Connection) -> InventoryProgress:
        """Progress for this connection's inventory, its requests counted by the run's read budget."""
        shared = (connection.budgets or {}).get(OperationClass.READ)
        return cls(stream, reads=AdaptiveLimiter(shared=shared) if shared is not None else None)

    def listed(self, total: int) -> None:
        self.total = total
        self._draw(force=True)

    def read(self, repository: Repository) -> None:
        self.repositories += 1
        self.manifests += len(repository.manifests)
        self._draw(force=self.repositories == self.total)

    def wrap(self, stream: Iterator[Repository]) -> Iterator[Repository]:
        try:
            for repository in stream:
                self.read(repository)
                yield repository
        finally:
            self.close()

    def line(self, elapsed: float) -> str:
        total = "?" if self.total is None else f"{self.total:,}"
        text = f"inventory: {self.repositories:,}/{total} repositories, {self.manifests:,} manifests"
        if self.reads is not None:
            text += f", {self.reads.sent:,} requests ({self.reads.throttled_count:,} answered 429)"
            text += f", reads ≤ {self.reads.per_minute:,.0f}/min"
        return text + f", {format_duration(timedelta(seconds=elapsed))}"

    def close(self) -> None:
        if self._drawn:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _draw(self, *, force: bool = False) -> None:
        now = self.clock()
        if not self.enabled or (not force and now - self._shown < _REDRAW_S):
            return
        self._shown = now
        self._drawn = True
        self.stream.write(f"\r{self.line(now - self._started)}\x1b[K")
        self.stream.flush()


class Progress:
    """One updating line on a terminal's stderr; nothing anywhere else.

    Done/total and outcomes, and what an operator needs to tell throttling from a hang: the rate,
    the delete budget it is held to now, elapsed time and an estimate of what is left.
    """

    def __init__(
        self,
        total: int,
        stream: IO[str],
        *,
        budget: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()
        self.counts: Counter[str] = Counter()
        self.budget = budget
        self.clock = clock
        self._started = clock()
        self._shown = float("-inf")

    def update(self, record: Record) -> None:
        self.counts[record.outcome] += 1
        now = self.clock()
        finished = sum(self.counts.values())
        if self.enabled and (now - self._shown > _REDRAW_S or finished == self.total):
            self._shown = now
            self.stream.write(f"\r{self.line(finished, now - self._started)}\x1b[K")
            self.stream.flush()

    def line(self, finished: int, elapsed: float) -> str:
        width = 30
        filled = width * finished // max(1, self.total)
        parts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.counts.items()))
        line = f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total}  {parts}"
        rate = finished / elapsed if elapsed > 0 else 0.0
        line += f"  {rate:.1f}/s  {format_duration(timedelta(seconds=elapsed))} elapsed"
        if 0 < finished < self.total and rate > 0:
            line += f"  ~{format_duration(timedelta(seconds=(self.total - finished) / rate))} left"
        if self.budget is not None:
            line += f"  deletes ≤ {self.budget():.0f}/min"
        return line

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
