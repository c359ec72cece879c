"""Undo (issue 14): apply with soft delete on, then `restore` from its report, through the real SDK
over HTTPS against the emulator; every test asserts exact outcomes and the registry's state."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from azure.containerregistry import ContainerRegistryClient

from retention.timefmt import parse_time
from tests import pushes
from tests.conftest import run_cli
from tests.emulator import FakeCredential
from tests.test_apply_safety import ADMIN, LATER, apply, state, write_policy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.emulator import Emulator

POLICY = """
version: 1
settings: {include_locked: true}
rules:
  - {name: untag-pr, action: untag, tags: ['pr-\\d+'], older_than: 30d}
  - {name: drop-old, action: delete, tags: ['old-.*'], older_than: 30d}
"""
RESOURCE = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/emulator"


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    """Someone else's SDK client, building the registry and changing it between runs."""
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential(ADMIN), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


def arm(emulator: Emulator) -> list[str]:
    return ["--registry-resource-id", RESOURCE, "--arm-endpoint", emulator.endpoint]


def build(client: ContainerRegistryClient) -> dict[str, str]:
    """One repository with everything a restore must put back in order."""
    d: dict[str, str] = {}
    d["a"] = pushes.push_image(client, "app", tag="old-a", salt="a")
    pushes.add_tag(client, "app", d["a"], "old-a2")
    pushes.set_locks(client, "app", d["a"], can_delete=False)  # locked: apply unlocks, restore relocks
    pushes.set_tag_locks(client, "app", "old-a2", can_write=False)
    d["c1"] = pushes.push_image(client, "app", salt="c", platform="linux/amd64")
    d["c2"] = pushes.push_image(client, "app", salt="c", platform="linux/arm64")
    d["index"] = pushes.push_index(client, "app", [d["c1"], d["c2"]], tag="old-multi")
    d["b"] = pushes.push_image(client, "app", tag="old-b", salt="b")
    d["sbom"] = pushes.push_referrer(client, "app", d["b"], salt="sbom")
    # cosign's tag scheme: a signature named after its subject's digest.
    d["sig"] = pushes.push_image(client, "app", tag=d["b"].replace(":", "-") + ".sig", salt="sig")
    d["x"] = pushes.push_image(client, "app", tag="pr-1", salt="x")
    pushes.add_tag(client, "app", d["x"], "keep-x")
    d["keep"] = pushes.push_image(client, "app", tag="v1", salt="keep")
    return d


def restore(
    emulator: Emulator, report: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[dict[str, Any]], str, str]:
    code, out, err = run_cli(
        ["restore", "--report", str(report), "--registry", emulator.endpoint, "--yes", *extra], capsys
    )
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, records, out, err


def outcomes(records: list[dict[str, Any]]) -> dict[tuple[str, str | None], str]:
    return {(r["digest"], r["tag"]): r["outcome"] for r in records if r["op"].startswith("restore")}


@pytest.fixture
def applied(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, str], Any, Path]:
    """Soft delete on (7 days); the registry built, the policy applied; (digests, state before, report)."""
    emulator.soft_delete_days = 7
    d = build(client)
    before = emulator.dump()
    policy = write_policy(tmp_path, POLICY)
    # The plan itself says until when its deletions can be undone: the text and the JSON header.
    plan_args = [
        "plan",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
        "--now",
        LATER,
        *arm(emulator),
    ]
    code, out, err = run_cli(plan_args, capsys)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("Deletions are recoverable until ")]
    assert line.endswith("(soft delete on, 7 days): acr-retention restore --report FILE brings them back.")
    recovery = json.loads(run_cli([*plan_args, "-o", "json"], capsys)[1])["recovery"]
    assert (recovery["soft_delete"], recovery["retention_days"]) == ("on", 7)
    assert parse_time(recovery["recoverable_until"]) - parse_time(LATER) == timedelta(days=7)
    code, records, err = apply(emulator, tmp_path, capsys, "--policy", str(policy), *arm(emulator))
    assert code == 0, err
    gone = {d[k] for k in ("a", "c1", "c2", "index", "b", "sbom", "sig")}
    assert set(state(emulator)) == {d["x"], d["keep"]}
    assert {k for k, r in records.items() if r["op"] == "delete_manifest"} == gone
    assert "Deletions are recoverable until" in err
    assert "(soft delete on, 7 days)" in err
    report = tmp_path / "report.jsonl"
    for line in report.read_text().splitlines():
        record = json.loads(line)
        if record["op"] in ("delete_manifest", "delete_tag"):
            assert record["recoverable_until"] is not None
    return d, before, report


@pytest.mark.usefixtures("credential")
def test_restore_brings_back_exactly_what_apply_deleted(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, before, report = applied
    code, records, out, err = restore(emulator, report, capsys)
    assert code == 0, err
    assert emulator.dump() == before  # tags, locks, indexes, referrers, signatures, times
    done = outcomes(records)
    assert set(done.values()) == {"done"}
    assert done[(d["a"], "old-a")] == done[(d["a"], "old-a2")] == "done"
    assert done[(d["x"], "pr-1")] == "done"  # the untag, undone
    assert (d["sbom"], None) in done  # deleted by the registry with its subject, and back
    order = [r["digest"] for r in records if r["op"] == "restore_manifest"]
    assert order.index(d["c1"]) < order.index(d["index"])
    assert order.index(d["c2"]) < order.index(d["index"])
    assert order.index(d["b"]) < order.index(d["sbom"])
    relocked = {(r["op"], r["tag"]) for r in records if r["op"].startswith("set_")}
    assert relocked == {("set_manifest_properties", None), ("set_tag_properties", "old-a2")}
    assert "Restore: 7 manifests, 6 tags." in out
    # Run again: everything is already back, nothing changes, exit 0.
    code, records, _, err = restore(emulator, report, capsys)
    assert code == 0, err
    assert {r["outcome"] for r in records if r["op"].startswith("restore")} == {"already-restored"}
    assert emulator.dump() == before


@pytest.mark.usefixtures("credential")
def test_partial_restore_takes_what_the_digest_needs(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, report = applied
    code, records, _, err = restore(emulator, report, capsys, "--digest", d["index"], "--digest", d["sbom"])
    assert code == 0, err
    assert set(state(emulator)) == {d["x"], d["keep"], d["c1"], d["c2"], d["index"], d["b"], d["sbom"]}
    assert {r["digest"] for r in records} == {d["c1"], d["c2"], d["index"], d["b"], d["sbom"]}
    assert state(emulator)[d["b"]].tag_names == ("old-b",)
    code, _, _, err = restore(emulator, report, capsys, "--digest", "sha256:" + "0" * 64)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("acr-retention: error: --digest sha256:000")


@pytest.mark.usefixtures("credential")
def test_expired_items_are_reported_not_restored(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, report = applied
    emulator.soft_delete_time_scale = 7 * 86400 * 1000  # 7 days pass in 1 ms
    code, records, _, err = restore(emulator, report, capsys)
    assert code == 1
    assert set(state(emulator)) == {d["x"], d["keep"]}
    manifests = {r["digest"]: r["outcome"] for r in records if r["op"] == "restore_manifest"}
    assert (
        manifests[d["a"]]
        == manifests[d["b"]]
        == manifests[d["c1"]]
        == manifests[d["sig"]]
        == "not-restorable"
    )
    # What needs a purged item is skipped, with the reason; the untag's tag is gone for good too.
    assert manifests[d["index"]] == manifests[d["sbom"]] == "skipped"
    assert outcomes(records)[(d["x"], "pr-1")] == "not-restorable"
    assert "7 not-restorable" in err or "not-restorable" in err


@pytest.mark.usefixtures("credential")
def test_a_tag_now_elsewhere_is_a_conflict_unless_forced(
    emulator: Emulator,
    client: ContainerRegistryClient,
    applied: tuple[dict[str, str], Any, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, _, report = applied
    newer = pushes.push_image(client, "app", tag="old-b", salt="newer")
    code, records, _, err = restore(emulator, report, capsys, "--digest", d["b"])
    assert code == 1
    assert outcomes(records) == {(d["b"], "old-b"): "conflict", (d["b"], None): "done"}
    assert state(emulator)[d["b"]].tag_names == ()
    assert state(emulator)[newer].tag_names == ("old-b",)
    assert "--force takes them back" in err
    code, records, _, err = restore(emulator, report, capsys, "--digest", d["b"], "--force")
    assert code == 0, err
    assert outcomes(records) == {(d["b"], "old-b"): "done"}
    assert state(emulator)[d["b"]].tag_names == ("old-b",)
    assert state(emulator)[newer].tag_names == ()


@pytest.mark.usefixtures("credential")
def test_a_read_only_identity_cannot_restore(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, report = applied
    emulator.add_identity("aad-token", roles={"metadata_read", "pull", "catalog", "deleted_read"})
    code, records, _, err = restore(emulator, report, capsys)
    assert code == 1
    assert set(state(emulator)) == {d["x"], d["keep"]}
    assert "access denied" in err.splitlines()[-1]
    assert {r["outcome"] for r in records} == {"skipped"}


@pytest.mark.usefixtures("credential")
def test_soft_delete_off_says_permanent_everywhere(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = build(client)
    policy = write_policy(tmp_path, POLICY)
    code, _, err = apply(emulator, tmp_path, capsys, "--policy", str(policy), *arm(emulator))
    assert code == 0, err
    assert "Deletions are permanent: soft delete is off on this registry." in err
    report = tmp_path / "report.jsonl"
    deletes = [json.loads(x) for x in report.read_text().splitlines()]
    assert {r["recoverable_until"] for r in deletes if r["op"].startswith("delete")} == {None}
    code, records, _, _ = restore(emulator, report, capsys)
    assert code == 1
    assert {r["outcome"] for r in records if r["op"] == "restore_manifest"} <= {"not-restorable", "skipped"}
    assert set(state(emulator)) == {d["x"], d["keep"]}
    # The plan says it too: in its text (under the summary) and its JSON header.
    pushes.push_image(client, "app", tag="old-77", salt="again")  # something for the plan to delete
    later = "2099-01-01T00:00:00Z"
    plan_args = [
        "plan",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
        "--now",
        later,
        *arm(emulator),
    ]
    code, out, err = run_cli(plan_args, capsys)
    assert code == 0, err
    assert "Deletions are permanent: soft delete is off on this registry." in out.splitlines()
    code, out, err = run_cli([*plan_args, "-o", "json"], capsys)
    assert json.loads(out)["recovery"] == {
        "soft_delete": "off",
        "retention_days": 7,
        "recoverable_until": None,
    }


@pytest.mark.usefixtures("credential")
def test_require_soft_delete_refuses_unless_known_on(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = build(client)
    before = emulator.dump()
    policy = write_policy(
        tmp_path, POLICY.replace("include_locked: true", "include_locked: true, require_soft_delete: true")
    )
    code, _, err = apply(emulator, tmp_path, capsys, "--policy", str(policy))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "acr-retention: error: the policy requires soft delete (settings.require_soft_delete), and it is not"
        " known to be on: no --registry-resource-id given; nothing was changed"
    )
    code, _, err = apply(emulator, tmp_path, capsys, "--policy", str(policy), *arm(emulator))
    assert code == 1
    assert "and it is off; nothing was changed" in err
    assert emulator.dump() == before
    emulator.soft_delete_days = 3
    code, _, err = apply(emulator, tmp_path, capsys, "--policy", str(policy), *arm(emulator))
    assert code == 0, err
    assert "(soft delete on, 3 days)" in err
    assert set(state(emulator)) == {d["x"], d["keep"]}


@pytest.mark.usefixtures("credential")
def test_deleted_lists_what_soft_delete_keeps(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, _ = applied
    code, out, err = run_cli(
        ["deleted", "--registry", emulator.endpoint, "--format", "json", *arm(emulator)], capsys
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["soft_delete"] == {"state": "on", "retention_days": 7}
    manifests = {m["digest"]: m for m in document["manifests"]}
    assert set(manifests) == {d[k] for k in ("a", "c1", "c2", "index", "b", "sbom", "sig")}
    assert manifests[d["a"]]["tags"] == ["old-a", "old-a2"]
    assert all(m["expires_at"] is not None for m in manifests.values())
    assert [(t["tag"], t["digest"]) for t in document["tags"] if t["digest"] == d["x"]] == [("pr-1", d["x"])]
    code, out, err = run_cli(["deleted", "--registry", emulator.endpoint, "--repository", "other"], capsys)
    assert code == 0, err
    assert out == "0 manifests, 0 tags, 0 repositories soft-deleted (soft delete: unknown).\n"


@pytest.mark.usefixtures("credential")
def test_restore_refuses_without_yes_off_a_terminal(
    emulator: Emulator, applied: tuple[dict[str, str], Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, report = applied
    code, _, err = run_cli(["restore", "--report", str(report), "--registry", emulator.endpoint], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "acr-retention: error: refusing to restore without --yes: standard input is not a terminal"
    )
    assert set(state(emulator)) == {d["x"], d["keep"]}


def test_a_report_that_is_not_one_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "delete_manifest"}\nnot json\n')
    code, _, err = run_cli(["restore", "--report", str(bad), "--registry", "r.azurecr.io", "--yes"], capsys)
    assert code == 1
    assert err == f"acr-retention: error: {bad}:2: not a JSON line of an apply report\n"
