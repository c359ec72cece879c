"""The content cache (retention.registry.cache): a second run reads no content it read before, and
a damaged, foreign or unwritable cache never changes a plan. Real SDK, emulator, real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from retention import registry
from tests import pushes
from tests.conftest import run_cli
from tests.test_apply_safety import PRUNE_PR, client, referrer_registry, write_policy

if TYPE_CHECKING:
    from pathlib import Path

    from azure.containerregistry import ContainerRegistryClient

    from tests.emulator import Emulator

__all__ = ["client"]  # the SDK fixture of test_apply_safety

LATER = "2099-01-01T00:00:00Z"


def plan(
    emulator: Emulator, policy: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[dict[str, Any], str]:
    argv = [
        "plan",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
        "--now",
        LATER,
        "-o",
        "json",
        *extra,
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    document = json.loads(out)
    return {"actions": document["actions"], "kept": document["kept"]}, err


def content_reads(emulator: Emulator) -> int:
    return emulator.counters.count(operation="get_manifest")


@pytest.fixture
def registry_with_referrers(client: ContainerRegistryClient) -> dict[str, str]:
    made = referrer_registry(client)
    c1 = pushes.push_image(client, "app", salt="c1")
    c2 = pushes.push_image(client, "app", salt="c2", platform="linux/arm64")
    made["index"] = pushes.push_index(client, "app", [c1, c2], tag="pr-9")
    return made


@pytest.mark.usefixtures("credential", "registry_with_referrers")
def test_a_second_run_reads_no_content_and_plans_the_same(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, PRUNE_PR)
    emulator.counters.reset()
    first, _ = plan(emulator, policy, capsys)
    read_first = content_reads(emulator)
    assert read_first > 0
    emulator.counters.reset()
    second, err = plan(emulator, policy, capsys)
    assert content_reads(emulator) == 0
    assert second == first
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (event,) = [e for e in events if e["event"] == "content_cache"]
    assert (event["hits"], event["reads"]) == (read_first, 0)
    uncached, _ = plan(emulator, policy, capsys, "--no-cache")
    assert uncached == first


@pytest.mark.usefixtures("credential", "registry_with_referrers")
def test_a_damaged_cache_is_a_miss_and_a_broken_file_a_warning_never_a_wrong_plan(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, PRUNE_PR)
    path = tmp_path / "content.sqlite3"
    truth, _ = plan(emulator, policy, capsys, "--no-cache")
    plan(emulator, policy, capsys, "--cache", str(path))
    # Rows edited behind the checksum's back (a referrer's subject forged away): misses, read again.
    with sqlite3.connect(path) as db:
        forged = db.execute("UPDATE content SET body = '{}' WHERE body LIKE '%subject%'").rowcount
    assert forged > 0
    emulator.counters.reset()
    again, _ = plan(emulator, policy, capsys, "--cache", str(path))
    assert again == truth
    assert content_reads(emulator) == forged
    # A file that is not a database at all: one warning, and the plan of a run without a cache.
    path.unlink()
    for leftover in tmp_path.glob("content.sqlite3-*"):
        leftover.unlink()
    path.write_bytes(b"this is not SQLite" * 100)
    broken, err = plan(emulator, policy, capsys, "--cache", str(path))
    assert broken == truth
    assert "content_cache_disabled" in err
    # A cache that cannot be created (its parent is a file).
    blocked, err = plan(emulator, policy, capsys, "--cache", str(tmp_path / "content.sqlite3" / "x"))
    assert blocked == truth
    assert "content_cache_disabled" in err


@pytest.mark.usefixtures("registry_with_referrers")
def test_two_runs_at_once_share_one_cache(emulator: Emulator, tmp_path: Path) -> None:
    """A CronJob and an operator, or several reader processes: SQLite's WAL mode and a busy
    timeout let both finish with the same plan."""
    policy = write_policy(tmp_path, PRUNE_PR)
    path = tmp_path / "shared.sqlite3"
    env = {**os.environ, registry.ACCESS_TOKEN_VARIABLE: "aad-token", "SSL_CERT_FILE": emulator.ca_file}
    command = [
        sys.executable,
        "-m",
        "retention",
        "plan",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
    ]
    command += ["--now", LATER, "-o", "json", "--cache", str(path), "--processes", "2"]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for _ in range(2)
    ]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    plans = [json.loads(out) for out, _ in results]
    assert plans[0]["actions"] == plans[1]["actions"]
    assert "content_cache_disabled" not in "".join(err for _, err in results)
    with sqlite3.connect(path) as db:
        (rows,) = db.execute("SELECT count(*) FROM content").fetchone()
    assert rows > 0
