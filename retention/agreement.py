"""Which planned actions may still run, decided from a fresh look at the repository. Pure.

policy.md §4, "At apply time": the executor acts on an item only when a plan of
its repository as it is now would take the same action. Right before acting on
a repository, the executor lists it again and asks `agree`:

- When nothing the plan leaves standing has changed (the repository's listing,
  less what the plan deletes and with the attributes it sets masked, has the
  fingerprint the plan recorded), a plan made now would be the same plan: each
  planned action is checked against its own item only.
- Otherwise the executor reads the repository whole (content included) and
  plans it again with the plan's own policy and `now`; an action runs only when
  both plans contain it.

Either way, a delete runs only when everything the registry would delete with it
(its OCI referrers, transitively) is planned and runs too, and an unlock that an
earlier run of the same plan made counts as the plan's own step, not as drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from retention.inventory import BLOCKING
from retention.plan import DeleteManifest, DeleteTag, SetManifestProperties, SetTagProperties
from retention.planner import subjects_of
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from retention.inventory import Manifest, Property, Repository
    from retention.plan import Action, Plan


class Verdict(StrEnum):
    RUN = "run"
    GONE = "gone"
    DRIFTED = "drifted"
    SKIPPED = "skipped"  # a dependent whose planned parent does not go


@dataclass(frozen=True, slots=True)
class Agreement:
    """A verdict for every planned action of one repository (by position), with the reason for drift."""

    verdicts: tuple[Verdict, ...]
    reasons: dict[int, str] = field(default_factory=dict)


def agree(actions: Sequence[Action], current: Repository, *, fresh: Plan | None) -> Agreement:
    """Verdicts for `actions` (all of one repository) given the repository as it is now.

    `fresh` is None when the repository is unchanged outside the plan's own items (the
    fingerprints agree); otherwise it is the plan of `current` (read whole) made now.
    """
    manifests = {m.digest: m for m in current.manifests}
    verdicts: list[Verdict] = []
    reasons: dict[int, str] = {}
    fresh_actions = _by_target(fresh.actions) if fresh is not None else {}
    fresh_reasons = _fresh_reasons(fresh, current) if fresh is not None else {}
    # The plan's own untags: a tag they remove (now, or in an earlier run cut short) is no drift.
    untagged = {(a.digest, a.tag) for a in actions if isinstance(a, DeleteTag)}
    for position, action in enumerate(actions):
        verdict, why = _one(action, manifests, fresh, fresh_actions, fresh_reasons, untagged=untagged)
        verdicts.append(verdict)
        if why is not None:
            reasons[position] = why
    _close(actions, verdicts, reasons, current, known_subjects=fresh is not None)
    return Agreement(tuple(verdicts), reasons)


def _one(
    action: Action,
    manifests: dict[str, Manifest],
    fresh: Plan | None,
    fresh_actions: dict[tuple[str, str, str], Action],
    fresh_reasons: dict[str, str],
    *,
    untagged: set[tuple[str, str]],
) -> tuple[Verdict, str | None]:
    match action:
        case DeleteManifest():
            manifest = manifests.get(action.digest)
            if manifest is None:
                return Verdict.GONE, None
            drift = delete_drift(action, manifest)
            if drift is None and fresh is not None and _target(action) not in fresh_actions:
                now = fresh_reasons.get(action.digest, "keeps it")
                # Something a cluster started to run since the plan is the likelier story than a
                # change to the repository: say which.
                changed = "it is in use now" if "in-use" in now else "the repository changed since the plan"
                drift = f"{changed}, and a plan of it now {now}"
            return (Verdict.DRIFTED, drift) if drift is not None else (Verdict.RUN, None)
        case DeleteTag():
            return _untag_verdict(action, manifests, fresh, fresh_actions)
        case SetManifestProperties():
            manifest = manifests.get(action.digest)
            if manifest is None:
                return Verdict.GONE, None
            standing = sorted(t for t in manifest.tag_names if (action.digest, t) not in untagged)
            if standing != sorted(t for t in action.tags if (action.digest, t) not in untagged):
                return Verdict.DRIFTED, f"tags are now {sorted(manifest.tag_names)}"
            return _property_verdict(action, manifest.value, fresh, fresh_actions)
        case SetTagProperties():
            holder = manifests.get(action.digest)
            tag = next((t for t in holder.tags if t.name == action.tag), None) if holder else None
            if tag is None:
                moved = any(action.tag in m.tag_names for m in manifests.values())
                return (Verdict.DRIFTED, "tag moved") if moved else (Verdict.GONE, None)
            return _property_verdict(action, tag.value, fresh, fresh_actions)


def _untag_verdict(
    action: DeleteTag,
    manifests: dict[str, Manifest],
    fresh: Plan | None,
    fresh_actions: dict[tuple[str, str, str], Action],
) -> tuple[Verdict, str | None]:
    """policy.md §5a: a tag that now names another digest, or was updated or locked since the
    plan, stays (drifted); one that is gone needs nothing."""
    holder = manifests.get(action.digest)
    tag = next((t for t in holder.tags if t.name == action.tag), None) if holder is not None else None
    if tag is None:
        other = next((m.digest for m in manifests.values() if action.tag in m.tag_names), None)
        if other is None:
            return Verdict.GONE, None
        return Verdict.DRIFTED, f"the tag now names {other}, the plan saw {action.digest}"
    if tag.updated_at != action.updated_at:
        when = format_time(tag.updated_at) if tag.updated_at else "at an unknown time"
        return Verdict.DRIFTED, f"the tag was updated {when} since the plan"
    added = [str(p) for p in BLOCKING if not tag.value(p) and p not in action.locked]
    if added:
        return Verdict.DRIFTED, f"the tag was locked since the plan ({', '.join(added)} false)"
    if fresh is not None and _target(action) not in fresh_actions:
        return Verdict.DRIFTED, "the repository changed since the plan, and a plan of it now keeps the tag"
    return Verdict.RUN, None


def delete_drift(action: DeleteManifest, manifest: Manifest) -> str | None:
    """Why the planned delete of `manifest` no longer holds on its own terms, or None."""
    if sorted(manifest.tag_names) != sorted(action.tags):
        return f"tags are now {sorted(manifest.tag_names)}, the plan saw {sorted(action.tags)}"
    if manifest.updated_at != action.updated_at:
        return f"updated {format_time(manifest.updated_at)} since the plan ({format_time(action.updated_at)})"
    # Fewer locks than planned is the plan's own unlock, made by an earlier run that was cut
    # short: it completes. A lock the plan did not see is someone wanting the image kept.
    added = sorted(
        f"tag {tag}" if tag else "manifest"
        for tag, prop in manifest.blocking_locks
        if (tag, prop) not in action.locked
    )
    if added:
        return f"locked since the plan ({', '.join(dict.fromkeys(added))})"
    return None


def _property_verdict(
    action: SetManifestProperties | SetTagProperties,
    value_of: Callable[[Property], bool],
    fresh: Plan | None,
    fresh_actions: dict[tuple[str, str, str], Action],
) -> tuple[Verdict, str | None]:
    if fresh is None or all(value_of(prop) == value for prop, value in action.set):
        return Verdict.RUN, None  # the executor sends only what still differs
    wanted = fresh_actions.get(_target(action))
    if not isinstance(wanted, SetManifestProperties | SetTagProperties):
        wanted = None
    elif wanted.set == action.set:
        return Verdict.RUN, None
    if wanted is None:
        return (
            Verdict.DRIFTED,
            "the repository changed since the plan, and a plan of it now changes nothing here",
        )
    changes = " ".join(f"{prop}={str(value).lower()}" for prop, value in wanted.set)
    return Verdict.DRIFTED, f"the repository changed since the plan, and a plan of it now sets {changes}"


def _close(
    actions: Sequence[Action],
    verdicts: list[Verdict],
    reasons: dict[int, str],
    current: Repository,
    *,
    known_subjects: bool,
) -> None:
    """Hold back every delete that would leave something present pointing at nothing.

    A delete runs only when every parent it has now (an index listing it, its subject) goes too,
    and every OCI referrer it has now goes too: ACR deletes referrers with their subject. With
    the repository read whole, both are known from its content; unchanged outside the plan, they
    are the planned deletes' own `after` and `subject` (the plan saw all of them).
    """
    present = {m.digest for m in current.manifests}
    parents: dict[str, set[str]] = {}
    referrers: dict[str, set[str]] = {}
    for action in actions:
        if isinstance(action, DeleteManifest):
            parents.setdefault(action.digest, set()).update(action.after)
            if action.subject is not None:
                referrers.setdefault(action.subject, set()).add(action.digest)
    if known_subjects:
        for manifest in current.manifests:
            for child in manifest.references:
                if child != manifest.digest:
                    parents.setdefault(child, set()).add(manifest.digest)
            for subject in subjects_of(manifest):
                if subject != manifest.digest:
                    parents.setdefault(manifest.digest, set()).add(subject)
            if manifest.subject is not None and manifest.subject != manifest.digest:
                referrers.setdefault(manifest.subject, set()).add(manifest.digest)
    position_of = {a.digest: i for i, a in enumerate(actions) if isinstance(a, DeleteManifest)}

    def stays(digest: str) -> bool:
        return digest in present and (
            digest not in position_of or verdicts[position_of[digest]] is not Verdict.RUN
        )

    changed = True
    while changed:
        changed = False
        for digest, position in position_of.items():
            if verdicts[position] is not Verdict.RUN:
                continue
            parent = min((p for p in parents.get(digest, ()) if stays(p)), default=None)
            referrer = min((r for r in referrers.get(digest, ()) if stays(r)), default=None)
            if parent is not None and parent in position_of:
                verdicts[position] = Verdict.SKIPPED
                why = (
                    "drifted"
                    if verdicts[position_of[parent]] is Verdict.DRIFTED
                    else "its parent was not deleted"
                )
                reasons[position] = f"parent {parent} was not deleted ({why})"
            elif parent is not None:
                verdicts[position] = Verdict.DRIFTED
                reasons[position] = f"{parent}, which the plan did not show, now refers to it"
            elif referrer is not None:
                verdicts[position] = Verdict.DRIFTED
                reasons[position] = (
                    f"its referrer {referrer} stays, and the registry deletes referrers with their subject"
                )
            else:
                continue
            changed = True


def _target(action: Action) -> tuple[str, str, str]:
    if isinstance(action, SetTagProperties | DeleteTag):
        return (str(action.op), action.digest, action.tag)
    return (str(action.op), action.digest, "")


def _by_target(actions: Sequence[Action]) -> dict[tuple[str, str, str], Action]:
    return {_target(a): a for a in actions}


def _fresh_reasons(fresh: Plan, current: Repository) -> dict[str, str]:
    """What a fresh plan says about each manifest it does not delete, and what now refers to it
    (an untouched child says nothing of the new index that lists it)."""
    gone = {a.digest for a in fresh.actions if isinstance(a, DeleteManifest)}
    referred: dict[str, list[str]] = {}
    for manifest in current.manifests:
        if manifest.digest in gone:
            continue
        for child in manifest.references:
            referred.setdefault(child, []).append(f"child of {manifest.digest}")
        if manifest.subject is not None:
            referred.setdefault(manifest.subject, []).append(f"subject of {manifest.digest}")
    said = {k.digest: "keeps it: " + ", ".join(k.reasons) for k in fresh.kept if k.reasons}
    for k in (*fresh.kept, *fresh.untouched):
        if k.digest not in said:
            facts = sorted(set(referred.get(k.digest, ())))
            verb = "keeps it" if k in fresh.kept else "leaves it untouched"
            said[k.digest] = f"{verb}: {', '.join(facts)}" if facts else verb
    return said
