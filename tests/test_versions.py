"""SemVer 2.0.0 precedence of tags (retention.versions, policy.md §3 `rank_by: version`)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.versions import precedence

# semver.org §11, in order: every version ranks below the next.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def key(tag: str) -> tuple[object, ...]:
    found = precedence(tag)
    assert found is not None, tag
    return found


def test_the_spec_examples_rank_in_the_spec_order() -> None:
    keys = [key(v) for v in SPEC_ORDER]
    assert all(lower < higher for lower, higher in itertools.pairwise(keys))
    shuffled = [SPEC_ORDER[i] for i in (5, 0, 10, 2, 7, 9, 1, 4, 8, 3, 6)]
    assert sorted(shuffled, key=key) == SPEC_ORDER


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.9", "1.0.10"),  # numbers numerically, not as text
        ("1.9.0", "1.10.0"),
        ("9.0.0", "10.0.0"),
        ("1.0.0-rc.9", "1.0.0-rc.10"),
        ("1.0.0-1", "1.0.0-a"),  # a numeric identifier below an alphanumeric one
        ("1.0.0-A", "1.0.0-a"),  # alphanumeric identifiers in ASCII order
        ("1.0.0-alpha", "1.0.0-alpha.0"),  # a longer list that starts with the shorter one ranks higher
        ("1.0.0-rc.1", "1.0.0"),  # a pre-release below its release
        ("0.9.9", "1.0.0-alpha"),  # but above every lower release
        ("1.2.3", "v1.2.4"),
        ("1.0.0-9", "1.0.0-10"),
    ],
)
def test_precedence_orders_the_pair(lower: str, higher: str) -> None:
    assert key(lower) < key(higher)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("1.0.0+build.1", "1.0.0+build.2"),  # build metadata is ignored
        ("1.0.0", "1.0.0+20130313144700"),
        ("1.0.0-beta+exp.sha.5114f85", "1.0.0-beta"),
        ("v1.2.3", "1.2.3"),  # the leading v is optional
        ("v1.0.0-rc.1+x", "1.0.0-rc.1"),
    ],
)
def test_equal_precedence(one: str, other: str) -> None:
    assert key(one) == key(other)


@pytest.mark.parametrize(
    "tag",
    ["1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "1.0.0-alpha+001", "1.0.0+21AF26D3----117B344092BD"],
)
def test_the_spec_examples_of_valid_versions_parse(tag: str) -> None:
    assert precedence(tag) is not None


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "1.2",  # SemVer needs all three numbers
        "v1",
        "1.2.3.4",
        "01.2.3",  # leading zeros are not SemVer
        "1.02.3",
        "1.2.3-01",  # not in a numeric pre-release identifier either
        "1.2.3-",
        "1.2.3+",
        "1.2.3-rc..1",
        "V1.2.3",  # only a lowercase v
        "vv1.2.3",
        "v-1.2.3",
        "2025-01-15",
        "1.2.3-rc_1",
        "",
    ],
)
def test_not_a_version(tag: str) -> None:
    assert precedence(tag) is None


def test_the_parts_of_the_key() -> None:
    """The encoding the module docstring describes, so ranking code can rely on it."""
    assert precedence("v1.4.2") == (1, 4, 2, 1)
    assert precedence("1.4.2-rc.10.a") == (1, 4, 2, 0, (1, 0, "rc"), (0, 10, ""), (1, 0, "a"))


# --- against a reference written straight from the spec's words ------------------------------


def _reference_compare(a: str, b: str) -> int:
    """semver.org §11 as prose, step by step: -1, 0 or 1."""

    def split(text: str) -> tuple[list[int], list[str]]:
        core, _, pre = text.removeprefix("v").split("+")[0].partition("-")
        return [int(n) for n in core.split(".")], pre.split(".") if pre else []

    (core_a, pre_a), (core_b, pre_b) = split(a), split(b)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if not pre_a and not pre_b:
        return 0
    if not pre_a or not pre_b:  # a release ranks above its pre-releases
        return 1 if not pre_a else -1
    for x, y in zip(pre_a, pre_b, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pre_a) > len(pre_b)) - (len(pre_a) < len(pre_b))


_NUMBER = st.integers(min_value=0, max_value=12).map(str) | st.sampled_from(["100", "99999999999999999999"])
_WORD = st.sampled_from(["alpha", "beta", "rc", "a", "Z", "x-y", "0a", "-"])
_VERSIONS = st.builds(
    lambda core, pre, build, v: f"{v}{'.'.join(core)}{'-' + '.'.join(pre) if pre else ''}{build}",
    st.lists(_NUMBER, min_size=3, max_size=3),
    st.lists(_NUMBER | _WORD, max_size=3),
    st.sampled_from(["", "+build.5", "+001"]),
    st.sampled_from(["", "v"]),
)


@given(_VERSIONS, _VERSIONS)
def test_precedence_agrees_with_the_spec_reference(a: str, b: str) -> None:
    ka, kb = key(a), key(b)
    assert (ka > kb) - (ka < kb) == _reference_compare(a, b)
