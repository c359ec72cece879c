"""The executor's failure paths (issue 18): what a failed or stale step leaves in the registry.

Each test here was written against a one-line mutation of the executor that the rest of the suite
let through (docs/mutation-testing.md lists them); each fails with its mutation applied. As in
tests/test_apply_safety.py, everything goes through the real SDK over HTTPS against the emulator,
the registry is changed between plan and apply with tests/pushes.py, faults are scripted on the
emulator for one digest, and every test asserts the registry's state afterwards.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from azure.containerregistry import ContainerRegistryClient

from retention.timefmt import format_time
from tests import pushes
from tests.emulator import FakeCredential
from tests.test_apply_safety import (
    ADMIN,
    INCLUDE_LOCKED,
    PRUNE_PR,
    apply,
    locked_image,
    locks,
    save_plan,
    state,
    write_policy,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.emulator import Emulator

# How the SDK words a 500, as the report's error quotes it.
INTERNAL_ERROR = "500 Operation returned an invalid status 'Internal Server Error'"


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    """Someone else's SDK client: the colleague or pipeline that changes the registry meanwhile."""
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential(ADMIN), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


def fail_every_delete_of(emulator: Emulator, digest: str) -> None:
    """The registry answers 500 to every DELETE of `digest`: more answers than the executor makes
    attempts (Limits.attempts). The tiny Retry-After only makes it retry at once instead of
    backing off for seconds: a persistent failure is what is tried here, not the pacing."""
    # The digest's hex matches the path whichever way the client encodes the colon.
    emulator.faults.script(
        status=500, method="DELETE", path_contains=digest.split(":")[1], times=50, retry_after=0.001
    )


@pytest.mark.usefixtures("credential")
def test_a_manifest_pushed_again_after_the_plan_is_not_deleted(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pr-1 is deleted and pushed again, byte for byte, after the plan: same digest, same tags,
    nothing else in the repository changed, but its last update is new. The plan's evidence is
    stale: apply leaves it and says when it was updated."""
    a1 = pushes.push_image(client, "app", tag="pr-1", salt="1")
    a2 = pushes.push_image(client, "app", tag="pr-2", salt="2")
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    planned = state(emulator)[a1].updated_at
    client.delete_manifest("app", a1)
    assert pushes.push_image(client, "app", tag="pr-1", salt="1") == a1
    pushed_again = state(emulator)[a1].updated_at
    assert pushed_again > planned

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert set(state(emulator)) == {a1}
    assert outcomes[a1]["outcome"] == "drifted"
    assert outcomes[a1]["detail"] == (
        f"updated {format_time(pushed_again)} since the plan ({format_time(planned)})"
    )
    assert outcomes[a2]["outcome"] == "done"


PRUNE_OLD = """
version: 1
rules:
  - {name: prune-old, action: delete, tags: ['old-.*'], older_than: 30d}
"""


@pytest.mark.usefixtures("credential")
def test_the_children_of_an_index_whose_delete_failed_stay(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index old-1 cannot be deleted (the registry answers 500, every time): its children
    are not deleted either, so the index that stays is whole. Exit 1: something failed."""
    c1 = pushes.push_image(client, "app", salt="c1")
    c2 = pushes.push_image(client, "app", salt="c2", platform="linux/arm64")
    index = pushes.push_index(client, "app", [c1, c2], tag="old-1")
    fail_every_delete_of(emulator, index)

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, PRUNE_OLD))
    )

    assert code == 1, err
    assert set(state(emulator)) == {index, c1, c2}
    assert outcomes[index]["outcome"] == "failed"
    assert outcomes[index]["error"] == INTERNAL_ERROR
    for child in (c1, c2):
        assert outcomes[child]["outcome"] == "skipped"
        assert outcomes[child]["detail"] == f"parent {index} was not deleted (its delete failed)"
    # Every DELETE sent was the index's, and failed: none was sent for a child.
    assert emulator.counters.count("delete_manifest", status=500) == 6
    assert emulator.counters.count("delete_manifest", status=202) == 0
    assert "0 manifests deleted" in err
    assert "1 failed, 2 skipped" in err


LOCK_RELEASES = """
version: 1
rules:
  - {name: lock-releases, action: lock, tags: ['release-.*'], set: {delete_enabled: false}}
"""


@pytest.mark.usefixtures("credential")
def test_a_lock_planned_for_one_tag_set_does_not_land_on_another(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan locks the manifest tagged release-1. Someone then tags it hotfix too: a plan made
    now would lock it all the same, but the tags it was planned for are not the tags it has, so
    the manifest's lock is drift. The tag's own lock still holds for the same tag and runs."""
    digest = pushes.push_image(client, "app", tag="release-1")
    saved = save_plan(emulator, write_policy(tmp_path, LOCK_RELEASES), tmp_path, capsys)
    pushes.add_tag(client, "app", digest, "hotfix")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    manifest = state(emulator)[digest]
    assert manifest.can_delete is True
    assert {t.name: t.can_delete for t in manifest.tags} == {"hotfix": True, "release-1": False}
    assert outcomes[digest]["op"] == "set_manifest_properties"
    assert outcomes[digest]["outcome"] == "drifted"
    assert outcomes[digest]["detail"] == "tags are now ['hotfix', 'release-1']"
    assert outcomes[f"release-1@{digest}"]["outcome"] == "done"


@pytest.mark.usefixtures("credential")
def test_the_locks_go_back_when_the_delete_after_an_unlock_fails(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """include_locked: the unlock goes through, then the DELETE fails for good (500, not a
    refusal of the identity). Before the run ends the manifest and its tag are locked again, as
    they were; the report says so."""
    digest = locked_image(client)
    fail_every_delete_of(emulator, digest)
    emulator.counters.reset()  # count only what apply sends

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
    )

    assert code == 1, err
    assert digest in state(emulator)
    assert locks(emulator, digest) == (False, False, False)
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"] == INTERNAL_ERROR + "; the locks it had were restored"
    # Unlocked once (manifest, tag), locked again once (manifest, tag): nothing else was changed.
    assert emulator.counters.count("patch_manifest", status=200) == 2
    assert emulator.counters.count("patch_tag", status=200) == 2


@pytest.mark.usefixtures("credential")
def test_locks_that_cannot_be_put_back_are_reported_and_logged(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The DELETE after the unlock fails for good, and so does putting the locks back (the
    unlocks went through; every PATCH after them answers 500). The image stays, unlocked, and the
    report's error and an error event say which locks could not be restored, and why."""
    digest = locked_image(client)
    fail_every_delete_of(emulator, digest)
    for path in (digest.split(":")[1], "_tags/pr-1"):
        emulator.faults.script(
            status=500, method="PATCH", path_contains=path, skip=1, times=50, retry_after=0.001
        )

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
    )

    assert code == 1, err
    assert locks(emulator, digest) == (True, True, True)
    assert outcomes[digest]["outcome"] == "failed"
    failures = [f"manifest: {INTERNAL_ERROR}", f"tag pr-1: {INTERNAL_ERROR}"]
    assert outcomes[digest]["error"] == (
        f"{INTERNAL_ERROR}; its locks could not all be restored ({'; '.join(failures)})"
    )
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (event,) = [e for e in events if e["event"] == "lock_not_restored"]
    assert (event["level"], event["repository"], event["digest"]) == ("error", "app", digest)
    assert event["errors"] == failures


@pytest.mark.usefixtures("credential")
def test_a_tag_lock_is_set_on_its_own_tag_beside_a_locked_one(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """release-1 shares its manifest with the tag pinned, already delete-locked: locking release-1
    compares against release-1's own flags, not another tag's, and sends the change."""
    digest = pushes.push_image(client, "app", tag="release-1")
    pushes.add_tag(client, "app", digest, "pinned")
    pushes.set_tag_locks(client, "app", "pinned", can_delete=False)

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, LOCK_RELEASES))
    )

    assert code == 0, err
    manifest = state(emulator)[digest]
    assert {t.name: t.can_delete for t in manifest.tags} == {"pinned": False, "release-1": False}
    assert outcomes[f"release-1@{digest}"]["outcome"] == "done"
    assert outcomes[f"release-1@{digest}"]["detail"] is None


@pytest.mark.usefixtures("credential")
def test_a_lock_someone_else_set_meanwhile_is_not_sent_again(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Between plan and apply a colleague locks release-1's manifest by hand: the planned change
    is already made, so apply sends nothing for it and says so; the tag's lock is still sent."""
    digest = pushes.push_image(client, "app", tag="release-1")
    saved = save_plan(emulator, write_policy(tmp_path, LOCK_RELEASES), tmp_path, capsys)
    pushes.set_locks(client, "app", digest, can_delete=False)
    emulator.counters.reset()  # count only what apply sends

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    manifest = state(emulator)[digest]
    assert (manifest.can_delete, [t.can_delete for t in manifest.tags]) == (False, [False])
    assert outcomes[digest]["outcome"] == "done"
    assert outcomes[digest]["detail"] == "already as planned"
    assert emulator.counters.count("patch_manifest") == 0
    assert emulator.counters.count("patch_tag", status=200) == 1
    assert "0 manifests deleted (≤ 0 B freed, upper bound), 2 property changes" in err


@pytest.mark.usefixtures("credential")
def test_an_unlock_that_fails_half_way_deletes_nothing_and_relocks_only_what_it_opened(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest's unlock goes through, the tag's keeps failing (500): no DELETE is sent, the
    manifest is locked again, and the tag, never unlocked, is left alone."""
    digest = locked_image(client)
    emulator.faults.script(
        status=500, method="PATCH", path_contains="_tags/pr-1", times=50, retry_after=0.001
    )
    emulator.counters.reset()  # count only what apply sends

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
    )

    assert code == 1, err
    assert locks(emulator, digest) == (False, False, False)
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"] == INTERNAL_ERROR + "; the locks it had were restored"
    assert emulator.counters.count("delete_manifest") == 0
    assert emulator.counters.count("patch_manifest", status=200) == 2  # unlocked, locked again
    assert emulator.counters.count("patch_tag", status=500) == 6  # the unlock's attempts only
