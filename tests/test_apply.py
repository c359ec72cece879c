"""`apply` against the emulator through the real SDK: the registry ends exactly as the plan said."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from azure.containerregistry import ContainerRegistryClient

from retention import registry
from retention.inventory import Inventory, Manifest, Property, Repository
from retention.plan import DeleteManifest, Plan, SetManifestProperties, SetTagProperties
from retention.planner import make_plan
from retention.policyload import load_policy
from retention.timefmt import format_time, parse_time
from tests.conftest import run_cli
from tests.emulator import FakeCredential
from tests.test_apply_safety import reseal

if TYPE_CHECKING:
    from tests.emulator import Emulator
    from tests.emulator.faults import Held

EXAMPLE = "examples/snapshot.json"
POLICY = "policies/combined"
NOW = "2026-11-26T00:00:00Z"


run = run_cli


def expected_after(before: Inventory, plan: Plan) -> list[Repository]:
    """The registry as the plan promises it: deletions gone (with their tags), changes made."""
    deleted = {(a.repository, a.digest) for a in plan.actions if isinstance(a, DeleteManifest)}
    manifest_sets = {
        (a.repository, a.digest): a.set for a in plan.actions if isinstance(a, SetManifestProperties)
    }
    tag_sets = {(a.repository, a.tag): a.set for a in plan.actions if isinstance(a, SetTagProperties)}

    def attributes(changes: tuple[tuple[Property, bool], ...]) -> dict[str, Any]:
        return {prop.attribute: value for prop, value in changes}

    def changed(name: str, m: Manifest) -> Manifest:
        tags = tuple(replace(t, **attributes(tag_sets.get((name, t.name), ()))) for t in m.tags)
        return replace(m, tags=tags, **attributes(manifest_sets.get((name, m.digest), ())))

    result = []
    for repo in before.repositories:
        left = tuple(changed(repo.name, m) for m in repo.manifests if (repo.name, m.digest) not in deleted)
        if left:  # ACR drops a repository with its last manifest
            result.append(Repository(repo.name, left))
    return result


def comparable(repositories: tuple[Repository, ...] | list[Repository]) -> list[Any]:
    """Registry state without timestamps that writes legitimately move (tag times on PATCH)."""
    return [
        (
            r.name,
            [
                (
                    m.digest,
                    m.can_delete,
                    m.can_write,
                    m.can_read,
                    m.can_list,
                    [(t.name, t.can_delete, t.can_write) for t in m.tags],
                )
                for m in sorted(r.manifests, key=lambda m: m.digest)
            ],
        )
        for r in repositories
    ]


def offline_plan(inventory: Inventory, policy: str = POLICY) -> Plan:
    return make_plan(load_policy([policy]), inventory.repositories, now=parse_time(NOW))


# Budgets far above the emulator's (unthrottled) capacity: these tests are about outcomes, not pacing.
FAST = [
    "--max-deletes-per-minute",
    "600000",
    "--max-writes-per-minute",
    "600000",
    "--max-reads-per-minute",
    "600000",
]


def apply_args(emulator: Emulator, *extra: str) -> list[str]:
    return ["apply", "--registry", emulator.endpoint, "--now", NOW, *FAST, *extra]


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_apply_leaves_exactly_what_the_plan_promised(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deletions gone (children and signatures with their parents), locks set, nothing else touched."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before)
    report = tmp_path / "report.jsonl"
    code, out, err = run(
        [*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))], capsys
    )
    assert code == 0, err
    assert out.splitlines()[-1].startswith("Plan: 52 manifests to delete")
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))
    outcomes = records(report.read_text())
    assert len(outcomes) == len(plan.actions)
    # ACR deletes a subject's OCI referrers itself (the emulator too): their own deletes find them gone.
    assert {r["outcome"] for r in outcomes if r.get("cascade_from") is None} == {"done"}
    assert {r["outcome"] for r in outcomes if r.get("cascade_from")} == {"done", "already-gone"}
    summary = re.search(
        r"Applied: (\d+) manifests deleted .*?, (\d+) already gone, 0 drifted, 0 failed, 0 skipped", err
    )
    assert summary is not None
    assert int(summary.group(1)) + int(summary.group(2)) == 52
    # Applying the same policy again finds nothing to do.
    code, out, err = run([*apply_args(emulator, "--policy", POLICY, "--yes")], capsys)
    assert code == 0, err
    assert out.splitlines()[-1].startswith("No changes.")


def test_apply_under_throttling_errors_and_resets_ends_the_same(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A storm of 429s, 503s and dropped connections slows apply down but changes nothing in its result."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before)
    emulator.faults.script(status=429, method="DELETE", times=6, retry_after=0.05)
    emulator.faults.script(status=503, method="PATCH", times=3)
    emulator.faults.script(status="reset", method="DELETE", times=2)
    emulator.faults.script(status="reset", method="DELETE", times=1, after=True)  # deleted, answer lost
    code, _, err = run([*apply_args(emulator, "--policy", POLICY, "--yes", "--report", os.devnull)], capsys)
    assert code == 0, err
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))
    assert emulator.counters.count(status=429) == 6


def test_a_delete_refused_429_more_often_than_its_attempts_still_lands(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another client keeps the delete bucket empty: one manifest's DELETE is answered 429 ten
    times in a row (an item used to fail after six). Each 429 only pauses the deletes; the run
    ends with the registry exactly as planned and nothing failed."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before)
    target = next(a for a in plan.actions if isinstance(a, DeleteManifest) and a.cascade_from is None)
    emulator.faults.script(
        status=429, method="DELETE", path_contains=target.digest, times=10, retry_after=0.05
    )
    report = tmp_path / "report.jsonl"
    code, _, err = run([*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))], capsys)
    assert code == 0, err
    assert emulator.counters.count(status=429) == 10
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))
    outcome = next(r for r in records(report.read_text()) if r.get("digest") == target.digest)
    assert outcome["outcome"] == "done"
    assert ", 0 failed," in err


def test_drift_between_plan_and_apply_is_skipped(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest that gained a tag, got locked, or vanished since the plan is left alone and reported."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    saved = tmp_path / "plan.json"
    code, _, err = run(
        [
            "plan",
            "--policy",
            POLICY,
            "--registry",
            emulator.endpoint,
            "--now",
            NOW,
            "--save-plan",
            str(saved),
            "--out",
            str(tmp_path / "plan.txt"),
        ],
        capsys,
    )
    assert code == 0, err
    plan_doc = json.loads(saved.read_text())
    deletes = [a for a in plan_doc["actions"] if a["op"] == "delete_manifest" and a["cascade_from"] is None]
    tagged, locked, vanished = deletes[0], deletes[1], deletes[2]
    # Someone else acts on the registry meanwhile: pushes a tag (the exact bytes, as `docker push`
    # of the same image would), locks one manifest, deletes another.
    emulator.add_basic_user(
        "ci", "secret", roles={"pull", "push", "metadata_read", "metadata_write", "delete"}
    )
    auth = ("ci", "secret")
    base = f"{emulator.endpoint}/v2/{tagged['repository']}/manifests"
    body = requests.get(f"{base}/{tagged['digest']}", auth=auth, timeout=10, headers={"Accept": "*/*"})
    pushed = requests.put(
        f"{base}/hotfix-keep",
        data=body.content,
        auth=auth,
        timeout=10,
        headers={"Content-Type": body.headers["Content-Type"]},
    )
    assert pushed.status_code == 201
    with ContainerRegistryClient(emulator.endpoint, FakeCredential("someone-else")) as client:
        client.update_manifest_properties(locked["repository"], locked["digest"], can_delete=False)
        client.delete_manifest(vanished["repository"], vanished["digest"])
    report = tmp_path / "report.jsonl"
    code, _, err = run(
        [*apply_args(emulator, "--plan", str(saved), "--yes", "--report", str(report))], capsys
    )
    assert code == 0, err
    by_digest = {r["digest"]: r for r in records(report.read_text()) if r["op"] == "delete_manifest"}
    assert by_digest[tagged["digest"]]["outcome"] == "drifted"
    assert "hotfix-keep" in by_digest[tagged["digest"]]["detail"]
    assert by_digest[locked["digest"]]["outcome"] == "drifted"
    assert by_digest[vanished["digest"]]["outcome"] == "already-gone"
    remaining = {m.digest for r in emulator.dump().repositories for m in r.manifests}
    assert {tagged["digest"], locked["digest"]} <= remaining
    # Their cascades stay with them: a child is never deleted while its parent stays.
    for record in by_digest.values():
        if record["cascade_from"] in (tagged["digest"], locked["digest"]):
            assert record["outcome"] == "skipped"
            assert record["detail"] == f"parent {record['cascade_from']} was not deleted (drifted)"
            assert record["digest"] in remaining


def test_include_locked_unlocks_then_deletes_only_what_it_planned(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With include_locked, locked manifests and tags are unlocked and deleted; others stay locked."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    policy = tmp_path / "policy"
    policy.mkdir()
    for part in ("base.yaml", "ci-cleanup.yaml"):
        text = Path(POLICY, part).read_text()
        (policy / part).write_text(text.replace("include_locked: false", "include_locked: true"))
    before = emulator.dump()
    plan = offline_plan(before, str(policy))
    assert any(a.unlock_first for a in plan.actions if isinstance(a, DeleteManifest))
    code, _, err = run(
        [*apply_args(emulator, "--policy", str(policy), "--yes", "--report", os.devnull)], capsys
    )
    assert code == 0, err
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))


def test_over_the_limit_nothing_is_executed(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan deleting more than --max-deletes is shown and refused with exit 3; the registry is untouched."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    code, _, err = run([*apply_args(emulator, "--policy", POLICY, "--yes", "--max-deletes", "10")], capsys)
    assert code == 3
    assert "refusing to apply: the plan deletes 52 manifests, more than max_deletes 10" in err
    assert emulator.dump() == before


def test_without_a_terminal_apply_refuses_unless_yes(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --yes and no terminal: nothing runs, exit 1, and the message says how to proceed."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    with Path(os.devnull).open() as not_a_terminal:
        monkeypatch.setattr(sys, "stdin", not_a_terminal)
        code, _, err = run([*apply_args(emulator, "--policy", POLICY)], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        "acr-retention: error: refusing to apply without --yes: standard input is not a terminal"
    )
    assert emulator.dump() == before


class Terminal(io.StringIO):
    """What someone types at a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize(
    ("typed", "applied"), [("no\n", False), ("\n", False), ("y\n", False), (" YES \n", True)]
)
def test_at_a_terminal_only_yes_applies(
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    typed: str,
    applied: bool,
) -> None:
    """Without --yes, a terminal is asked, with what the plan does; only "yes" (any case, any
    spaces around it) applies it, anything else leaves the registry as it was."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    monkeypatch.setattr(sys, "stdin", Terminal(typed))

    code, _, err = run([*apply_args(emulator, "--policy", POLICY)], capsys)

    assert (
        f"Apply to {emulator.login_server}: delete 52 manifests (≤ 7.0 GiB, upper bound) and make 5"
        " property changes? Type 'yes' to continue: "
    ) in err
    if applied:
        assert code == 0, err
        assert (
            # The SBOMs and signatures of three of them went with them (already gone, no request).
            "Applied: 49 manifests deleted (≤ 7.0 GiB freed, upper bound), 5 property changes, 3 already"
            " gone, 0 drifted, 0 failed, 0 skipped; 0 throttled answers; "
        ) in err
        # Before the prompt, and again under what was done.
        assert err.count("Deletions are permanent: soft delete is not known to be on") == 2
        assert (
            sum(len(r.manifests) for r in emulator.dump().repositories)
            == sum(len(r.manifests) for r in before.repositories) - 52
        )
    else:
        assert code == 1
        assert "acr-retention: not applied" in err
        assert emulator.dump() == before


def test_saved_plan_for_another_registry_or_too_old_is_refused(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply --plan checks the plan's registry and the age of its inventory before anything else."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    from_snapshot = tmp_path / "offline.json"
    code, _, _ = run(
        [
            "plan",
            "--policy",
            POLICY,
            "--snapshot",
            EXAMPLE,
            "--now",
            NOW,
            "--save-plan",
            str(from_snapshot),
            "--out",
            os.devnull,
        ],
        capsys,
    )
    assert code == 0
    code, _, err = run([*apply_args(emulator, "--plan", str(from_snapshot), "--yes")], capsys)
    assert code == 1
    assert f"the plan is for registry contoso.azurecr.io, not {emulator.login_server}; refusing it" in err
    live = tmp_path / "live.json"
    code, _, _ = run(
        [
            "plan",
            "--policy",
            POLICY,
            "--registry",
            emulator.endpoint,
            "--now",
            NOW,
            "--save-plan",
            str(live),
            "--out",
            os.devnull,
        ],
        capsys,
    )
    assert code == 0
    # An hour old by its own (sealed) word, as a plan saved an hour ago is: no waiting for it to age.
    taken = json.loads(live.read_text())["taken_at"]
    aged = format_time(parse_time(taken) - timedelta(hours=1))
    reseal(live, lambda body: body.replace(f'"taken_at": "{taken}"', f'"taken_at": "{aged}"'))
    before = emulator.dump()
    code, _, err = run([*apply_args(emulator, "--plan", str(live), "--yes", "--max-plan-age", "1s")], capsys)
    assert code == 1
    assert f"(taken {aged}), more than --max-plan-age 0m01s; make a new plan" in err
    assert emulator.dump() == before


def test_access_denied_stops_the_run_at_once(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An identity that may read but not delete gets one clear error and exit 1; nothing is deleted."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    emulator.auth.strict_identities = True
    emulator.add_identity("aad-token", roles={"metadata_read", "catalog", "pull"})
    before = emulator.dump()
    report = tmp_path / "r.jsonl"
    code, _, err = run([*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))], capsys)
    assert code == 1
    assert f"acr-retention: error: registry {emulator.login_server}: access denied" in err
    assert {m.digest for r in emulator.dump().repositories for m in r.manifests} == {
        m.digest for r in before.repositories for m in r.manifests
    }
    outcomes = records(report.read_text())
    # Every planned action has exactly one line, those of repositories still running when the
    # refusal came included: the run waits for them before it accounts for the rest.
    planned = offline_plan(before).actions
    assert sorted((r["digest"], r.get("tag", "")) for r in outcomes) == sorted(
        (a.digest, getattr(a, "tag", "")) for a in planned
    )
    assert all(r["outcome"] in ("failed", "skipped") for r in outcomes)
    # Skipped: a child of a refused delete, or an action the refusal stopped before it started.
    stopped = {
        r["detail"] for r in outcomes if r["outcome"] == "skipped" and not r["detail"].startswith("parent ")
    }
    assert stopped == {"stopped: access denied"}


def held_mid_plan(emulator: Emulator, plan: Plan) -> tuple[Held, list[str]]:
    """Hold the DELETE of shop/api's first planned manifest (for up to 10 minutes), the point at
    which a run with --concurrency 1 has finished base/python and sandbox/alice/scratch and
    started nothing else; returns the hold and the repositories done by then."""
    target = next(
        a.digest
        for a in plan.actions
        if isinstance(a, DeleteManifest) and a.repository == "shop/api" and not a.after
    )
    before = sorted({a.repository for a in plan.actions if a.repository < "shop/api"})
    assert before == ["base/python", "sandbox/alice/scratch"]
    return emulator.faults.hold(method="DELETE", path_contains=target.split(":")[1], seconds=600), before


def apply_in_a_process(emulator: Emulator, *extra: str) -> list[str]:
    """The command line of `apply --policy` in a process of its own, one request at a time
    (--concurrency 1), so that a held request holds the whole run."""
    return [
        sys.executable,
        "-m",
        "retention",
        *apply_args(emulator, "--policy", POLICY, "--yes", "--concurrency", "1", *extra),
    ]


def process_environment(emulator: Emulator, env: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        registry.ACCESS_TOKEN_VARIABLE: "aad-token",
        "SSL_CERT_FILE": emulator.ca_file,
        **(env or {}),
    }


def test_kill_9_mid_run_then_a_second_run_converges(emulator: Emulator, tmp_path: Path) -> None:
    """A run killed with SIGKILL half-way leaves a consistent registry; the next run finishes the job.

    The kill lands at a known point, not after some time: while the registry holds the run's
    DELETE of shop/api's first manifest, with two repositories done and two not started."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before)
    held, done_by_then = held_mid_plan(emulator, plan)
    env = process_environment(emulator)
    report = tmp_path / "first.jsonl"
    first = subprocess.Popen(
        [*apply_in_a_process(emulator), "--report", str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert held.arrived.wait(60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    emulator.faults.reset()  # the held DELETE is dropped: its client is gone
    outcomes = records(report.read_text())
    assert sorted({r["repository"] for r in outcomes}) == done_by_then
    assert len(outcomes) == sum(a.repository in done_by_then for a in plan.actions)
    second = subprocess.run(
        apply_in_a_process(emulator), capture_output=True, text=True, env=env, check=False
    )
    assert second.returncode == 0, second.stderr
    assert all(r["outcome"] in ("done", "already-gone") for r in records(second.stdout))
    got, want = comparable(emulator.dump().repositories), comparable(expected_after(before, plan))
    flat_got = {(r, m) for r, ms in got for m in map(str, ms)}
    flat_want = {(r, m) for r, ms in want for m in map(str, ms)}
    assert flat_got == flat_want, (sorted(flat_got - flat_want), sorted(flat_want - flat_got))


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
    ids=["SIGTERM (a CronJob deadline)", "SIGINT (Ctrl-C)"],
)
def test_a_signal_stops_new_actions_and_reports_every_one(
    emulator: Emulator, tmp_path: Path, signum: signal.Signals, exit_code: int
) -> None:
    """In-flight actions finish, the rest are reported skipped; exit 128 + the signal's number."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    plan = offline_plan(emulator.dump())
    report = tmp_path / "report.jsonl"
    code, err = apply_until_signal(emulator, report, signum)
    assert code == exit_code, err
    assert f"stopped by {signum.name}; the report lists what ran" in err
    outcomes = records(report.read_text())
    assert len(outcomes) == len(plan.actions)
    by_repository: dict[str, set[str]] = {}
    for record in outcomes:
        by_repository.setdefault(record["repository"], set()).add(record["outcome"])
    # Done before the signal; in flight when it came (shop/api's first level); never started.
    assert by_repository["base/python"] <= {"done", "already-gone"}
    assert by_repository["sandbox/alice/scratch"] == {"done"}
    assert "skipped" in by_repository["shop/api"]
    not_started = [r for r in outcomes if r["repository"] == "shop/web"]
    assert {r["detail"] for r in not_started} == {"interrupted before it started"}
    assert f"0 failed, {sum(r['outcome'] == 'skipped' for r in outcomes)} skipped" in err
    # Whatever was cut short, no surviving index lists a manifest that is gone.
    state = emulator.dump()
    for repository in state.repositories:
        present = {m.digest for m in repository.manifests}
        for manifest in repository.manifests:
            assert set(manifest.references) <= present, manifest.digest


def test_a_tampered_saved_plan_is_refused_by_apply(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply --plan refuses an edited plan file before touching the registry."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    saved = tmp_path / "plan.json"
    code, _, _ = run(
        [
            "plan",
            "--policy",
            POLICY,
            "--registry",
            emulator.endpoint,
            "--now",
            NOW,
            "--save-plan",
            str(saved),
            "--out",
            os.devnull,
        ],
        capsys,
    )
    assert code == 0
    text = saved.read_text()
    saved.write_text(text.replace('"op": "set_manifest_properties"', '"op": "delete_manifest"', 1))
    code, _, err = run([*apply_args(emulator, "--plan", str(saved), "--yes")], capsys)
    assert code == 1
    assert "the plan was changed after it was made (plan_sha256 does not match)" in err
    assert emulator.dump() == before


def apply_until_sigterm(
    emulator: Emulator, report: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`apply --policy` in a process of its own, sent SIGTERM half-way; exit code and stderr."""
    return apply_until_signal(emulator, report, signal.SIGTERM, env)


def apply_until_signal(
    emulator: Emulator, report: Path, signum: signal.Signals, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`apply --policy` in a process of its own, sent `signum` while the registry holds its DELETE
    of shop/api's first manifest (two repositories done, two not started). Returns the exit code
    and stderr.

    The held request is served right after the signal is sent: the signal is pending on the
    process before the answer leaves the emulator, and its handler runs before the executor can
    see that answer, so the run stops at this point however loaded the machine is.
    """
    held, _ = held_mid_plan(emulator, offline_plan(emulator.dump()))
    job = subprocess.Popen(
        [*apply_in_a_process(emulator), "--report", str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=process_environment(emulator, env),
        text=True,
    )
    try:
        assert held.arrived.wait(60), job.communicate(timeout=5)[1]
        job.send_signal(signum)
    finally:
        held.serve()
    _, err = job.communicate(timeout=60)
    return job.returncode, err
