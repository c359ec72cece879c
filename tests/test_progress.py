"""The inventory's progress line: on a terminal only, redrawn in place, ending on a newline."""

from __future__ import annotations

import asyncio
import io

from retention.inventory import Repository
from retention.progress import InventoryProgress
from retention.ratelimit import AdaptiveLimiter
from tests.builders import manifest


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def repositories(count: int, manifests: int) -> list[Repository]:
    return [
        Repository(f"team/app{n}", tuple(manifest(f"sha256:{n:02d}{m:02d}") for m in range(manifests)))
        for n in range(count)
    ]


def test_the_line_counts_repositories_manifests_requests_and_429s() -> None:
    screen, clock = Terminal(), Clock()
    reads = AdaptiveLimiter(per_minute=5000, clock=clock)
    progress = InventoryProgress(screen, reads=reads, clock=clock)
    progress.listed(3)
    for _ in range(2):
        asyncio.run(reads.acquire())
    reads.throttled(1.0, sent_in=reads.epoch)
    stream = progress.wrap(iter(repositories(3, 4)))
    next(stream)
    clock.now += 65.0
    assert progress.line(clock.now - 100.0) == (
        "inventory: 1/3 repositories, 4 manifests, 2 requests (1 answered 429), reads ≤ 3,500/min, 1m05s"
    )
    assert len(list(stream)) == 2
    drawn = screen.getvalue()
    assert drawn.startswith("\rinventory: 0/3 repositories, 0 manifests")
    # The last repository always draws (however soon after the one before), then a newline.
    assert drawn.endswith("inventory: 3/3 repositories, 12 manifests, 2 requests (1 answered 429),"
                          " reads ≤ 3,500/min, 1m05s\x1b[K\n")  # fmt: skip
    assert "\n" not in drawn[:-1]


def test_redraws_are_at_most_ten_a_second() -> None:
    screen, clock = Terminal(), Clock()
    progress = InventoryProgress(screen, clock=clock)
    progress.listed(100)
    for repository in repositories(50, 1):
        progress.read(repository)  # no time passes: none of these redraws
    assert screen.getvalue().count("\r") == 1
    clock.now += 0.2
    progress.read(repositories(1, 1)[0])
    assert screen.getvalue().count("\r") == 2
    assert "51/100 repositories, 51 manifests, 0m00s" in screen.getvalue()


def test_nothing_is_drawn_off_a_terminal() -> None:
    log = io.StringIO()
    progress = InventoryProgress(log)
    progress.listed(2)
    assert len(list(progress.wrap(iter(repositories(2, 2))))) == 2
    assert log.getvalue() == ""
