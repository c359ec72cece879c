"""Input other people control gets one error line and a documented exit code, never a traceback
and never unbounded time or memory: times at the ends of the calendar, deep JSON, devices,
oversized files, duplicate keys, absurd sizes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retention.plan import SEAL_PREFIX

EXAMPLE = Path("examples/snapshot.json")
POLICY = "policies/combined"
NOW = "2026-11-26T00:00:00Z"


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real entry point in a process of its own: a traceback, a hang or a crash shows as such."""
    done = subprocess.run(
        [sys.executable, "-m", "retention", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line a user error prints (a usage error prints the usage first)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("acr-retention:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def snapshot_with(tmp_path: Path, change: Any) -> Path:
    document = json.loads(EXAMPLE.read_text())
    change(document)
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "now",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-01:00"],
)
def test_a_now_outside_the_calendar_in_utc_is_a_usage_error(now: str) -> None:
    done = cli("plan", "--policy", POLICY, "--snapshot", str(EXAMPLE), "--now", now)
    assert done.returncode == 2
    assert one_error(done) == (
        f"acr-retention: error: argument --now: {now!r} is out of range: in UTC it must lie within the years 1"
        " to 9999"
    )


def test_a_now_in_year_one_plans_with_nothing_older_than_the_cutoff(tmp_path: Path) -> None:
    """`older_than: 30d` before the first instant there is: nothing is older, so nothing is deleted for age."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: old, action: delete, older_than: 30d}\n")
    done = cli("plan", "--policy", str(policy), "--snapshot", str(EXAMPLE), "--now", "0001-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("No changes.")


def test_a_snapshot_time_outside_the_calendar_names_its_path(tmp_path: Path) -> None:
    path = snapshot_with(tmp_path, lambda d: d.update(taken_at="0001-01-01T00:00:00+05:00"))
    done = cli("plan", "--policy", POLICY, "--snapshot", str(path), "--now", NOW)
    assert done.returncode == 1
    assert one_error(done) == (
        f"acr-retention: error: {path}: $.taken_at: '0001-01-01T00:00:00+05:00' is out of range: in UTC it"
        " must lie within the years 1 to 9999"
    )


def test_json_nested_past_the_decoders_limit_is_one_line_even_under_an_ignored_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        '"format"', '"ignored": ' + "[" * 100_000 + "]" * 100_000 + ', "format"', 1
    )
    path = tmp_path / "deep.json"
    path.write_text(text)
    done = cli("plan", "--policy", POLICY, "--snapshot", str(path), "--now", NOW)
    assert done.returncode == 1
    assert one_error(done) == f"acr-retention: error: {path}: JSON nested deeper than about 1,000 levels"


def test_duplicate_keys_in_a_snapshot_are_an_error_with_their_place(tmp_path: Path) -> None:
    """YAML duplicates are errors in policies; JSON ones in snapshots are too, not a silent last-wins."""
    text = EXAMPLE.read_text()
    first = text.index('"updated_at"')
    text = text[:first] + '"updated_at": "2000-01-01T00:00:00Z", ' + text[first:]
    path = tmp_path / "dup.json"
    path.write_text(text)
    done = cli("plan", "--policy", POLICY, "--snapshot", str(path), "--now", NOW)
    assert done.returncode == 1
    assert (
        one_error(done)
        == f"acr-retention: error: {path}: $.repositories[0]: an object names 'updated_at' twice"
    )


def test_a_size_beyond_64_bits_is_an_error(tmp_path: Path) -> None:
    def huge(document: dict[str, Any]) -> None:
        document["repositories"][0]["manifests"][0]["size_bytes"] = 10**44

    path = snapshot_with(tmp_path, huge)
    done = cli("plan", "--policy", POLICY, "--snapshot", str(path), "--now", NOW)
    assert done.returncode == 1
    assert one_error(done) == (
        f"acr-retention: error: {path}: $.repositories[0].manifests[0].size_bytes: expected an integer from 0"
        " to 2^63-1, or null"
    )


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["validate", "/dev/zero"], 1),
        (["plan", "--policy", "/dev/zero", "--snapshot", str(EXAMPLE), "--now", NOW], 1),
        (["plan", "--policy", POLICY, "--snapshot", "/dev/zero", "--now", NOW], 1),
        (["apply", "--plan", "/dev/zero", "--registry", "example.azurecr.io", "--yes"], 1),
    ],
    ids=["validate", "policy", "snapshot", "plan"],
)
def test_a_device_is_not_read(argv: list[str], code: int) -> None:
    """`/dev/zero` never ends: it is refused before a byte is read, in one line, in no time."""
    done = cli(*argv, timeout=30)
    assert done.returncode == code
    assert "/dev/zero: not a regular file or a pipe" in done.stdout + done.stderr


def test_an_oversized_policy_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """A 5 MB policy took 17.5 s and 563 MB to parse; over the 1 MiB limit it is one line."""
    policy = tmp_path / "big.yaml"
    rules = "".join(f"  - {{name: r{i}, action: keep, tags: [v{i}]}}\n" for i in range(120_000))
    policy.write_text("version: 1\nrules:\n" + rules)
    assert policy.stat().st_size > 4_000_000
    done = cli("validate", str(policy), timeout=30)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{policy}: larger than 1 MiB; --max-policy-size raises the limit"


def test_a_plan_with_a_duplicate_key_is_refused_even_when_resealed(tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    done = cli(
        "plan", "--policy", POLICY, "--snapshot", str(EXAMPLE), "--now", NOW, "--save-plan", str(saved)
    )
    assert done.returncode == 0, done.stderr
    text = saved.read_text()
    body = text[: text.index(SEAL_PREFIX)].replace('"max_deletes":', '"max_deletes": null, "max_deletes":', 1)
    saved.write_text(f'{body}{SEAL_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}"\n}}\n')
    done = cli("apply", "--plan", str(saved), "--registry", "contoso.azurecr.io", "--yes")
    assert done.returncode == 1
    assert one_error(done) == f"acr-retention: error: {saved}: an object names 'max_deletes' twice"


def test_a_number_longer_than_python_reads_is_an_error_with_its_place(tmp_path: Path) -> None:
    """Python's int() refuses more than 4,300 digits; found by tests/test_fuzz.py as a traceback."""
    text = EXAMPLE.read_text().replace('"size_bytes": ', '"size_bytes": ' + "1" * 5000 + ', "ignored": ', 1)
    path = tmp_path / "digits.json"
    path.write_text(text)
    done = cli("plan", "--policy", POLICY, "--snapshot", str(path), "--now", NOW)
    assert done.returncode == 1
    assert one_error(done) == (
        f"acr-retention: error: {path}: $.repositories[0]: a number has more digits than this tool reads (4,300)"
    )


def test_a_large_policy_without_aliases_is_not_called_an_alias_bomb(tmp_path: Path) -> None:
    """Past the value cap, the message says what the file is: big, not an alias bomb."""
    policy = tmp_path / "big.yaml"
    rules = "".join(f"  - {{name: r{i}, action: keep, tags: [v{i}]}}\n" for i in range(40_000))
    policy.write_text("version: 1\nrules:\n" + rules)
    done = cli("validate", "--max-policy-size", "8MiB", str(policy), timeout=120)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        f"{policy}:3:3: $.rules: document has more than 100000 values; split a policy this large into several files"
    )
    assert "alias bomb" not in done.stdout
