"""Nothing is deleted that the plan did not show (issue 9), tried as a hostile operator would.

Everything goes through the real SDK over HTTPS against the emulator: the registry is built
and changed between plan and apply with tests/pushes.py (as CI pipelines and colleagues do),
and every test asserts the registry's state afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from azure.containerregistry import ContainerRegistryClient

from retention import registry
from retention.plan import SEAL_PREFIX, SIGNATURE_PREFIX
from retention.planfile import PLAN_KEY_VARIABLE
from retention.timefmt import format_time
from tests import pushes
from tests.conftest import run_cli
from tests.emulator import FakeCredential

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retention.inventory import Manifest
    from tests.emulator import Emulator

# Pushes are dated by the emulator's clock (now); measured from 90 days on, every one is old.
LATER = format_time(datetime.now(UTC) + timedelta(days=90))
FAST = ["--max-deletes-per-minute", "600000", "--max-writes-per-minute", "600000"]
FAST += ["--max-reads-per-minute", "600000"]
SIGNATURE = "application/vnd.cncf.notary.signature"
ADMIN = "admin-token"
EVERY_ROLE = {"metadata_read", "metadata_write", "delete", "pull", "push", "catalog"}
# Real ACR leaves index children out of manifest listings; the emulator can do either.
LISTINGS = pytest.mark.parametrize(
    "list_references", [True, False], ids=["references-listed", "references-not-listed"]
)
PRUNE_PR = """
version: 1
rules:
  - {name: prune-pr, action: delete, tags: ['pr-\\d+'], older_than: 30d}
"""


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    """Someone else's SDK client: the colleague or pipeline that changes the registry meanwhile."""
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential(ADMIN), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def state(emulator: Emulator, repository: str = "app") -> dict[str, Manifest]:
    for dumped in emulator.dump().repositories:
        if dumped.name == repository:
            return {m.digest: m for m in dumped.manifests}
    return {}


def records(text: str) -> dict[str, dict[str, Any]]:
    """The report's records by digest (delete actions) or `tag@digest` (tag property changes)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            key = f"{record['tag']}@{record['digest']}" if "tag" in record else record["digest"]
            found[key] = record
    return found


def plan_args(emulator: Emulator, policy: Path, *extra: str) -> list[str]:
    return ["plan", "--policy", str(policy), "--registry", emulator.endpoint, "--now", LATER, *extra]


def plan_json(
    emulator: Emulator, policy: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(plan_args(emulator, policy, "--format", "json", *extra), capsys)
    assert code in (0, 3), err
    return code, json.loads(out)


def save_plan(
    emulator: Emulator, policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> Path:
    saved = tmp_path / "plan.json"
    code, _, err = run_cli(
        plan_args(emulator, policy, "--save-plan", str(saved), "--out", os.devnull, *extra), capsys
    )
    assert code == 0, err
    return saved


def apply(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, dict[str, Any]], str]:
    report = tmp_path / "report.jsonl"
    code, _, err = run_cli(
        [
            "apply",
            "--registry",
            emulator.endpoint,
            "--now",
            LATER,
            *FAST,
            "--yes",
            "--report",
            str(report),
            *extra,
        ],
        capsys,
    )
    return code, records(report.read_text()) if report.exists() else {}, err


def deleted(plan: dict[str, Any]) -> set[str]:
    return {a["digest"] for a in plan["actions"] if a["op"] == "delete_manifest"}


# --- 1. a newly pushed index keeps the manifests it lists ----------------------------------------


@pytest.mark.usefixtures("credential")
@LISTINGS
def test_an_index_pushed_after_the_plan_keeps_the_manifests_it_lists(
    emulator: Emulator,
    client: ContainerRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    list_references: bool,
) -> None:
    """Plan: delete index old-1 with its children, and an untagged orphan. Someone then pushes a
    release index listing one child and the orphan: apply deletes neither, and says why."""
    emulator.list_references = list_references
    c1 = pushes.push_image(client, "app", salt="c1")
    c2 = pushes.push_image(client, "app", salt="c2", platform="linux/arm64")
    old = pushes.push_index(client, "app", [c1, c2], tag="old-1")
    o1 = pushes.push_image(client, "app", salt="o1")
    policy = write_policy(
        tmp_path,
        """
version: 1
rules:
  - {name: prune-old, action: delete, tags: ['old-.*'], older_than: 30d}
  - {name: prune-untagged, action: delete, tag_state: untagged, older_than: 1d}
""",
    )
    saved = save_plan(emulator, policy, tmp_path, capsys)
    assert deleted(json.loads(saved.read_text())) == {old, c1, c2, o1}
    release = pushes.push_index(client, "app", [c1, o1], tag="release-2026-12")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    after = state(emulator)
    assert set(after) == {c1, o1, release}
    assert set(after[release].references) == {c1, o1}
    assert (outcomes[old]["outcome"], outcomes[c2]["outcome"]) == ("done", "done")
    for digest in (c1, o1):
        assert outcomes[digest]["outcome"] == "drifted"
        assert f"child of {release}" in outcomes[digest]["detail"]
    assert "0 failed, 0 skipped" in err


# --- 2. the live plan knows every referrer, and so does apply ------------------------------------


def referrer_registry(client: ContainerRegistryClient) -> dict[str, str]:
    """pr-1 with a locked SBOM; pr-2 with an SBOM that is itself signed; pr-3 with a tagged SBOM;
    a release with an SBOM. Only tags name pull-request builds: a tag-only policy."""
    made = {"a1": pushes.push_image(client, "app", tag="pr-1", salt="1")}
    made["s1"] = pushes.push_referrer(client, "app", made["a1"], salt="s1")
    pushes.set_locks(client, "app", made["s1"], can_delete=False)
    made["a2"] = pushes.push_image(client, "app", tag="pr-2", salt="2")
    made["s2"] = pushes.push_referrer(client, "app", made["a2"], salt="s2")
    made["g2"] = pushes.push_referrer(client, "app", made["s2"], artifact_type=SIGNATURE, salt="g2")
    made["a3"] = pushes.push_image(client, "app", tag="pr-3", salt="3")
    made["s3"] = pushes.push_referrer(client, "app", made["a3"], tag="sbom-3", salt="s3")
    made["v1"] = pushes.push_image(client, "app", tag="v1", salt="v1")
    made["s4"] = pushes.push_referrer(client, "app", made["v1"], salt="s4")
    return made


@pytest.mark.usefixtures("credential")
@LISTINGS
def test_live_and_offline_plans_show_the_registry_cascade_and_apply_removes_only_that(
    emulator: Emulator,
    client: ContainerRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    list_references: bool,
) -> None:
    """A tag-only policy: the live plan reads every possible referrer anyway, so it equals the
    plan of a snapshot, counts what the registry deletes by itself against max_deletes, and keeps
    the subject of a locked SBOM; apply then removes exactly the planned manifests."""
    emulator.list_references = list_references
    made = referrer_registry(client)
    limited = write_policy(tmp_path, PRUNE_PR + "settings: {max_deletes: 2}\n", "limited.yaml")

    code, live = plan_json(emulator, limited, capsys)
    snapshot = tmp_path / "snapshot.json"
    assert run_cli(["snapshot", "--registry", emulator.endpoint, "--out", str(snapshot)], capsys)[0] == 0
    offline_code, offline, _ = run_cli(
        ["plan", "--policy", str(limited), "--snapshot", str(snapshot), "--now", LATER, "--format", "json"],
        capsys,
    )

    assert (code, offline_code) == (3, 3)
    offline = json.loads(offline)
    for key in ("actions", "kept", "over_limit", "summary"):
        assert live[key] == offline[key], key
    gone = {made[k] for k in ("a2", "s2", "g2", "a3", "s3")}
    assert deleted(live) == gone
    cascades = {a["digest"]: a["reasons"] for a in live["actions"] if a["cascade_from"]}
    assert cascades == {
        made["s2"]: [f"registry cascade from {made['a2']}"],
        made["g2"]: [f"registry cascade from {made['s2']}"],
        made["s3"]: [f"registry cascade from {made['a3']}"],
    }
    kept = {k["digest"]: k["reasons"] for k in live["kept"]}
    assert kept[made["a1"]] == [
        "saved-from:prune-pr",
        f"keeps referrer {made['s1']}: the registry deletes referrers with their subject",
    ]

    # Over the limit, apply executes nothing.
    before = emulator.dump()
    code, _, err = apply(emulator, tmp_path, capsys, "--policy", str(limited))
    assert code == 3, err
    assert emulator.dump() == before

    unlimited = write_policy(tmp_path, PRUNE_PR)
    code, outcomes, err = apply(emulator, tmp_path, capsys, "--policy", str(unlimited))
    assert code == 0, err
    assert set(state(emulator)) == set(made.values()) - gone
    assert state(emulator)[made["s1"]].can_delete is False
    assert {outcomes[d]["outcome"] for d in gone} <= {"done", "already-gone"}


@pytest.mark.usefixtures("credential")
def test_a_referrer_pushed_after_the_plan_holds_its_subject(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting the subject would make the registry delete an SBOM that no plan showed: the
    subject stays, and the rest of the plan runs."""
    a1 = pushes.push_image(client, "app", tag="pr-1", salt="1")
    a2 = pushes.push_image(client, "app", tag="pr-2", salt="2")
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    sbom = pushes.push_referrer(client, "app", a1, salt="late")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert set(state(emulator)) == {a1, sbom}
    assert outcomes[a1]["outcome"] == "drifted"
    assert outcomes[a1]["detail"] == (
        f"its referrer {sbom} stays, and the registry deletes referrers with their subject"
    )
    assert outcomes[a2]["outcome"] == "done"


# --- 3. an unlock is always put back or completed ------------------------------------------------

INCLUDE_LOCKED = PRUNE_PR + "settings: {include_locked: true}\n"


def locked_image(client: ContainerRegistryClient) -> str:
    """pr-1, locked on the manifest (both flags) and on its tag (delete)."""
    digest = pushes.push_image(client, "app", tag="pr-1", salt="locked")
    pushes.push_image(client, "app", tag="v1", salt="stays")  # so the repository outlives the delete
    pushes.set_locks(client, "app", digest, can_delete=False, can_write=False)
    pushes.set_tag_locks(client, "app", "pr-1", can_delete=False)
    return digest


def locks(emulator: Emulator, digest: str) -> tuple[bool, bool, bool]:
    manifest = state(emulator)[digest]
    tag = next(t for t in manifest.tags if t.name == "pr-1")
    return manifest.can_delete, manifest.can_write, tag.can_delete


@pytest.mark.usefixtures("credential")
def test_an_unlock_is_put_back_when_the_delete_is_refused(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An identity that may change attributes but not delete: the unlock goes through, the DELETE
    is refused (403), and the locks are back as they were before the run ends (exit 1)."""
    emulator.auth.strict_identities = True
    emulator.add_identity(ADMIN, roles=EVERY_ROLE)
    emulator.add_identity("aad-token", roles=EVERY_ROLE - {"delete"})
    digest = locked_image(client)

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
    )

    assert code == 1
    assert "access denied" in err
    assert locks(emulator, digest) == (False, False, False)
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"].endswith("; the locks it had were restored")


def run_apply_in_a_process(emulator: Emulator, saved: Path, report: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "retention",
        "apply",
        "--registry",
        emulator.endpoint,
        "--plan",
        str(saved),
    ]
    command += [*FAST, "--yes", "--report", str(report)]
    environment = {
        **os.environ,
        registry.ACCESS_TOKEN_VARIABLE: "aad-token",
        "SSL_CERT_FILE": emulator.ca_file,
    }
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, text=True
    )


def killed_between_unlock_and_delete(emulator: Emulator, saved: Path, digest: str, tmp_path: Path) -> None:
    """`apply --plan` in a process of its own, killed with SIGKILL while its DELETE is held."""
    held = emulator.faults.hold(method="DELETE", path_contains=digest.split(":")[1], seconds=30)
    job = run_apply_in_a_process(emulator, saved, tmp_path / "first.jsonl")
    assert held.arrived.wait(30), job.communicate(timeout=5)[1]
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=10)
    emulator.faults.reset()


@pytest.mark.usefixtures("credential")
def test_kill_9_between_unlock_and_delete_then_the_same_plan_completes_the_delete(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL while the DELETE is in flight leaves the image unlocked; applying the same saved plan
    again recognises that unlock as its own step and completes the delete."""
    digest = locked_image(client)
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    killed_between_unlock_and_delete(emulator, saved, digest, tmp_path)
    assert locks(emulator, digest) == (True, True, True)  # unlocked, not deleted

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert digest not in state(emulator)
    assert outcomes[digest]["outcome"] == "done"


@pytest.mark.usefixtures("credential")
def test_after_kill_9_a_rerun_that_cannot_delete_puts_the_planned_locks_back(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rerun of the plan cannot complete the delete (403): the locks the plan saw go back."""
    digest = locked_image(client)
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    killed_between_unlock_and_delete(emulator, saved, digest, tmp_path)
    emulator.auth.strict_identities = True
    emulator.add_identity("aad-token", roles=EVERY_ROLE - {"delete"})

    code, outcomes, _ = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1
    assert locks(emulator, digest) == (False, False, False)
    assert outcomes[digest]["error"].endswith("; the locks it had were restored")


@pytest.mark.usefixtures("credential")
def test_sigterm_between_unlock_and_delete_completes_the_delete(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CronJob deadline arrives while the DELETE is in flight: the step finishes (exit 143), it
    does not leave an unlocked image behind."""
    digest = locked_image(client)
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    held = emulator.faults.hold(method="DELETE", path_contains=digest.split(":")[1], seconds=1.5)
    report = tmp_path / "first.jsonl"
    job = run_apply_in_a_process(emulator, saved, report)
    assert held.arrived.wait(30), job.communicate(timeout=5)[1]
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)

    assert job.returncode == 143, err
    assert digest not in state(emulator)
    assert records(report.read_text())[digest]["outcome"] == "done"


# --- 4. --repository narrows a saved plan --------------------------------------------------------


@pytest.mark.usefixtures("credential")
def test_apply_plan_with_repository_runs_only_those_repositories(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed_file("examples/snapshot.json", content_addressed=True)
    saved = save_plan(emulator, Path("policies/combined"), tmp_path, capsys)
    planned = json.loads(saved.read_text())["actions"]
    assert {a["repository"] for a in planned} > {"sandbox/alice/scratch"}
    before = emulator.dump()

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--plan", str(saved), "--repository", "sandbox/**"
    )

    assert code == 0, err
    assert {r["repository"] for r in outcomes.values()} == {"sandbox/alice/scratch"}
    assert len(outcomes) == sum(a["repository"] == "sandbox/alice/scratch" for a in planned)
    after = {r.name: r for r in emulator.dump().repositories}
    for repository in before.repositories:
        if repository.name != "sandbox/alice/scratch":
            assert after[repository.name] == repository


# --- 5. plans that cannot vouch for their age, or their policy -----------------------------------


def reseal(path: Path, edit: Any) -> None:
    """Edit a saved plan and seal it again, as someone with write access to the file could."""
    text = path.read_text()
    body = text[: text.index(SEAL_PREFIX)]
    body = edit(body)
    path.write_text(f'{body}{SEAL_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}"\n}}\n')


@pytest.mark.usefixtures("credential")
def test_a_plan_from_the_future_is_refused(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan whose inventory was taken after now (beyond 5 minutes of clock skew) is refused,
    whatever --max-plan-age says; 4 minutes ahead is a clock, not a forgery."""
    a1 = pushes.push_image(client, "app", tag="pr-1")
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    taken = json.loads(saved.read_text())["taken_at"]
    ahead = format_time(datetime.now(UTC) + timedelta(hours=3))
    reseal(saved, lambda body: body.replace(f'"taken_at": "{taken}"', f'"taken_at": "{ahead}"'))

    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--max-plan-age", "1s")

    assert code == 1
    assert f"the plan's inventory was taken {ahead}, in the future" in err
    assert a1 in state(emulator)
    slightly = format_time(datetime.now(UTC) + timedelta(minutes=4))
    reseal(saved, lambda body: body.replace(f'"taken_at": "{ahead}"', f'"taken_at": "{slightly}"'))
    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--max-plan-age", "1s")
    assert code == 0, err
    assert a1 not in state(emulator)


@pytest.mark.usefixtures("credential")
def test_a_plan_made_from_a_snapshot_needs_allow_snapshot_plan(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot's taken_at is whatever the file says: such a plan is refused unless the operator
    says so, and then it still runs only what a fresh look at the registry agrees with."""
    a1 = pushes.push_image(client, "app", tag="pr-1", salt="1")
    a2 = pushes.push_image(client, "app", tag="pr-2", salt="2")
    snapshot = tmp_path / "snapshot.json"
    assert run_cli(["snapshot", "--registry", emulator.endpoint, "--out", str(snapshot)], capsys)[0] == 0
    saved = tmp_path / "offline.json"
    policy = write_policy(tmp_path, PRUNE_PR)
    argv = ["plan", "--policy", str(policy), "--snapshot", str(snapshot), "--now", LATER]
    assert run_cli([*argv, "--save-plan", str(saved), "--out", os.devnull], capsys)[0] == 0
    pushes.add_tag(client, "app", a2, "keep-me")

    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))
    assert code == 1
    assert "the plan was made from a snapshot file" in err
    assert set(state(emulator)) == {a1, a2}

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--allow-snapshot-plan")
    assert code == 0, err
    assert set(state(emulator)) == {a2}
    assert outcomes[a2]["outcome"] == "drifted"


@pytest.mark.usefixtures("credential")
def test_policy_beside_a_saved_plan_must_be_its_own(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a1 = pushes.push_image(client, "app", tag="pr-1")
    policy = write_policy(tmp_path, PRUNE_PR)
    saved = save_plan(emulator, policy, tmp_path, capsys)
    other = write_policy(tmp_path, PRUNE_PR.replace("30d", "60d"), "other.yaml")

    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--policy", str(other))
    assert code == 1
    assert re.search(
        r"--policy is not the policy the plan was made with \(the plan's [0-9a-f]{12}, --policy", err
    )
    assert a1 in state(emulator)

    # The same policy, in another file and layout, is the same policy.
    same = write_policy(
        tmp_path, "# reformatted\n" + PRUNE_PR.replace("{name: prune-pr, ", "{ name: prune-pr, "), "same.yaml"
    )
    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--policy", str(same))
    assert code == 0, err
    assert a1 not in state(emulator)


# --- signed plans ---------------------------------------------------------------------------------

KEY = "k" * 40


@pytest.mark.usefixtures("credential")
def test_signed_plans_from_ci_to_the_cluster(
    emulator: Emulator,
    client: ContainerRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ACR_RETENTION_PLAN_KEY set, plans are signed and apply --plan takes only those signed
    with the same key: not an unsigned plan, not another key's, not one edited and resealed."""
    a1 = pushes.push_image(client, "app", tag="pr-1")
    policy = write_policy(tmp_path, PRUNE_PR)
    unsigned = save_plan(emulator, policy, tmp_path, capsys)
    unsigned = unsigned.rename(tmp_path / "unsigned.json")
    monkeypatch.setenv(PLAN_KEY_VARIABLE, KEY)
    signed = save_plan(emulator, policy, tmp_path, capsys)
    assert SIGNATURE_PREFIX in signed.read_text()

    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(unsigned))
    assert code == 1
    assert "the plan is not signed, and $ACR_RETENTION_PLAN_KEY is set" in err

    monkeypatch.setenv(PLAN_KEY_VARIABLE, "x" * 40)
    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(signed))
    assert code == 1
    assert "the plan's signature does not match $ACR_RETENTION_PLAN_KEY" in err

    monkeypatch.setenv(PLAN_KEY_VARIABLE, KEY)
    forged = tmp_path / "forged.json"
    forged.write_text(signed.read_text())
    text = forged.read_text()
    signature = text[text.index(SIGNATURE_PREFIX) :]
    body = text[: text.index(SEAL_PREFIX)].replace('"max_deletes": null', '"max_deletes": 1000')
    forged.write_text(f'{body}{SEAL_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}"{signature}')
    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(forged))
    assert code == 1
    assert "signature does not match" in err
    assert a1 in state(emulator)

    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(signed))
    assert code == 0, err
    assert a1 not in state(emulator)

    monkeypatch.setenv(PLAN_KEY_VARIABLE, "short")
    code, _, err = apply(emulator, tmp_path, capsys, "--plan", str(signed))
    assert code == 2
    assert "$ACR_RETENTION_PLAN_KEY is shorter than 32 characters" in err
