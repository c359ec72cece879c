"""The policy model: frozen values built from validated policy files.

Raw dicts stop in `retention.policyload`; everything downstream sees these
types. Defaults live here (the JSON Schema repeats them for documentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from retention.inventory import Property
from retention.matchers import CaptureMatcher, FullMatcher, compile_globs

if TYPE_CHECKING:
    from datetime import timedelta


class RuleAction(StrEnum):
    KEEP = "keep"
    DELETE = "delete"
    LOCK = "lock"
    UNTAG = "untag"  # removes tags, not manifests (policy.md §5a)


class TagState(StrEnum):
    TAGGED = "tagged"
    UNTAGGED = "untagged"
    ANY = "any"


class RankBy(StrEnum):
    """What `newest` ranks images by (policy.md §3, version-aware keeping)."""

    TIME = "time"
    VERSION = "version"


class GroupBy(StrEnum):
    """What `newest` counts per: `captures`, the capture groups of the image's best matching tag."""

    CAPTURES = "captures"


class OrderBy(StrEnum):
    LAST_UPDATED = "last_updated"
    CREATED = "created"


class InUseSetting(StrEnum):
    """Whether a run may go without in-use protection (policy.md §4, step 0)."""

    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class SourceLocation:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: RuleAction
    description: str | None = None
    repositories: tuple[str, ...] = ("**",)
    exclude_repositories: tuple[str, ...] = ()
    tags: tuple[str, ...] | None = None  # regular expressions, matched with fullmatch
    tag_state: TagState = TagState.ANY
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    newest: int | None = None
    rank_by: RankBy = RankBy.TIME  # keep rules with `newest` only (the loader checks)
    group_by: GroupBy | None = None  # likewise, and needs `tags` with capture groups
    groups: int | None = None  # likewise, and needs `group_by`
    set_properties: tuple[tuple[Property, bool], ...] = ()  # lock rules: the `set` mapping, in file order
    location: SourceLocation | None = None

    _include: FullMatcher | None = field(init=False, repr=False, compare=False)
    _exclude: FullMatcher | None = field(init=False, repr=False, compare=False)
    _tag_matcher: FullMatcher | None = field(init=False, repr=False, compare=False)
    _captures: CaptureMatcher | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once here so the planner's inner loop never compiles; the loader has already
        # checked that every pattern compiles, so an error here is a bug, not user input.
        object.__setattr__(self, "_include", compile_globs(self.repositories))
        object.__setattr__(self, "_exclude", compile_globs(self.exclude_repositories))
        object.__setattr__(self, "_tag_matcher", FullMatcher(self.tags) if self.tags else None)
        captures = CaptureMatcher(self.tags) if self.group_by is not None and self.tags else None
        object.__setattr__(self, "_captures", captures)

    @property
    def effective_tag_state(self) -> TagState:
        """`tags` implies `tagged` (policy.md §1)."""
        return TagState.TAGGED if self.tags is not None else self.tag_state

    @property
    def keeps(self) -> bool:
        """Whether matching protects an image from delete rules (policy.md §4, steps 1 and 2)."""
        if self.action is RuleAction.KEEP:
            return True
        if self.action is RuleAction.LOCK:
            return any(
                prop in (Property.WRITE_ENABLED, Property.DELETE_ENABLED) and value is False
                for prop, value in self.set_properties
            )
        return False

    def matches_repository(self, name: str) -> bool:
        if self._include is None or not self._include.fullmatch(name):
            return False
        return self._exclude is None or not self._exclude.fullmatch(name)

    def matches_tag(self, tag: str) -> bool:
        """Whether one tag fully matches one of the rule's patterns (a rule without `tags` matches any)."""
        if self.tags is None:
            return True
        return self._tag_matcher is not None and self._tag_matcher.fullmatch(tag)

    def tag_captures(self, tag: str) -> tuple[str, ...] | None:
        """The capture groups of the first of the rule's patterns that fully matches `tag`
        (`group_by: captures`); None when none does or the rule does not group."""
        return self._captures.captures(tag) if self._captures is not None else None

    @property
    def reason(self) -> str:
        """How plans cite this rule: `keep:name`, `delete:name`, `lock:name`."""
        return f"{self.action}:{self.name}"


@dataclass(frozen=True, slots=True)
class Settings:
    order_by: OrderBy = OrderBy.LAST_UPDATED
    include_locked: bool = False
    max_deletes: int | None = None
    in_use: InUseSetting = InUseSetting.OPTIONAL
    # apply refuses unless the registry's soft delete is known to be on (issue 14): deletes undoable.
    require_soft_delete: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    settings: Settings = Settings()
    registry: str | None = None
    sha256: str = ""  # of the canonical form of the pooled policy: independent of file names and layout
    files: tuple[str, ...] = ()
    # The canonical form itself (JSON of the registry, merged settings and rules as written):
    # saved plans carry it, so `apply --plan` can plan a changed repository again with it.
    canonical: str = ""
