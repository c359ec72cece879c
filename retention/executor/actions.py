"""The actions themselves: deletes (parents first, an unlock and its delete as one step, locks put
back when a delete fails), untags, and property changes sending only what still differs."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING

import structlog

from retention.errors import AccessDeniedError, WriteFailedError
from retention.executor.run import Execution, Outcome, StoppedError
from retention.inventory import BLOCKING, Property
from retention.ratelimit import OperationClass

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from retention.inventory import Manifest
    from retention.plan import (
        Action,
        DeleteManifest,
        DeleteTag,
        SetManifestProperties,
        SetTagProperties,
    )

log = structlog.get_logger("acr-retention")


async def _deletes(deletes: list[DeleteManifest], manifests: dict[str, Manifest], run: Execution) -> None:
    """The deletes `agree` let run, parents first; a dependent whose parent's delete fails stays."""
    gone: set[str] = set()  # deleted by this run: a dependent may follow
    kept: dict[str, str] = {}  # not deleted after all, and why: its dependents must stay
    ready = list(deletes)
    while ready:
        if run.stop.is_set():
            return
        blocked = [a for a in ready if any(p in kept for p in a.after)]
        for action in blocked:
            parent = next(p for p in action.after if p in kept)
            run.record(action, Outcome.SKIPPED, f"parent {parent} was not deleted ({kept[parent]})")
            kept[action.digest] = "its parent was not deleted"
        ready = [a for a in ready if a not in blocked]
        # A parent that was not there to begin with is as gone as one deleted now.
        level = [a for a in ready if all(p in gone or p not in manifests for p in a.after)]
        if not level:
            for action in ready:  # pragma: no cover - the planner never writes a cycle of `after`
                run.record(action, Outcome.SKIPPED, "waits for a parent that never went")
            return
        results = await asyncio.gather(*(_delete(a, manifests[a.digest], gone, run) for a in level))
        for action, deleted in zip(level, results, strict=True):
            if deleted:
                gone.add(action.digest)
            else:
                kept[action.digest] = "its delete failed"
        ready = [a for a in ready if a not in level]


async def _delete(action: DeleteManifest, manifest: Manifest, gone: set[str], run: Execution) -> bool:
    """Unlock where the plan said so, then delete: one step. Whatever ends it early after an
    unlock (a refusal, an error, cancellation) puts back the locks the plan saw."""
    if action.subject is not None and action.subject in gone:
        # ACR deleted this referrer with its subject a moment ago: nothing to send.
        run.record(action, Outcome.ALREADY_GONE, "deleted by the registry with its subject")
        return True
    writer = run.writer
    unlocked: list[tuple[str | None, Property]] = []
    try:
        if not await _unlock(action, manifest, run, unlocked):
            run.record(action, Outcome.ALREADY_GONE)
            return True
        deleted = await run.attempt(
            OperationClass.DELETE, lambda: writer.delete_manifest(action.repository, action.digest)
        )
    except StoppedError:
        run.record(
            action, Outcome.SKIPPED, run.stopped_because + await _relock(action, manifest, unlocked, run)
        )
        return False
    except (WriteFailedError, AccessDeniedError) as exc:
        detail = str(exc) + await _relock(action, manifest, unlocked, run)
        run.record(action, Outcome.FAILED, detail)
        if isinstance(exc, AccessDeniedError):
            raise
        return False
    except BaseException:
        # Not a registry answer (cancellation, a bug): the lock still goes back before it propagates.
        await _relock(action, manifest, unlocked, run)
        raise
    # 404: someone else deleted it since the listing, or our own earlier attempt did and its answer
    # was lost. Either way it is gone, as planned.
    run.record(action, Outcome.DONE if deleted else Outcome.ALREADY_GONE)
    return True


async def _unlock(
    action: DeleteManifest, manifest: Manifest, run: Execution, unlocked: list[tuple[str | None, Property]]
) -> bool:
    """Set the blocking attributes back to true, only where they are false now, noting each.
    False when the manifest turns out to be gone; a tag gone meanwhile is a failure."""
    by_item: dict[str | None, list[Property]] = defaultdict(list)
    for tag, prop in manifest.blocking_locks:
        by_item[tag].append(prop)
    for tag, props in by_item.items():
        if not await run.attempt(OperationClass.WRITE, _setting(action, tag, props, value=True, run=run)):
            if tag is None:
                return False
            raise WriteFailedError(
                f"tag {tag} vanished before it could be unlocked", status=404, retryable=False
            )
        unlocked.extend((tag, prop) for prop in props)
    return True


def _setting(
    action: DeleteManifest, tag: str | None, props: list[Property], *, value: bool, run: Execution
) -> Callable[[], Awaitable[bool]]:
    """The call that sets these blocking attributes of the manifest (tag None) or of one tag."""
    changes = {prop.attribute: value for prop in props}
    if tag is None:
        return partial(run.writer.set_manifest_properties, action.repository, action.digest, changes)
    return partial(run.writer.set_tag_properties, action.repository, tag, changes)


async def _relock(
    action: DeleteManifest, manifest: Manifest, unlocked: list[tuple[str | None, Property]], run: Execution
) -> str:
    """Put back the locks the plan saw that are open now (this run's unlock, or an earlier run's);
    returns what to add to the failure's detail."""
    still = set(manifest.blocking_locks) - set(unlocked)
    restore: dict[str | None, list[Property]] = defaultdict(list)
    for tag, prop in action.locked:
        if (tag, prop) not in still and (tag is None or tag in manifest.tag_names):
            restore[tag].append(prop)
    if not restore:
        return ""
    repository = action.repository
    failures = []
    for tag, props in restore.items():
        try:
            # A 404 here means the item is gone: there is no lock left to restore.
            await run.attempt(
                OperationClass.WRITE, _setting(action, tag, props, value=False, run=run), restoring=True
            )
        except (WriteFailedError, AccessDeniedError) as again:
            failures.append(f"{'manifest' if tag is None else f'tag {tag}'}: {again}")
    if failures:
        log.error("lock_not_restored", repository=repository, digest=action.digest, errors=failures)
        return "; its locks could not all be restored (" + "; ".join(failures) + ")"
    return "; the locks it had were restored"


async def _untag(action: DeleteTag, manifests: dict[str, Manifest], run: Execution) -> None:
    """Unlock the tag where the plan said so, then remove it: one step, as for a manifest. Whatever
    ends it early after an unlock puts back the locks the plan saw."""
    if run.stop.is_set():
        return
    tag = next(t for t in manifests[action.digest].tags if t.name == action.tag)
    blocking = [p for p in BLOCKING if not tag.value(p)]  # the agreement allowed only the plan's own
    writer = run.writer
    unlocked: list[Property] = []
    try:
        if blocking:
            changes = {p.attribute: True for p in blocking}
            call = partial(writer.set_tag_properties, action.repository, action.tag, changes)
            if not await run.attempt(OperationClass.WRITE, call):
                run.record(action, Outcome.ALREADY_GONE)
                return
            unlocked.extend(blocking)
        removed = await run.attempt(
            OperationClass.DELETE, lambda: writer.delete_tag(action.repository, action.tag)
        )
    except StoppedError:
        run.record(
            action, Outcome.SKIPPED, run.stopped_because + await _relock_tag(action, blocking, unlocked, run)
        )
        return
    except (WriteFailedError, AccessDeniedError) as exc:
        detail = str(exc) + await _relock_tag(action, blocking, unlocked, run)
        run.record(action, Outcome.FAILED, detail)
        if isinstance(exc, AccessDeniedError):
            raise
        return
    except BaseException:
        await _relock_tag(action, blocking, unlocked, run)
        raise
    run.record(action, Outcome.DONE if removed else Outcome.ALREADY_GONE)


async def _relock_tag(
    action: DeleteTag, blocking: list[Property], unlocked: list[Property], run: Execution
) -> str:
    """Put back the tag's locks the plan saw that are open now (this run's unlock, or an earlier
    run's); returns what to add to the failure's detail."""
    restore = [p for p in action.locked if p not in blocking or p in unlocked]
    if not restore:
        return ""
    changes = {p.attribute: False for p in restore}
    call = partial(run.writer.set_tag_properties, action.repository, action.tag, changes)
    failure = None
    try:
        await run.attempt(OperationClass.WRITE, call, restoring=True)
    except (WriteFailedError, AccessDeniedError) as again:
        failure = str(again)
    if failure is not None:
        log.error("lock_not_restored", repository=action.repository, tag=action.tag, errors=[failure])
        return f"; its locks could not be restored ({failure})"
    return "; the locks it had were restored"


async def _set_manifest(
    action: SetManifestProperties, manifests: dict[str, Manifest], run: Execution
) -> None:
    manifest = manifests[action.digest]
    changes = {p.attribute: v for p, v in action.set if manifest.value(p) != v}
    await _set(
        action,
        changes,
        run,
        lambda: run.writer.set_manifest_properties(action.repository, action.digest, changes),
    )


async def _set_tag(action: SetTagProperties, manifests: dict[str, Manifest], run: Execution) -> None:
    tag = next(t for t in manifests[action.digest].tags if t.name == action.tag)
    changes = {p.attribute: v for p, v in action.set if tag.value(p) != v}
    await _set(
        action, changes, run, lambda: run.writer.set_tag_properties(action.repository, action.tag, changes)
    )


async def _set(
    action: Action, changes: dict[str, bool], run: Execution, call: Callable[[], Awaitable[bool]]
) -> None:
    if not changes:
        run.record(action, Outcome.DONE, "already as planned")
        return
    try:
        changed = await run.attempt(OperationClass.WRITE, call)
    except StoppedError:
        run.record(action, Outcome.SKIPPED, run.stopped_because)
        return
    except WriteFailedError as exc:
        run.record(action, Outcome.FAILED, str(exc))
        return
    run.record(action, Outcome.DONE if changed else Outcome.ALREADY_GONE)
