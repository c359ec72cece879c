"""Fuzzing the inputs other people control through the real loaders and command line (Hypothesis).

Policies as YAML text, snapshots and saved plans, each generated and then mutated at the byte
level (flipped, inserted, deleted and repeated bytes; a plan resealed half the time, so that its
mutations reach the parser behind the seal). The only outcomes allowed are a valid result or one
error line with the documented exit code: no traceback, no other output on stderr, no hang.
Each example runs under an alarm: a hang fails the test instead of stalling CI (a guard, not a
timing).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import registry
from retention.cli import main
from retention.plan import SEAL_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pytest

EXAMPLE = Path("examples/snapshot.json")
POLICY = "policies/combined"
NOW = "2026-11-26T00:00:00Z"
ALARM_S = 30
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


@contextlib.contextmanager
def alarm() -> Iterator[None]:
    def hang(signum: int, frame: object) -> None:
        raise AssertionError(f"no result after {ALARM_S} s: the input made the tool hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(ALARM_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(*argv: str) -> tuple[int, str, str]:
    """The command line in this process; an exception escaping `main` is a traceback a user would see."""
    out, err = io.StringIO(), io.StringIO()
    with alarm(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--log-format", "json", "--log-level", "error", *argv])
    return code, out.getvalue(), err.getvalue()


def only_one_error_line(err: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("acr-retention:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few byte-level edits: the damage a disk, a copy or a hand makes."""
    result = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not result:
            break
        at = draw(st.integers(0, len(result) - 1))
        edit = draw(
            st.sampled_from(["flip", "insert", "splice", "value", "value", "delete", "repeat", "truncate"])
        )
        if edit == "flip":
            result[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            result[at:at] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from([b"{", b"[", b'"', b"\\", b"\xff"])
            )
        elif edit == "splice":
            result[at:at] = draw(st.sampled_from(HOSTILE))
        elif edit == "value":
            # Replace one value (after a key's `: `) with a hostile one, so that it reaches the parser
            # as a value rather than as noise inside a string.
            starts = [m.end() for m in re.finditer(rb": ", bytes(result))]
            if starts:
                start = draw(st.sampled_from(starts))
                end = min(
                    (result.find(c, start) for c in (b",", b"}", b"]", b"\n") if result.find(c, start) >= 0),
                    default=len(result),
                )
                result[start:end] = draw(st.sampled_from(HOSTILE))
        elif edit == "delete":
            del result[at : at + draw(st.integers(1, 16))]
        elif edit == "repeat":
            result[at:at] = result[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 3))
        else:
            del result[at:]
    return bytes(result)


# Fragments that have broken parsers before: times at the ends of the calendar, numbers past what
# a float or a 64-bit field holds or Python's int() will parse, deep nesting, YAML aliases and tags.
HOSTILE = [
    b'"0001-01-01T00:00:00+05:00"',
    b'"9999-12-31T23:59:59-01:00"',
    b"[" * 3000,
    b"{" * 3000,
    b"1" * 5000,
    b"1e999",
    b"-1",
    b"NaN",
    b"18446744073709551616",
    rb'"\ud800"',
    b"&a [*a, *a, *a]",
    b"*undefined",
    b"!!python/object:os.system",
    b"<<: *a",
    b"\t",
    b"\x00",
]
NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
PATTERNS = st.sampled_from([r"v\d+\.\d+\.\d+", "latest", r"pr-\d+", "(a+)+$", "(", r"(a)\1", ".*", "[z-a]"])
DURATIONS = st.sampled_from(["30d", "1d12h", "0d", "100000000w", "30days", "", "2w"])
GLOBS = st.sampled_from(["**", "team-*/**", "[", "a/**/b", "", "***"])


@st.composite
def policy_documents(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        rule: dict[str, Any] = {
            "name": draw(NAMES),
            "action": draw(st.sampled_from(["keep", "delete", "lock", "untag", "purge"])),
        }
        for key, strategy in (
            ("tags", st.lists(PATTERNS, max_size=3)),
            ("repositories", st.lists(GLOBS, max_size=2)),
            ("older_than", DURATIONS),
            ("newest", st.integers(-2, 10**20)),
            ("tag_state", st.sampled_from(["tagged", "untagged", "any", "sometimes"])),
            (
                "set",
                st.dictionaries(st.sampled_from(["write_enabled", "delete_enabled", "x"]), st.booleans()),
            ),
        ):
            if draw(st.booleans()):
                rule[key] = draw(strategy)
        rules.append(rule)
    document: dict[str, Any] = {"version": draw(st.sampled_from([1, 2, "1"])), "rules": rules}
    if draw(st.booleans()):
        document["settings"] = {
            "max_deletes": draw(st.integers(-1, 10**30)),
            "include_locked": draw(st.booleans()),
        }
    return document


@FUZZ
@given(data=st.data())
def test_any_policy_text_validates_to_problems_or_a_policy(tmp_path: Path, data: st.DataObject) -> None:
    text = yaml.safe_dump(data.draw(policy_documents()), sort_keys=False).encode()
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(data.draw(mutated(text)))
    code, out, err = run("validate", str(policy))
    assert code in (0, 1), (code, err)
    assert err == ""
    assert out.splitlines()[-1].endswith(("problem in 1 file", "problems in 1 file"))
    if code == 0:
        code, out, err = run("plan", "--policy", str(policy), "--snapshot", str(EXAMPLE), "--now", NOW)
        assert code in (0, 3), err
        assert out.splitlines()[-1].startswith(("Plan:", "No changes.", "Over the limit:"))


@FUZZ
@given(data=st.data())
def test_any_snapshot_plans_or_gets_one_error_line(tmp_path: Path, data: st.DataObject) -> None:
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_bytes(data.draw(mutated(EXAMPLE.read_bytes())))
    code, out, err = run(
        "plan", "--policy", POLICY, "--snapshot", str(snapshot), "--now", NOW, "--format", "json"
    )
    assert code in (0, 1, 3), err
    if code == 1:
        only_one_error_line(err)
        assert out == ""
    else:
        assert json.loads(out)["format"] == "acr-retention/plan"


def saved_plan(tmp_path: Path) -> bytes:
    path = tmp_path / "original.json"
    code, _, err = run(
        "plan",
        "--policy",
        POLICY,
        "--snapshot",
        str(EXAMPLE),
        "--now",
        NOW,
        "--save-plan",
        str(path),
        "--out",
        str(tmp_path / "plan.txt"),
    )
    assert code == 0, err
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_any_plan_file_is_refused_in_one_line_before_anything_runs(
    tmp_path: Path, data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a damaged plan holds, apply refuses it with one line: its registry (contoso) is not
    the one given, and a plan that survives even that fails to connect to a closed port."""
    monkeypatch.setenv(registry.ACCESS_TOKEN_VARIABLE, "not-a-real-token")
    text = data.draw(mutated(saved_plan(tmp_path)))
    if data.draw(st.booleans()) and SEAL_PREFIX.encode() in text:
        body = text[: text.rindex(SEAL_PREFIX.encode())]
        text = body + f'{SEAL_PREFIX}{hashlib.sha256(body).hexdigest()}"\n}}\n'.encode()
    plan = tmp_path / "plan.json"
    plan.write_bytes(text)
    code, _, err = run(
        "apply", "--plan", str(plan), "--registry", "https://127.0.0.1:1", "--yes", "--allow-snapshot-plan"
    )
    assert code in (0, 1, 3), err
    if code != 0:
        only_one_error_line(err)
