"""`restore`: bring back, through ACR's soft delete, what an `apply` run's report says it deleted.

From the report (JSON lines, one record per action) it takes what the run removed: manifests it
deleted (`delete_manifest`, outcome `done`), referrers the registry deleted with their subject
(outcome `already-gone`, the subject deleted by this run), and tags it removed (`delete_tag`,
`done`). Each manifest comes back with every tag the report recorded on it and with the locks the
run opened to delete it; each removed tag comes back on the digest it named.

Order (acr-softdelete.md §4): a restore brings back one digest and one tag; an index's restore does
not bring back its children and a referrer cannot come back before its subject. So items go in
levels: children before their index, subjects before their referrers (a cosign tag-scheme signature
has no order with its image). An item whose prerequisite
could not be restored is skipped, with the reason.

Outcomes, one record per call: `done`; `already-restored` (the registry has it as recorded, from an
earlier restore); `not-restorable` (nothing soft-deleted to bring back: purged after the retention
period, deleted while soft delete was off, or deleted by someone else); `conflict` (the tag now
names another digest: left alone unless --force); `failed`; `skipped`. None of them stops the
others; 401/403 stops the run.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from retention import logs
from retention.errors import EXIT_ERROR, EXIT_OK, AccessDeniedError, RetentionError, WriteFailedError
from retention.inventory import Property
from retention.matchers import compile_globs
from retention.ratelimit import AdaptiveLimiter
from retention.registry import RegistryWriter, close_credential
from retention.registry.softdelete import RestoreRefusedError, SoftDelete
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from retention.registry import Connection

EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
_REGISTRY_CASCADE = re.compile(r"registry cascade from (\S+)")
_CASCADE = re.compile(r"^cascade from (\S+)")
_ATTEMPTS = 6


class ReportError(RetentionError):
    """The report cannot be read as an apply report."""


class RestoreOutcome(StrEnum):
    DONE = "done"
    ALREADY_RESTORED = "already-restored"
    NOT_RESTORABLE = "not-restorable"
    CONFLICT = "conflict"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Item:
    """One manifest to bring back (with its tags), or one removed tag (`untag`)."""

    repository: str
    digest: str
    tags: list[str]
    untag: bool = False  # a tag the run removed from a manifest it left standing
    manifest_locks: tuple[Property, ...] = ()  # set back to false once restored
    tag_locks: dict[str, tuple[Property, ...]] = field(default_factory=dict)
    needs: set[str] = field(default_factory=set)  # digests (same repository) restored first

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repository, self.digest, self.tags[0] if self.untag else "")


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    time: datetime
    op: str  # restore_manifest, restore_tag, set_manifest_properties, set_tag_properties
    repository: str
    digest: str
    tag: str | None
    outcome: RestoreOutcome
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "time": format_time(self.time),
            "op": self.op,
            "repository": self.repository,
        }
        record["digest"] = self.digest
        record["tag"] = self.tag
        record["outcome"] = str(self.outcome)
        record["error" if self.outcome is RestoreOutcome.FAILED else "detail"] = self.detail
        return record


# --- reading the report --------------------------------------------------------------------------


def read_report(path: str, *, limit: int) -> list[dict[str, Any]]:
    """The report's records; raises ReportError naming the file and line."""
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - a path from the command line
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ReportError(f"{path}: larger than {limit} bytes (--max-input-size)")
    records = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ReportError(f"{path}:{number}: not a JSON line of an apply report") from None
        if not isinstance(record, dict) or not isinstance(record.get("op"), str):
            raise ReportError(f"{path}:{number}: not an apply report record (no op)")
        records.append(record)
    return records


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _properties(value: Any) -> tuple[Property, ...]:
    return tuple(Property(v) for v in _strings(value) if v in Property.__members__.values())


def _parents(record: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(subject, other parents) of a deleted manifest: from `subject`/`after`, or, in reports
    written before those were recorded, from its reasons."""
    reasons = _strings(record.get("reasons"))
    subject = record.get("subject") if isinstance(record.get("subject"), str) else None
    if subject is None:
        subject = next((m.group(1) for r in reasons if (m := _REGISTRY_CASCADE.search(r))), None)
    after = _strings(record.get("after")) or [m.group(1) for r in reasons if (m := _CASCADE.match(r))]
    return subject, [p for p in after if p != subject]


def items_from_report(
    records: Iterable[dict[str, Any]], *, repositories: Sequence[str] = (), digests: Sequence[str] = ()
) -> list[Item]:
    """What the run removed, narrowed to `repositories` (globs) and `digests` (with what each
    needs: an index's children, a referrer's subject), ordered deterministically."""
    records = list(records)
    done_deletes = {
        (r.get("repository"), r.get("digest"))
        for r in records
        if r.get("op") == "delete_manifest" and r.get("outcome") == "done"
    }
    manifests: dict[tuple[str, str], Item] = {}
    untags: dict[tuple[str, str, str], Item] = {}
    others: dict[tuple[str, str], list[str]] = {}  # index/attachment parent -> dependents first
    for record in records:
        repository, digest = record.get("repository"), record.get("digest")
        if not isinstance(repository, str) or not isinstance(digest, str):
            continue
        outcome, op = record.get("outcome"), record.get("op")
        if op == "delete_manifest":
            subject, parents = _parents(record)
            # A referrer the registry deleted with its subject: this run's delete took it too.
            cascaded = outcome == "already-gone" and (repository, subject) in done_deletes
            if outcome != "done" and not cascaded:
                continue
            locked = _mapping(record.get("locked"))
            tag_locks = _mapping(locked.get("tags"))
            item = Item(
                repository,
                digest,
                sorted(_strings(record.get("tags"))),
                manifest_locks=_properties(locked.get("manifest")),
                tag_locks={t: _properties(p) for t, p in tag_locks.items()},
            )
            if subject is not None:
                item.needs.add(subject)
            for parent in parents:
                # A tag-scheme attachment (cosign's `sha256-<parent>.sig`) has no order with its
                # subject; any other parent is an index, restored after its children.
                if not any(t.startswith(parent.replace(":", "-", 1)) for t in item.tags):
                    others.setdefault((repository, parent), []).append(digest)
            manifests[(repository, digest)] = item
        elif op == "delete_tag" and outcome == "done" and isinstance(record.get("tag"), str):
            tag = record["tag"]
            locks = {tag: _properties(record.get("locked"))} if record.get("locked") else {}
            untags[(repository, digest, tag)] = Item(repository, digest, [tag], untag=True, tag_locks=locks)
    # An index (or a tag-scheme attachment's subject) comes back after what cascaded from it.
    for (repository, parent), dependents in others.items():
        if (repository, parent) in manifests:
            manifests[(repository, parent)].needs.update(dependents)
    items = [*manifests.values(), *untags.values()]
    for item in items:
        # A removed tag goes back once its manifest is back, when the run deleted that too.
        if item.untag:
            item.needs.add(item.digest)
    pattern = compile_globs(tuple(repositories)) if repositories else None
    items = [i for i in items if pattern is None or pattern.fullmatch(i.repository)]
    if digests:
        items = _with_prerequisites(items, set(digests))
    # Only what this restore brings back orders it; anything else is as the registry has it.
    restoring = {(i.repository, i.digest) for i in items if not i.untag}
    for item in items:
        item.needs = {
            d for d in item.needs if (item.repository, d) in restoring and (item.untag or d != item.digest)
        }
    return sorted(items, key=lambda i: i.key)


def _with_prerequisites(items: list[Item], wanted: set[str]) -> list[Item]:
    by_digest: dict[tuple[str, str], Item] = {(i.repository, i.digest): i for i in items if not i.untag}
    chosen: dict[tuple[str, str, str], Item] = {}
    queue = [i for i in items if i.digest in wanted]
    while queue:
        item = queue.pop()
        if item.key in chosen:
            continue
        chosen[item.key] = item
        queue.extend(by_digest[(item.repository, d)] for d in item.needs if (item.repository, d) in by_digest)
    return list(chosen.values())


def levels(items: list[Item]) -> list[list[Item]]:
    """Items in rounds: each after everything it needs. A cycle (never written by apply) goes last."""
    pending = {i.key: i for i in items}
    placed: set[tuple[str, str]] = set()
    out: list[list[Item]] = []
    while pending:
        ready = [i for i in pending.values() if all((i.repository, d) in placed for d in i.needs)]
        if not ready:
            ready = list(pending.values())
        out.append(sorted(ready, key=lambda i: i.key))
        for item in ready:
            del pending[item.key]
        placed.update((i.repository, i.digest) for i in ready if not i.untag)
    return out


def describe(items: list[Item]) -> str:
    """The restore plan, one line per item, then a count."""
    lines = []
    for item in items:
        if item.untag:
            lines.append(f"+ {item.repository}:{item.tags[0]} -> {item.digest} (tag)\n")
        else:
            named = f"  tags: {', '.join(item.tags)}" if item.tags else "  (untagged)"
            locks = "  locked again" if item.manifest_locks or any(item.tag_locks.values()) else ""
            lines.append(f"+ {item.repository}@{item.digest}{named}{locks}\n")
    manifests = sum(not i.untag for i in items)
    tags = sum(len(i.tags) for i in items)
    lines.append(f"Restore: {manifests} manifests, {tags} tags.\n")
    return "".join(lines)


# --- executing ------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    exit_code: int
    counts: Counter[str]


@dataclass
class _Run:
    soft: SoftDelete
    writer: RegistryWriter
    limiter: AdaptiveLimiter
    report: Callable[[RestoreRecord], None]
    stop: asyncio.Event
    force: bool
    slots: asyncio.Semaphore
    records: list[RestoreRecord] = field(default_factory=list)
    back: set[tuple[str, str]] = field(default_factory=set)  # manifests live again (or already)

    def record(
        self, op: str, item: Item, tag: str | None, outcome: RestoreOutcome, detail: str | None = None
    ) -> None:
        entry = RestoreRecord(datetime.now(UTC), op, item.repository, item.digest, tag, outcome, detail)
        self.records.append(entry)
        self.report(entry)

    async def attempt(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """One write within the budget; throttling and transient failures retried, as apply does."""
        for attempt in range(_ATTEMPTS):
            async with self.slots:
                epoch = await self.limiter.acquire()
                try:
                    result = await call()
                except WriteFailedError as exc:
                    if exc.status == 429:  # noqa: PLR2004
                        self.limiter.throttled(exc.retry_after, sent_in=epoch)
                    if not exc.retryable or attempt == _ATTEMPTS - 1:
                        raise
                    wait = exc.retry_after
                else:
                    self.limiter.succeeded(sent_in=epoch)
                    return result
            if wait is None:
                await asyncio.sleep(0.5 * 2**attempt * random.uniform(0.5, 1.0))  # noqa: S311
        raise AssertionError("unreachable")  # pragma: no cover


async def _live(run: _Run, item: Item, tag: str | None) -> bool:
    """Whether the registry has the digest (and the tag on it) as the report recorded."""
    client = run.writer.client
    try:
        await client.get_manifest_properties(item.repository, item.digest)
        if tag is not None:
            props = await client.get_tag_properties(item.repository, tag)
            return props.digest == item.digest
    except Exception:  # noqa: BLE001 - any failure to see it means: not there as recorded
        return False
    return True


async def _restore_one(run: _Run, item: Item, tag: str | None, op: str) -> RestoreOutcome:
    """One restore call, recorded; its outcome."""
    try:
        await run.attempt(lambda: run.soft.restore(item.repository, item.digest, tag, force=run.force))
    except RestoreRefusedError as exc:
        if exc.status == 404:  # noqa: PLR2004
            if await _live(run, item, tag):
                run.record(op, item, tag, RestoreOutcome.ALREADY_RESTORED)
                return RestoreOutcome.ALREADY_RESTORED
            why = "purged after the retention period, deleted while soft delete was off, or not by this run"
            run.record(op, item, tag, RestoreOutcome.NOT_RESTORABLE, f"not soft-deleted ({why}): {exc}")
            return RestoreOutcome.NOT_RESTORABLE
        if "METADATA_CONFLICT" in str(exc) or "different digest" in str(exc):
            detail = f"{exc}; left alone (--force takes the tag back)"
            run.record(op, item, tag, RestoreOutcome.CONFLICT, detail)
            return RestoreOutcome.CONFLICT
        run.record(op, item, tag, RestoreOutcome.FAILED, str(exc))
        return RestoreOutcome.FAILED
    except WriteFailedError as exc:
        run.record(op, item, tag, RestoreOutcome.FAILED, str(exc))
        return RestoreOutcome.FAILED
    run.record(op, item, tag, RestoreOutcome.DONE)
    return RestoreOutcome.DONE


_BACK = (RestoreOutcome.DONE, RestoreOutcome.ALREADY_RESTORED)


async def _relock(run: _Run, item: Item, tags: Iterable[str]) -> None:
    """Put back the locks the run opened to delete: what the report says was false."""
    if item.manifest_locks and not item.untag:
        changes = _false(item.manifest_locks)
        await _set(
            run, item, None, lambda: run.writer.set_manifest_properties(item.repository, item.digest, changes)
        )
    for tag in tags:
        props = item.tag_locks.get(tag, ())
        if props:
            await _set(
                run, item, tag, partial(run.writer.set_tag_properties, item.repository, tag, _false(props))
            )


def _false(props: Iterable[Property]) -> dict[str, bool]:
    return {p.attribute: False for p in props}


async def _set(run: _Run, item: Item, tag: str | None, call: Callable[[], Awaitable[bool]]) -> None:
    op = "set_manifest_properties" if tag is None else "set_tag_properties"
    try:
        await run.attempt(call)
    except WriteFailedError as exc:
        run.record(op, item, tag, RestoreOutcome.FAILED, f"locks not put back: {exc}")
        return
    run.record(op, item, tag, RestoreOutcome.DONE, "locked again, as before the run")


async def _item(run: _Run, item: Item) -> None:
    if run.stop.is_set():
        return
    missing = [d for d in sorted(item.needs) if (item.repository, d) not in run.back]
    if missing:
        op = "restore_tag" if item.untag else "restore_manifest"
        for tag in item.tags or [None]:  # type: ignore[list-item]
            run.record(op, item, tag, RestoreOutcome.SKIPPED, f"{missing[0]} is not back, and must be first")
        return
    if item.untag:
        if await _restore_one(run, item, item.tags[0], "restore_tag") in _BACK:
            await _relock(run, item, item.tags)
        return
    # A restore brings back one digest with one tag; the first that succeeds brings the manifest.
    outcomes = []
    restored: list[str] = []
    for tag in item.tags:
        if run.stop.is_set():
            return
        outcome = await _restore_one(run, item, tag, "restore_tag" if restored else "restore_manifest")
        outcomes.append(outcome)
        if outcome in _BACK:
            restored.append(tag)
    if not restored and all(o is RestoreOutcome.CONFLICT for o in outcomes):
        # Untagged, or every tag now names another digest: the manifest still comes back, untagged.
        if await _restore_one(run, item, None, "restore_manifest") not in _BACK:
            return
    elif not restored:
        return
    run.back.add((item.repository, item.digest))
    await _relock(run, item, restored)


async def _execute(
    items: list[Item],
    connection: Connection,
    *,
    per_minute: float,
    ceiling_per_minute: float | None,
    concurrency: int,
    force: bool,
    report: Callable[[RestoreRecord], None],
) -> tuple[list[RestoreRecord], int | None, AccessDeniedError | None]:
    stop = asyncio.Event()
    seen: list[int] = []
    loop = asyncio.get_running_loop()

    def interrupted(signum: int) -> None:
        seen.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted, signum)
    try:
        async with RegistryWriter(connection) as writer:
            run = _Run(
                SoftDelete(writer.client, connection),
                writer,
                AdaptiveLimiter(per_minute=per_minute, ceiling_per_minute=ceiling_per_minute),
                report,
                stop,
                force,
                asyncio.Semaphore(concurrency),
            )
            denied = None
            try:
                for level in levels(items):
                    if stop.is_set():
                        break
                    await asyncio.gather(*(_item(run, item) for item in level))
            except AccessDeniedError as exc:
                denied = exc
            _skip_unrecorded(
                items, run, "stopped: access denied" if denied else "interrupted before it started"
            )
            return run.records, (seen[0] if seen else None), denied
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await close_credential(connection)


def _skip_unrecorded(items: list[Item], run: _Run, why: str) -> None:
    seen = {(r.repository, r.digest, r.tag) for r in run.records}
    for item in items:
        for tag in item.tags or [None]:  # type: ignore[list-item]
            if (item.repository, item.digest, tag) not in seen:
                op = (
                    "restore_tag"
                    if item.untag or tag != (item.tags[0] if item.tags else None)
                    else "restore_manifest"
                )
                run.record(op, item, tag, RestoreOutcome.SKIPPED, why)


def run_restore(
    items: list[Item],
    connection: Connection,
    *,
    per_minute: float,
    concurrency: int,
    force: bool,
    report: IO[str],
    stderr: IO[str],
    ceiling_per_minute: float | None = None,
) -> RestoreResult:
    """Restore `items`; one JSON line per call on `report`, a summary line on `stderr`."""
    log = logs.get_logger()

    def write(record: RestoreRecord) -> None:
        report.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        report.flush()
        log.info(
            "restore_finished", **{k: v for k, v in record.to_json().items() if k != "time" and v is not None}
        )

    records, signal_seen, denied = asyncio.run(
        _execute(
            items,
            connection,
            per_minute=per_minute,
            ceiling_per_minute=ceiling_per_minute,
            concurrency=concurrency,
            force=force,
            report=write,
        )
    )
    counts: Counter[str] = Counter(str(r.outcome) for r in records)
    stderr.write("Restored: " + ", ".join(f"{counts[str(o)]} {o}" for o in RestoreOutcome) + ".\n")
    if counts[str(RestoreOutcome.CONFLICT)] and not force:
        stderr.write(
            "acr-retention: tags now naming other digests were left alone; --force takes them back\n"
        )
    if denied is not None:
        stderr.write(f"acr-retention: error: {denied}\n")
        return RestoreResult(EXIT_ERROR, counts)
    if signal_seen is not None:
        stderr.write(
            f"acr-retention: stopped by {signal.Signals(signal_seen).name}; the report lists what ran\n"
        )
        return RestoreResult(EXIT_INTERRUPTED.get(signal.Signals(signal_seen), EXIT_ERROR), counts)
    incomplete = sum(
        counts[str(o)]
        for o in RestoreOutcome
        if o not in (RestoreOutcome.DONE, RestoreOutcome.ALREADY_RESTORED)
    )
    return RestoreResult(EXIT_ERROR if incomplete else EXIT_OK, counts)
