"""The live inventory read by several processes: for registries whose listing outgrows one core.

Reading a registry through the SDK is bound by the client's CPU, not by the
network: the SDK's model deserializer costs about 75 µs per listed manifest,
and each content read about half a millisecond, all under one GIL
(benchmarks/inventory.md). `--processes N` splits the catalog between N
reader processes, each with its own event loop, SDK client and token cache,
and this process merges their repositories back into catalog order, so a plan
or a snapshot is byte for byte the one a single reader makes.

Repository i goes to reader i mod N, and every reader answers each of its
repositories in order (the repository, or why it was skipped), so merging is
a round robin, not a sort. Each reader's queue holds at most `buffer`
answers: a slow planner slows the readers instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import queue
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from retention import logs, registry
from retention.errors import RetentionError
from retention.registry import RegistryError, Skipped
from retention.registry.reader import warn_if_unreadable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.context import SpawnProcess
    from multiprocessing.synchronize import Event

    from retention.inventory import Repository
    from retention.needs import Needs
    from retention.registry import Connection

log = structlog.get_logger("acr-retention")

_POLL_S = 0.5


@dataclass(frozen=True)
class _Failed:
    """A reader's error, as text: exceptions with custom constructors do not survive pickling."""

    message: str
    expected: bool  # a RegistryError the user can act on, else a bug with its traceback


def _reader(  # noqa: PLR0917 - multiprocessing.Process passes its args positionally
    connection: Connection,
    needs: Needs,
    inbox: Any,
    outbox: Any,
    stop: Event,
    log_settings: tuple[logs.LogFormat, str, tuple[str, ...]],
) -> None:  # pragma: no cover - runs in a spawned process; its effects are tested through the merge
    """A reader process: wait for its share of the catalog, read it, answer each repository in order."""
    log_format, level, secrets = log_settings
    logs.configure(log_format, level, secrets=secrets)

    parent = multiprocessing.parent_process()

    def put(item: object) -> bool:
        # A parent that died without telling (SIGKILL, an OOM kill) leaves nobody to read this.
        while not stop.is_set() and (parent is None or parent.is_alive()):
            try:
                outbox.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    async def run(names: list[str]) -> None:
        async for item in registry.read_shard(connection, needs, names):
            # A blocking put pauses this reader's event loop: exactly the back-pressure wanted.
            if not put(item):
                return

    try:
        names: list[str] | None = None
        while names is None:
            try:
                names = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set() or (parent is not None and not parent.is_alive()):
                    return
                continue
            if names is None:  # the parent gave up before the catalog was read
                return
        asyncio.run(run(names))
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; the parent reports it.
        return
    except RegistryError as exc:
        put(_Failed(str(exc), expected=True))
    except Exception:  # noqa: BLE001 - handed to the parent, which raises it there
        put(_Failed(traceback.format_exc(), expected=False))


def iter_registry_processes(
    connection: Connection,
    needs: Needs,
    *,
    processes: int,
    repositories: Sequence[str] = (),
    buffer: int = 8,
    listed: Callable[[int], None] | None = None,
) -> Iterator[Repository]:
    """`registry.iter_registry`, with the repositories read by `processes` reader processes."""
    # spawn, not fork: this process may already run threads (an event loop, a logger), and a
    # forked copy of a lock held by one of them would never be released.
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    inboxes = [context.Queue(maxsize=1) for _ in range(processes)]
    outboxes = [context.Queue(maxsize=buffer) for _ in range(processes)]
    readers: list[SpawnProcess] = [
        context.Process(
            target=_reader,
            args=(connection, needs, inbox, outbox, stop, logs.settings()),
            name=f"acr-inventory-{index}",
            daemon=True,
        )
        for index, (inbox, outbox) in enumerate(zip(inboxes, outboxes, strict=True))
    ]
    # Started before this process uses the credential: a credential is pickled to each reader as
    # it was built, before any session or token of this process hangs off it.
    try:
        for reader in readers:
            reader.start()
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        stop.set()
        for reader in readers:
            if reader.is_alive():
                reader.terminate()
        raise RetentionError(
            f"--processes {processes}: the credential cannot be handed to reader processes ({exc});"
            " use --processes 1"
        ) from None
    try:
        names = asyncio.run(registry.list_names(connection, needs, repositories))
        log.info(
            "repositories_listed",
            registry=connection.target.login_server,
            repositories=len(names),
            processes=processes,
        )
        if listed is not None:
            listed(len(names))
        for index, inbox in enumerate(inboxes):
            inbox.put(names[index::processes])
        for position, name in enumerate(names):
            item = _next(outboxes[position % processes], readers[position % processes])
            if isinstance(item, Skipped):
                log.warning("repository_skipped", repository=item.name, reason=item.reason)
                continue
            if item.name != name:  # pragma: no cover - a broken invariant, not a user's error
                raise RuntimeError(f"inventory readers out of order: expected {name}, got {item.name}")
            warn_if_unreadable(item)
            yield item
    finally:
        stop.set()
        for inbox in inboxes:
            with contextlib.suppress(queue.Full):
                inbox.put_nowait(None)
        for reader in readers:
            reader.join(timeout=5)
            if reader.is_alive():
                reader.terminate()
                reader.join(timeout=5)
        for box in [*inboxes, *outboxes]:
            box.cancel_join_thread()
            box.close()


def _next(outbox: Any, reader: SpawnProcess) -> Repository | Skipped:
    while True:
        try:
            item = outbox.get(timeout=_POLL_S)
        except queue.Empty:
            if not reader.is_alive():
                raise RuntimeError(
                    f"inventory reader {reader.name} ended with exit code {reader.exitcode}"
                ) from None
            continue
        if isinstance(item, _Failed):
            if item.expected:
                raise RegistryError(item.message)
            raise RuntimeError(f"inventory reader {reader.name} failed:\n{item.message}")  # noqa: TRY004 - a report, not a type
        return item  # type: ignore[no-any-return]
