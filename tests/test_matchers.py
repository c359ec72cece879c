"""Tag patterns (RE2, matched whole) and repository globs: what they match, and that no tag or
repository name can stall a run."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from retention.matchers import FullMatcher, GrammarError, compile_globs, glob_to_regex, regex_problem
from tests.builders import rule

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (r"v\d+\.\d+\.\d+", ["v1.2.3", "v10.0.12"], ["v1.2", "v1.2.3-rc.1", "xv1.2.3"]),
        ("latest", ["latest"], ["latest-1", "not-latest"]),
        (r"pr-\d+|build-\d+", ["pr-1", "build-22"], ["pr-", "pr-1x"]),
        ("(?i)LATEST", ["latest", "Latest"], ["latest2"]),
        (r"[[:alpha:]]+-\p{N}+", ["main-42"], ["main-x"]),
        (r"(?P<major>\d+)\.(?<minor>\d+)", ["1.2"], ["1.2.3"]),
    ],
)
def test_patterns_match_the_whole_tag_in_re2s_dialect(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    """Full match, as before; RE2 adds POSIX classes and Unicode classes, and takes both named-group spellings."""
    assert regex_problem(pattern) is None
    matcher = rule("r", "keep", tags=[pattern])
    assert [tag for tag in matches if matcher.matches_tag(tag)] == matches
    assert [tag for tag in misses if matcher.matches_tag(tag)] == []


def test_any_of_several_patterns_and_flags_stay_inside_their_own_pattern() -> None:
    """Patterns are one alternation, each in its own group: `(?i)` in one does not spread to the next."""
    matcher = FullMatcher(["(?i)a", "b"])
    assert (matcher.fullmatch("A"), matcher.fullmatch("b"), matcher.fullmatch("B")) == (True, True, False)


@pytest.mark.parametrize("tag_length", [41, 1_000, 100_000])
def test_a_backtracking_pattern_against_a_hostile_tag_finishes(tag_length: int) -> None:
    """`(a+)+$` against `aaa…ab`: hours for a backtracking engine at 41 characters, instant for RE2."""
    assert FullMatcher([r"(a+)+$"]).fullmatch("a" * (tag_length - 1) + "b") is False


def test_planning_a_registry_with_a_hostile_tag_does_not_stall(tmp_path: Path) -> None:
    """Through the command line: the run ends (the timeout guards against a hang, it measures nothing)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: evil, action: delete, tags: ['(a+)+$']}\n")
    snapshot = tmp_path / "snapshot.json"
    manifest = {"digest": "sha256:01", "updated_at": "2026-01-01T00:00:00Z", "tags": ["a" * 40 + "b", "aaaa"]}
    document = {"format": "acr-retention/snapshot", "format_version": 1}
    snapshot.write_text(json.dumps({**document, "repositories": [{"name": "app", "manifests": [manifest]}]}))
    argv = [sys.executable, "-m", "retention", "plan", "--policy", str(policy), "--snapshot", str(snapshot)]
    done = subprocess.run(
        [*argv, "--now", "2026-11-26T00:00:00Z", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [a["digest"] for a in json.loads(done.stdout)["actions"]] == ["sha256:01"]


def test_globs_are_re2_too() -> None:
    """Many stars against a long name: polynomial for a backtracking engine, linear here."""
    matcher = compile_globs(("*a*a*a*a*a*a*a*a*a*a*c",))
    assert matcher is not None
    assert matcher.fullmatch("a" * 5000) is False
    assert glob_to_regex("team-*/**") == "team\\-[^/]*/.+"
    with pytest.raises(GrammarError, match="invalid character class range: z-a"):
        glob_to_regex("[z-a]")


def test_rules_travel_to_reader_processes() -> None:
    """Policies are pickled for `--processes`; RE2's compiled form is rebuilt from the patterns."""
    original = rule("r", "delete", tags=[r"pr-\d+"], repositories=["team-*/**"])
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own value, round-tripped
    assert copy == original
    assert copy.matches_tag("pr-12")
    assert not copy.matches_tag("main-1")
    assert copy.matches_repository("team-a/api")


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        (r"(a)\1", "RE2 has no backreferences"),
        ("(?=v)v1", "RE2 has no lookahead or lookbehind"),
        ("(?<!rc)x", "RE2 has no lookahead or lookbehind"),
        ("(?>a)", "RE2 has no atomic groups"),
        ("a*+", "RE2 has no possessive quantifiers"),
    ],
)
def test_constructs_re2_leaves_out_are_named_for_python_and_pcre_users(pattern: str, hint: str) -> None:
    problem = regex_problem(pattern)
    assert problem is not None
    assert problem.endswith(f"({hint})")


def test_validation_prints_nothing_of_its_own(capfd: pytest.CaptureFixture[str]) -> None:
    """RE2 would log every bad pattern to stderr itself; only our one line may be printed."""
    assert regex_problem("(") is not None
    assert FullMatcher(["a"]).fullmatch("a")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
