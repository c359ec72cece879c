"""Small constructors with sensible defaults, so tests state only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from retention.inventory import Manifest, Property, Repository, Tag
from retention.matchers import parse_duration
from retention.policy import Policy, Rule, RuleAction, Settings, TagState

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def manifest(
    digest: str, *, age_days: float = 100, tags: tuple[str | Tag, ...] = (), **fields: Any
) -> Manifest:
    return Manifest(
        digest=digest if ":" in digest else f"sha256:{digest}",
        updated_at=fields.pop("updated_at", days_ago(age_days)),
        tags=tuple(Tag(t) if isinstance(t, str) else t for t in tags),
        **fields,
    )


def repository(name: str, *manifests: Manifest) -> Repository:
    return Repository(name=name, manifests=manifests)


def rule(name: str, action: str, **fields: Any) -> Rule:
    for key in ("older_than", "newer_than"):
        if isinstance(fields.get(key), str):
            fields[key] = parse_duration(fields[key])
    for key in ("repositories", "exclude_repositories", "tags"):
        if isinstance(fields.get(key), list):
            fields[key] = tuple(fields[key])
    if "tag_state" in fields:
        fields["tag_state"] = TagState(fields["tag_state"])
    if "set" in fields:
        fields["set_properties"] = tuple((Property(k), v) for k, v in fields.pop("set").items())
    return Rule(name=name, action=RuleAction(action), **fields)


def policy(*rules: Rule, **settings: Any) -> Policy:
    return Policy(rules=rules, settings=Settings(**settings), sha256="0" * 64)
