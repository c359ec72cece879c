"""Reading a saved plan file back into a `Plan`, refusing anything not written as is.

`apply --plan FILE` executes at most the actions of such a file, so it is
checked before anything else: the seal (`plan_sha256`, the SHA-256 of every
byte before it) catches edits and truncation, and every field is checked for
shape. The seal is an integrity check, not a signature: whoever can rewrite
the file can reseal it. Where plans travel between systems (made in CI,
applied in a cluster), `ACR_RETENTION_PLAN_KEY` adds a signature
(`plan_hmac_sha256`, an HMAC-SHA256 of the same bytes): with the key set,
`plan` signs and `apply --plan` refuses any plan without a valid signature.

A plan carries the policy it was made with (`policy`, canonical JSON inside
the seal); its hash must be the plan's `policy_sha256`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from typing import TYPE_CHECKING, Any

from retention.errors import RetentionError, UsageError
from retention.inputfiles import DATA_LIMIT, MAX_INTEGER, InputFileError, read_bounded
from retention.inventory import Property
from retention.plan import (
    PLAN_FORMAT,
    PLAN_FORMAT_VERSION,
    SEAL_PREFIX,
    SIGNATURE_PREFIX,
    Action,
    DeleteManifest,
    DeleteTag,
    Kept,
    Op,
    Plan,
    Rank,
    RepositorySummary,
    SetManifestProperties,
    SetTagProperties,
)
from retention.snapshot import TOO_MANY_DIGITS, DuplicateKeyError, unique_keys
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEAL = re.compile(
    re.escape(SEAL_PREFIX) + r'([0-9a-f]{64})"(?:' + re.escape(SIGNATURE_PREFIX) + r'([0-9a-f]{64})")?\n}\n\Z'
)
PLAN_KEY_VARIABLE = "ACR_RETENTION_PLAN_KEY"
_MIN_KEY_LENGTH = 32
SOURCES = ("registry", "snapshot")


class PlanFileError(RetentionError):
    """A saved plan cannot be used: unreadable, edited, or not a plan."""


class _Bad(Exception):  # noqa: N818 - internal signal, turned into PlanFileError with the file name
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def plan_key() -> bytes | None:
    """The signing key from $ACR_RETENTION_PLAN_KEY, or None when it is unset or empty."""
    value = os.environ.get(PLAN_KEY_VARIABLE, "")
    if not value:
        return None
    if len(value) < _MIN_KEY_LENGTH:
        raise UsageError(
            f"${PLAN_KEY_VARIABLE} is shorter than {_MIN_KEY_LENGTH} characters; make one with"
            " `openssl rand -hex 32`"
        )
    return value.encode()


def load_plan(path: Path | str, *, key: bytes | None = None, limit: int = DATA_LIMIT) -> Plan:
    """The plan in `path` (at most `limit` bytes). With a `key`, only a plan signed with it is accepted."""
    name = str(path)
    try:
        text = read_bounded(name, limit=limit, raise_with="--max-input-size").decode("utf-8")
    except InputFileError as exc:
        raise PlanFileError(str(exc)) from None
    except UnicodeDecodeError:
        raise PlanFileError(f"{name}: cannot read: not UTF-8") from None
    seal = _SEAL.search(text)
    if seal is None:
        raise PlanFileError(
            f"{name}: not a sealed acr-retention plan (no plan_sha256 at its end); make a new plan"
        )
    body = text[: seal.start()].encode()
    if hashlib.sha256(body).hexdigest() != seal.group(1):
        raise PlanFileError(f"{name}: the plan was changed after it was made (plan_sha256 does not match)")
    if key is not None:
        if seal.group(2) is None:
            raise PlanFileError(
                f"{name}: the plan is not signed, and ${PLAN_KEY_VARIABLE} is set: only plans signed"
                " with that key are applied; make the plan with the same key"
            )
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, seal.group(2)):
            raise PlanFileError(
                f"{name}: the plan's signature does not match ${PLAN_KEY_VARIABLE}: it was made with"
                " another key, or changed since"
            )
    try:
        document = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{name}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except DuplicateKeyError as exc:
        raise PlanFileError(f"{name}: an object names {exc.key!r} twice") from None
    except RecursionError:
        raise PlanFileError(f"{name}: JSON nested deeper than about 1,000 levels") from None
    except ValueError:
        raise PlanFileError(f"{name}: {TOO_MANY_DIGITS}") from None
    try:
        return _plan(document)
    except _Bad as exc:
        raise PlanFileError(f"{name}: {exc.where}: {exc.message}") from None


def _plan(doc: Any) -> Plan:
    if not isinstance(doc, dict):
        raise _Bad("$", "expected an object")
    if doc.get("format") != PLAN_FORMAT:
        raise _Bad("$.format", f"expected {PLAN_FORMAT!r}, found {doc.get('format')!r}")
    if doc.get("format_version") != PLAN_FORMAT_VERSION:
        raise _Bad("$.format_version", f"unsupported plan format version {doc.get('format_version')!r}")
    actions = tuple(_action(a, f"$.actions[{i}]") for i, a in enumerate(_list(doc, "actions", "$")))
    kept = tuple(
        Kept(
            repository=_text(k, "repository", f"$.kept[{i}]"),
            digest=_text(k, "digest", f"$.kept[{i}]"),
            tags=_texts(k, "tags", f"$.kept[{i}]"),
            reasons=_texts(k, "reasons", f"$.kept[{i}]"),
            ranks=_ranks(k.get("ranks", []), f"$.kept[{i}].ranks"),
            locked=_locked(k.get("locked", {}), f"$.kept[{i}].locked"),
        )
        for i, k in enumerate(_list(doc, "kept", "$"))
    )
    summaries = tuple(
        _summary(r, f"$.repositories[{i}]") for i, r in enumerate(_list(doc, "repositories", "$"))
    )
    max_deletes = doc.get("max_deletes")
    if max_deletes is not None and (type(max_deletes) is not int or not 0 <= max_deletes <= MAX_INTEGER):
        raise _Bad("$.max_deletes", "expected an integer from 0 to 2^63-1, or null")
    registry = doc.get("registry")
    if registry is not None and not isinstance(registry, str):
        raise _Bad("$.registry", "expected a string or null")
    source = doc.get("source")
    if source is not None and source not in SOURCES:
        raise _Bad("$.source", f"expected one of {', '.join(SOURCES)} or null")
    in_use_sources = doc.get("in_use_sources")
    if in_use_sources is not None and (
        not isinstance(in_use_sources, list) or not all(isinstance(x, str) for x in in_use_sources)
    ):
        raise _Bad("$.in_use_sources", "expected a list of strings or null")
    policy_sha256 = _text(doc, "policy_sha256", "$")
    policy_document = None
    if doc.get("policy") is not None:
        policy_document = json.dumps(doc["policy"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if hashlib.sha256(policy_document.encode()).hexdigest() != policy_sha256:
            raise _Bad("$.policy", "does not hash to the plan's policy_sha256")
    plan = Plan(
        registry=registry,
        now=_time(doc, "now", "$"),
        policy_sha256=policy_sha256,
        max_deletes=max_deletes,
        actions=actions,
        kept=kept,
        untouched=(),
        repositories=summaries,
        taken_at=_time(doc, "taken_at", "$") if doc.get("taken_at") is not None else None,
        policy_document=policy_document,
        source=source,
        in_use_sources=tuple(in_use_sources) if in_use_sources is not None else None,
    )
    if plan.over_limit != doc.get("over_limit"):
        raise _Bad("$.over_limit", "does not agree with the plan's deletions and max_deletes")
    _check_counts(plan)
    return plan


def _check_counts(plan: Plan) -> None:
    """max_deletes is checked against the summaries: they must count the plan's own deletions."""
    counted: dict[str, list[int]] = {s.name: [0, 0] for s in plan.repositories}
    for action in plan.actions:
        if isinstance(action, DeleteManifest | DeleteTag):
            counts = counted.get(action.repository)
            if counts is None:
                raise _Bad("$.repositories", f"no summary for repository {action.repository!r}")
            counts[isinstance(action, DeleteTag)] += 1
    for index, summary in enumerate(plan.repositories):
        manifests, tags = counted[summary.name]
        if (summary.delete_manifests, summary.delete_tags) != (manifests, tags):
            raise _Bad(
                f"$.repositories[{index}]",
                f"counts {summary.delete_manifests} manifest and {summary.delete_tags} tag deletions;"
                f" the actions hold {manifests} and {tags}",
            )


def _action(raw: Any, where: str) -> Action:
    if not isinstance(raw, dict):
        raise _Bad(where, "expected an object")
    op = raw.get("op")
    repository = _text(raw, "repository", where)
    digest = _text(raw, "digest", where)
    reasons = _texts(raw, "reasons", where)
    if op == Op.DELETE_MANIFEST:
        cascade = raw.get("cascade_from")
        if cascade is not None and not isinstance(cascade, str):
            raise _Bad(f"{where}.cascade_from", "expected a digest or null")
        size = raw.get("size_bytes")
        if size is not None and (type(size) is not int or not 0 <= size <= MAX_INTEGER):
            raise _Bad(f"{where}.size_bytes", "expected an integer from 0 to 2^63-1, or null")
        subject = raw.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise _Bad(f"{where}.subject", "expected a digest or null")
        return DeleteManifest(
            repository=repository,
            digest=digest,
            tags=_texts(raw, "tags", where),
            reasons=reasons,
            updated_at=_time(raw, "updated_at", where),
            size_bytes=size,
            unlock_first=_bool(raw, "unlock_first", where),
            cascade_from=cascade,
            after=_texts(raw, "after", where),
            subject=subject,
            locked=_locked(raw.get("locked", {}), f"{where}.locked"),
            ranks=_ranks(raw.get("ranks", []), f"{where}.ranks"),
        )
    if op == Op.DELETE_TAG:
        locked = _texts(raw, "locked", where) if raw.get("locked") is not None else ()
        try:
            props = tuple(Property(name) for name in locked)
        except ValueError:
            raise _Bad(f"{where}.locked", "unknown property") from None
        return DeleteTag(
            repository=repository,
            tag=_text(raw, "tag", where),
            digest=digest,
            reasons=reasons,
            updated_at=_time(raw, "updated_at", where) if raw.get("updated_at") is not None else None,
            unlock_first=_bool(raw, "unlock_first", where),
            locked=props,
        )
    if op == Op.SET_MANIFEST_PROPERTIES:
        return SetManifestProperties(
            repository=repository,
            digest=digest,
            set=_changes(raw, where),
            reasons=reasons,
            tags=_texts(raw, "tags", where),
        )
    if op == Op.SET_TAG_PROPERTIES:
        return SetTagProperties(
            repository=repository,
            tag=_text(raw, "tag", where),
            digest=digest,
            set=_changes(raw, where),
            reasons=reasons,
        )
    raise _Bad(f"{where}.op", f"unknown operation {op!r}")


def _changes(raw: dict[str, Any], where: str) -> tuple[tuple[Property, bool], ...]:
    value = raw.get("set")
    if not isinstance(value, dict) or not value:
        raise _Bad(f"{where}.set", "expected a non-empty object of properties")
    changes = []
    for key, flag in value.items():
        try:
            prop = Property(key)
        except ValueError:
            raise _Bad(f"{where}.set.{key}", "unknown property") from None
        if type(flag) is not bool:
            raise _Bad(f"{where}.set.{key}", "expected true or false")
        changes.append((prop, flag))
    return tuple(sorted(changes, key=lambda change: list(Property).index(change[0])))


def _locked(raw: Any, where: str) -> tuple[tuple[str | None, Property], ...]:
    """`{"manifest": [props], "tags": {tag: [props]}}` (plan.locked_json) back into pairs."""
    if not isinstance(raw, dict) or set(raw) - {"manifest", "tags"}:
        raise _Bad(where, "expected an object with manifest and tags")
    tags = raw.get("tags", {})
    if not isinstance(tags, dict):
        raise _Bad(f"{where}.tags", "expected an object of tag names")
    found: list[tuple[str | None, Property]] = []
    for tag, names, at in [(None, raw.get("manifest", []), f"{where}.manifest")] + [
        (tag, names, f"{where}.tags.{tag}") for tag, names in tags.items()
    ]:
        if not isinstance(names, list):
            raise _Bad(at, "expected a list of properties")
        for name in names:
            try:
                found.append((tag, Property(name)))
            except ValueError:
                raise _Bad(at, f"unknown property {name!r}") from None
    return tuple(found)


def _ranks(raw: Any, where: str) -> tuple[Rank, ...]:
    """The optional `ranks` of a kept manifest or a delete (plans made for explain)."""
    if not isinstance(raw, list):
        raise _Bad(where, "expected a list")
    ranks = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise _Bad(here, "expected an object")
        numbers: dict[str, int | None] = {}
        for key in ("rank", "of", "newest", "group_rank", "groups", "groups_kept"):
            value = item.get(key)
            if value is None and key in {"group_rank", "groups", "groups_kept"}:
                numbers[key] = None
                continue
            if type(value) is not int or not 1 <= value <= MAX_INTEGER:
                raise _Bad(f"{here}.{key}", "expected an integer from 1 to 2^63-1")
            numbers[key] = value
        group = item.get("group")
        if group is not None and not isinstance(group, str):
            raise _Bad(f"{here}.group", "expected a string or null")
        ranks.append(
            Rank(
                rule=_text(item, "rule", here),
                rank=numbers["rank"] or 0,
                of=numbers["of"] or 0,
                newest=numbers["newest"] or 0,
                group=group,
                group_rank=numbers["group_rank"],
                groups=numbers["groups"],
                groups_kept=numbers["groups_kept"],
            )
        )
    return tuple(ranks)


def _summary(raw: Any, where: str) -> RepositorySummary:
    if not isinstance(raw, dict):
        raise _Bad(where, "expected an object")
    counts = {}
    for key in (
        "manifests",
        "delete_manifests",
        "set_manifest_properties",
        "set_tag_properties",
        "kept",
        "untouched",
        "bytes_upper_bound",
    ):
        value = raw.get(key)
        if type(value) is not int or not 0 <= value <= MAX_INTEGER:
            raise _Bad(f"{where}.{key}", "expected an integer from 0 to 2^63-1")
        counts[key] = value
    unreadable = raw.get("unreadable")
    if unreadable is not None and not isinstance(unreadable, str):
        raise _Bad(f"{where}.unreadable", "expected a string or null")
    fingerprint = raw.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str) or not _HEX64.fullmatch(fingerprint)):
        raise _Bad(f"{where}.fingerprint", "expected 64 hexadecimal digits or null")
    delete_tags = raw.get("delete_tags", 0)
    if type(delete_tags) is not int or not 0 <= delete_tags <= MAX_INTEGER:
        raise _Bad(f"{where}.delete_tags", "expected an integer from 0 to 2^63-1")
    return RepositorySummary(
        name=_text(raw, "name", where),
        unreadable=unreadable,
        fingerprint=fingerprint,
        delete_tags=delete_tags,
        **counts,
    )


def _list(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list):
        raise _Bad(f"{where}.{key}", "expected a list")
    return value


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise _Bad(f"{where}.{key}", "expected a string")
    return value


def _texts(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{where}.{key}", "expected a list of strings")
    return tuple(value)


def _bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if type(value) is not bool:
        raise _Bad(f"{where}.{key}", "expected true or false")
    return value


def _time(raw: dict[str, Any], key: str, where: str) -> Any:
    try:
        return parse_time(_text(raw, key, where))
    except ValueError as exc:
        raise _Bad(f"{where}.{key}", str(exc)) from None
