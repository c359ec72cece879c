"""Versions read from tags, and their SemVer 2.0.0 precedence (policy.md §3, `rank_by: version`). Pure.

A tag is a version when it is `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]` exactly as
https://semver.org/spec/v2.0.0.html spells it, optionally led by `v` (`v1.4.2`, the commonest
container tag). Everything else (`1.4`, `01.2.3`, `2025.01.15`, `latest`) is not a version and
ranks below every version: guessing at near-versions would order them differently from the tools
that wrote them, and a plan must be predictable from the spec alone.

Precedence is a plain tuple, so ranking compares with Python's own tuple order and a version is
parsed once per tag, not once per comparison:

    (major, minor, patch, is_release, pre-release identifiers...)

- numbers compare as numbers (`1.0.10` > `1.0.2`);
- `is_release` is 1 for a release and 0 for a pre-release, so `1.0.0-rc.1` < `1.0.0`;
- pre-release identifiers compare one by one, a numeric identifier as `(0, n, "")` and an
  alphanumeric one as `(1, 0, text)`: numeric below alphanumeric, numbers numerically, text in
  ASCII order, and a shorter list below a longer one that starts with it (tuple order again);
- build metadata is dropped: `1.0.0+a` and `1.0.0+b` have the same precedence.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

# semver.org's own regular expression, with the optional leading `v`. Python's `re` is safe here:
# the pattern has no nested quantifier that can backtrack badly (tags are at most 128 characters).
_SEMVER: Final = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)

# One pre-release identifier's place in the order: (0, number, "") or (1, 0, text).
Identifier: TypeAlias = tuple[int, int, str]
# The precedence key of a version; see the module docstring.
Precedence: TypeAlias = tuple[int | Identifier, ...]


def precedence(tag: str) -> Precedence | None:
    """The SemVer 2.0.0 precedence key of `tag`, or None when it is not a version."""
    match = _SEMVER.fullmatch(tag)
    if match is None:
        return None
    major, minor, patch, pre, _build = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1)
    return (int(major), int(minor), int(patch), 0, *(_identifier(part) for part in pre.split(".")))


def _identifier(part: str) -> Identifier:
    # The regular expression allows digits-only identifiers only without leading zeros, so
    # isdigit() is exactly "numeric identifier".
    return (0, int(part), "") if part.isdigit() else (1, 0, part)
