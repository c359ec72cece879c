"""Untag rules through apply (policy.md §5a): the real SDK over HTTPS against the emulator, the
registry built and changed with tests/pushes.py, its state asserted afterwards."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests import pushes
from tests.test_apply_failures import INTERNAL_ERROR
from tests.test_apply_paths import apply_with_ctrl_c
from tests.test_apply_safety import apply, client, save_plan, state, write_policy

if TYPE_CHECKING:
    from pathlib import Path

    from azure.containerregistry import ContainerRegistryClient

    from tests.emulator import Emulator

__all__ = ["client"]  # the SDK fixture of test_apply_safety

POLICY = """
version: 1
rules:
  - {name: keep-releases, action: keep, tags: ['v\\d+']}
  - {name: untag-pr, action: untag, tags: ['pr-\\d+'], older_than: 14d}
  - {name: delete-untagged, action: delete, tag_state: untagged, older_than: 1d}
"""


def tags_of(emulator: Emulator) -> dict[str, set[str]]:
    return {digest: set(m.tag_names) for digest, m in state(emulator).items()}


def build(sdk: ContainerRegistryClient) -> dict[str, str]:
    """a1 [pr-1, v1] (keeps v1), a2 [pr-2] (left bare: deleted), a3 [pr-3, extra], a4 [pr-4, v4]."""
    made = {
        "a1": pushes.push_image(sdk, "app", tag="pr-1", salt="1"),
        "a2": pushes.push_image(sdk, "app", tag="pr-2", salt="2"),
        "a3": pushes.push_image(sdk, "app", tag="pr-3", salt="3"),
        "a4": pushes.push_image(sdk, "app", tag="pr-4", salt="4"),
    }
    pushes.add_tag(sdk, "app", made["a1"], "v1")
    pushes.add_tag(sdk, "app", made["a3"], "extra")
    pushes.add_tag(sdk, "app", made["a4"], "v4")
    return made


def planned(saved: Path) -> tuple[set[str], set[str]]:
    actions = json.loads(saved.read_text())["actions"]
    return (
        {a["digest"] for a in actions if a["op"] == "delete_manifest"},
        {f"{a['digest']}:{a['tag']}" for a in actions if a["op"] == "delete_tag"},
    )


@pytest.mark.usefixtures("credential")
def test_apply_removes_exactly_the_planned_tags_and_manifests(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = build(client)
    saved = save_plan(emulator, write_policy(tmp_path, POLICY), tmp_path, capsys)
    a1, a2, a3, a4 = (made[k] for k in ("a1", "a2", "a3", "a4"))
    assert planned(saved) == ({a2}, {f"{a1}:pr-1", f"{a3}:pr-3", f"{a4}:pr-4"})

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert tags_of(emulator) == {a1: {"v1"}, a3: {"extra"}, a4: {"v4"}}
    assert {
        f"{r['digest']}:{r['tag']}": r["outcome"] for r in outcomes.values() if r["op"] == "delete_tag"
    } == {
        f"{a1}:pr-1": "done",
        f"{a3}:pr-3": "done",
        f"{a4}:pr-4": "done",
    }
    assert (
        "Applied: 1 manifests deleted (≤ 139 B freed, upper bound), 3 tags removed, 0 property changes,"
        " 0 already gone, 0 drifted, 0 failed, 0 skipped; 0 throttled answers; "
    ) in err
    # A second run of the same policy has nothing left to do.
    saved_again = save_plan(emulator, write_policy(tmp_path, POLICY), tmp_path, capsys)
    assert planned(saved_again) == (set(), set())


@pytest.mark.usefixtures("credential")
def test_a_tag_moved_updated_or_locked_since_the_plan_stays(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pr-1 now names another image, pr-3 was moved away and back (updated), pr-4 was locked: all three
    stay, reported drifted; nothing the plan did not show is removed."""
    made = build(client)
    a1, a2, a3, a4 = (made[k] for k in ("a1", "a2", "a3", "a4"))
    saved = save_plan(emulator, write_policy(tmp_path, POLICY), tmp_path, capsys)
    other = pushes.push_image(client, "app", tag="pr-1", salt="moved")  # pr-1 moves to a new image
    # pr-3 moved away and back: the same image again, but the tag was updated since the plan.
    pushes.add_tag(client, "app", a2, "pr-3")
    pushes.add_tag(client, "app", a3, "pr-3")
    pushes.set_tag_locks(client, "app", "pr-4", can_delete=False)

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    after = tags_of(emulator)
    assert after[other] == {"pr-1"}
    assert after[a3] == {"pr-3", "extra"}
    assert after[a4] == {"pr-4", "v4"}
    assert a2 not in after  # its delete did not depend on anything that changed
    untags = {r["tag"]: r for r in outcomes.values() if r["op"] == "delete_tag"}
    assert {tag: r["outcome"] for tag, r in untags.items()} == {
        "pr-1": "drifted",
        "pr-3": "drifted",
        "pr-4": "drifted",
    }
    assert untags["pr-1"]["detail"] == f"the tag now names {other}, the plan saw {a1}"
    assert untags["pr-3"]["detail"].startswith("the tag was updated ")
    assert untags["pr-4"]["detail"] == "the tag was locked since the plan (delete_enabled false)"


@pytest.mark.usefixtures("credential")
def test_a_locked_tag_is_unlocked_removed_and_on_failure_locked_again(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """include_locked: pr-1 (write and delete disabled) is unlocked, then removed. pr-3's removal
    fails every time: its locks are put back, and the report says so."""
    made = build(client)
    a1, a3 = made["a1"], made["a3"]
    for tag in ("pr-1", "pr-3"):
        pushes.set_tag_locks(client, "app", tag, can_delete=False, can_write=False)
    policy = write_policy(tmp_path, POLICY + "settings: {include_locked: true}\n")
    saved = save_plan(emulator, policy, tmp_path, capsys)
    assert {f"{a1}:pr-1", f"{a3}:pr-3"} <= planned(saved)[1]
    emulator.faults.script(status=500, method="DELETE", path_contains="_tags/pr-3", times=50)

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1, err
    after = state(emulator)
    assert set(after[a1].tag_names) == {"v1"}
    pr3 = next(t for t in after[a3].tags if t.name == "pr-3")
    assert (pr3.can_delete, pr3.can_write) == (False, False)
    untags = {r["tag"]: r for r in outcomes.values() if r["op"] == "delete_tag"}
    assert untags["pr-1"]["outcome"] == "done"
    assert untags["pr-3"]["outcome"] == "failed"
    assert untags["pr-3"]["error"].endswith("; the locks it had were restored")


def tag_locks(emulator: Emulator, digest: str, name: str) -> tuple[bool, bool] | None:
    """(can_delete, can_write) of the tag, or None when it is gone."""
    tag = next((t for t in state(emulator)[digest].tags if t.name == name), None)
    return None if tag is None else (tag.can_delete, tag.can_write)


@pytest.mark.usefixtures("credential")
def test_ctrl_c_between_a_tags_unlock_and_its_removal_puts_its_locks_back(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """include_locked: SIGINT arrives while pr-1's unlock is in flight. The unlock finishes, the
    removal is not sent (nothing new after a signal), and the locks go back before the run ends.
    In this process, so that mutation testing sees it."""
    made = build(client)
    a1 = made["a1"]
    pushes.set_tag_locks(client, "app", "pr-1", can_delete=False, can_write=False)
    policy = write_policy(tmp_path, POLICY + "settings: {include_locked: true}\n")
    saved = save_plan(emulator, policy, tmp_path, capsys)
    held = emulator.faults.hold(method="PATCH", path_contains="_tags/pr-1", seconds=600)

    code, outcomes, err = apply_with_ctrl_c(
        held, emulator, tmp_path, capsys, "--plan", str(saved), "--concurrency", "1"
    )

    assert code == 130, err
    assert tag_locks(emulator, a1, "pr-1") == (False, False)
    record = outcomes[f"pr-1@{a1}"]
    assert (record["outcome"], record["detail"]) == (
        "skipped",
        "stopped by SIGINT before it was sent; the locks it had were restored",
    )


@pytest.mark.usefixtures("credential")
def test_a_rerun_that_cannot_remove_a_tag_an_earlier_run_unlocked_locks_it_again(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan saw pr-3 locked; a run killed after unlocking it left it open. The rerun of the
    same plan recognises that unlock as its own step, but the removal fails: the locks the plan
    saw go back, though this run opened nothing."""
    made = build(client)
    a3 = made["a3"]
    pushes.set_tag_locks(client, "app", "pr-3", can_delete=False, can_write=False)
    policy = write_policy(tmp_path, POLICY + "settings: {include_locked: true}\n")
    saved = save_plan(emulator, policy, tmp_path, capsys)
    pushes.set_tag_locks(client, "app", "pr-3", can_delete=True, can_write=True)  # the killed run's unlock
    emulator.faults.script(status=500, method="DELETE", path_contains="_tags/pr-3", times=50)

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1, err
    assert tag_locks(emulator, a3, "pr-3") == (False, False)
    record = outcomes[f"pr-3@{a3}"]
    assert record["outcome"] == "failed"
    assert record["error"].endswith("; the locks it had were restored")


@pytest.mark.usefixtures("credential")
def test_tag_locks_that_cannot_be_put_back_are_reported_and_logged(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pr-3's removal fails for good after its unlock, and so does putting its locks back (every
    PATCH after the unlock answers 500). The tag stays, unlocked, and the report's error and an
    error event say so, and why: an operator has to lock it again by hand."""
    made = build(client)
    a3 = made["a3"]
    pushes.set_tag_locks(client, "app", "pr-3", can_delete=False, can_write=False)
    policy = write_policy(tmp_path, POLICY + "settings: {include_locked: true}\n")
    saved = save_plan(emulator, policy, tmp_path, capsys)
    emulator.faults.script(
        status=500, method="DELETE", path_contains="_tags/pr-3", times=50, retry_after=0.001
    )
    emulator.faults.script(
        status=500, method="PATCH", path_contains="_tags/pr-3", skip=1, times=50, retry_after=0.001
    )

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1, err
    assert tag_locks(emulator, a3, "pr-3") == (True, True)
    record = outcomes[f"pr-3@{a3}"]
    assert record["outcome"] == "failed"
    assert record["error"] == f"{INTERNAL_ERROR}; its locks could not be restored ({INTERNAL_ERROR})"
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (event,) = [e for e in events if e["event"] == "lock_not_restored"]
    assert (event["level"], event["repository"], event["tag"]) == ("error", "app", "pr-3")
    assert event["errors"] == [INTERNAL_ERROR]
