"""The live inventory's progress: one updating line on a terminal's stderr, nothing elsewhere.

On a big registry the inventory is the long phase of `plan`, `snapshot`, `diff` and `apply
--policy`; a line that says how many repositories of how many are read, how many requests went
out and how many were answered 429 tells an operator throttling from a hang. Off a terminal
(CI, a CronJob) nothing is drawn: the log's `repositories_listed` and the command's own summary
say it once.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from retention.ratelimit import AdaptiveLimiter, OperationClass
from retention.timefmt import format_duration

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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
