"""Executor paths between a listing and the registry's answer (issue 18's mutation testing).

Each test here kills mutants of retention/executor/ that the suite let through: the report's
documented record, a referrer the registry deleted with its subject, and a manifest or tag that
someone else deletes while apply is unlocking it. Someone else's change lands at a known point:
the emulator holds apply's request, the colleague acts, and only then is the request served.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from retention.timefmt import parse_time
from tests import pushes
from tests.test_apply_failures import INTERNAL_ERROR, LOCK_RELEASES, client
from tests.test_apply_safety import (
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
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from azure.containerregistry import ContainerRegistryClient

    from tests.emulator import Emulator
    from tests.emulator.faults import Held

__all__ = ["client"]  # the fixture, shared with tests/test_apply_failures.py

LOCK_V = (
    "  - {name: lock-v, action: lock, tags: ['v.*'], set: {write_enabled: false, delete_enabled: false}}\n"
)


@contextmanager
def meanwhile(held: Held, act: Callable[[], None]) -> Iterator[None]:
    """Around an apply: once `held` holds apply's request, someone else does `act`, and then the
    request is served. An error in `act` fails the test after the apply."""
    errors: list[BaseException] = []

    def colleague() -> None:
        try:
            if held.arrived.wait(60):
                act()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            errors.append(exc)
        finally:
            held.serve()

    thread = threading.Thread(target=colleague)
    thread.start()
    try:
        yield
    finally:
        held.serve()
        thread.join(60)
    assert held.arrived.is_set(), "apply never sent the held request"
    if errors:
        raise errors[0]


@pytest.mark.usefixtures("credential")
def test_the_report_has_the_documented_record_for_each_kind_of_action(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A locked pr-1 unlocked and deleted, its SBOM gone with it (no request sent for it), and v1
    locked on the manifest and the tag: one line each, with exactly the README's keys."""
    pr1 = pushes.push_image(client, "app", tag="pr-1", salt="1")
    sbom = pushes.push_referrer(client, "app", pr1, salt="s1")
    v1 = pushes.push_image(client, "app", tag="v1", salt="v1")
    pushes.set_locks(client, "app", pr1, can_delete=False)
    size = state(emulator)[pr1].size_bytes
    emulator.counters.reset()  # count only what apply sends
    started = datetime.now(UTC)

    code, outcomes, err = apply(
        emulator,
        tmp_path,
        capsys,
        "--policy",
        str(write_policy(tmp_path, PRUNE_PR + LOCK_V + "settings: {include_locked: true}\n")),
    )

    assert code == 0, err
    assert set(state(emulator)) == {v1}
    for record in outcomes.values():
        assert started <= parse_time(record.pop("time")) <= datetime.now(UTC) + timedelta(seconds=1)
    locked_v1 = {"write_enabled": False, "delete_enabled": False}
    assert outcomes == {
        pr1: {
            "outcome": "done",
            "op": "delete_manifest",
            "repository": "app",
            "digest": pr1,
            "tags": ["pr-1"],
            "unlock_first": True,
            "cascade_from": None,
            "reasons": ["delete:prune-pr"],
            "size_bytes": size,
            "detail": None,
            # What `restore` needs (issue 14): parents, the locks opened, until when it is recoverable.
            "after": [],
            "locked": {"manifest": ["delete_enabled"]},
            "recoverable_until": None,
        },
        sbom: {
            "outcome": "already-gone",
            "op": "delete_manifest",
            "repository": "app",
            "digest": sbom,
            "tags": [],
            "unlock_first": False,
            "cascade_from": pr1,
            "reasons": [f"registry cascade from {pr1}"],
            "size_bytes": 0,
            "detail": "deleted by the registry with its subject",
            "after": [pr1],
            "subject": pr1,
            "recoverable_until": None,
        },
        v1: {
            "outcome": "done",
            "op": "set_manifest_properties",
            "repository": "app",
            "digest": v1,
            "tags": ["v1"],
            "set": locked_v1,
            "reasons": ["lock:lock-v"],
            "size_bytes": None,
            "detail": None,
        },
        f"v1@{v1}": {
            "outcome": "done",
            "op": "set_tag_properties",
            "repository": "app",
            "digest": v1,
            "tag": "v1",
            "set": locked_v1,
            "reasons": ["lock:lock-v"],
            "size_bytes": None,
            "detail": None,
        },
    }
    assert emulator.counters.count("delete_manifest", status=202) == 1  # pr-1's; none for the SBOM


@pytest.mark.usefixtures("credential")
def test_an_index_deleted_by_someone_else_during_its_unlock_is_gone_and_its_children_follow(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While apply's unlock of the locked index pr-1 is held, a colleague unlocks and deletes it.
    The unlock answers 404: the index is already gone (no DELETE sent for it), and its children,
    which nothing lists any more, are deleted as planned."""
    c1 = pushes.push_image(client, "app", salt="c1")
    c2 = pushes.push_image(client, "app", salt="c2", platform="linux/arm64")
    index = pushes.push_index(client, "app", [c1, c2], tag="pr-1")
    v1 = pushes.push_image(client, "app", tag="v1", salt="v1")
    pushes.set_locks(client, "app", index, can_delete=False)
    held = emulator.faults.hold(method="PATCH", path_contains=index.split(":")[1], seconds=600)

    def colleague() -> None:
        pushes.set_locks(client, "app", index, can_delete=True)
        client.delete_manifest("app", index)

    with meanwhile(held, colleague):
        code, outcomes, err = apply(
            emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
        )

    assert code == 0, err
    assert set(state(emulator)) == {v1}
    assert outcomes[index]["outcome"] == "already-gone"
    assert (outcomes[c1]["outcome"], outcomes[c2]["outcome"]) == ("done", "done")
    assert emulator.counters.count("delete_manifest", status=202) == 3  # the colleague's, c1's, c2's
    assert emulator.counters.count("delete_manifest", status=404) == 0


@pytest.mark.usefixtures("credential")
def test_a_tag_deleted_by_someone_else_during_the_unlock_stops_the_delete(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest is unlocked; while the unlock of its tag pr-1 is held, a colleague deletes
    the tag. The image is no longer the one planned: no DELETE is sent, the manifest's locks go
    back, and the failure names the tag."""
    digest = locked_image(client)
    held = emulator.faults.hold(method="PATCH", path_contains="_tags/pr-1", seconds=600)

    def colleague() -> None:
        pushes.set_tag_locks(client, "app", "pr-1", can_delete=True)
        client.delete_tag("app", "pr-1")

    emulator.counters.reset()
    with meanwhile(held, colleague):
        code, outcomes, err = apply(
            emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, INCLUDE_LOCKED))
        )

    assert code == 1, err
    manifest = state(emulator)[digest]
    assert (manifest.can_delete, manifest.can_write, manifest.tags) == (False, False, ())
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"] == (
        "tag pr-1 vanished before it could be unlocked; the locks it had were restored"
    )
    assert emulator.counters.count("delete_manifest", status=202) == 0


@pytest.mark.usefixtures("credential")
def test_a_property_change_the_registry_keeps_failing_is_reported(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every PATCH of release-1's manifest answers 500: that change is `failed` with the
    registry's answer and the run exits 1; the tag's lock, another request, is still made."""
    digest = pushes.push_image(client, "app", tag="release-1")
    emulator.faults.script(
        status=500, method="PATCH", path_contains=f"_manifests/{digest}", times=50, retry_after=0.001
    )

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(write_policy(tmp_path, LOCK_RELEASES))
    )

    assert code == 1, err
    manifest = state(emulator)[digest]
    assert (manifest.can_delete, [t.can_delete for t in manifest.tags]) == (True, [False])
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"] == INTERNAL_ERROR
    assert outcomes[f"release-1@{digest}"]["outcome"] == "done"


def apply_with_ctrl_c(
    held: Held, emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, dict[str, Any]], str]:
    """`apply` in this process (so that mutation testing sees it), with SIGINT sent to it once
    `held` holds its request: apply's loop handles the signal while it waits for that answer."""

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    with meanwhile(held, ctrl_c):
        return apply(emulator, tmp_path, capsys, *extra)


@pytest.mark.usefixtures("credential")
def test_sigint_in_this_process_skips_what_had_not_started(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while a DELETE in repository a-first is held: it finishes, b-later never starts,
    every action has its line, exit 130. In this process, so that mutation testing sees it."""
    first = pushes.push_image(client, "a-first", tag="pr-1", salt="a")
    later = pushes.push_image(client, "b-later", tag="pr-1", salt="b")
    held = emulator.faults.hold(method="DELETE", path_contains=first.split(":")[1], seconds=600)

    code, outcomes, err = apply_with_ctrl_c(
        held,
        emulator,
        tmp_path,
        capsys,
        "--policy",
        str(write_policy(tmp_path, PRUNE_PR)),
        "--concurrency",
        "1",
    )

    assert code == 130, err
    assert "acr-retention: stopped by SIGINT; the report lists what ran" in err
    assert (outcomes[first]["outcome"], outcomes[first]["detail"]) == ("done", None)
    assert (outcomes[later]["outcome"], outcomes[later]["detail"]) == (
        "skipped",
        "interrupted before it started",
    )
    assert {r.name for r in emulator.dump().repositories} == {"b-later"}


@pytest.mark.usefixtures("credential")
def test_sigint_during_an_unlock_puts_the_locks_back_and_sends_no_delete(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """include_locked: SIGINT arrives while the manifest's unlock is in flight. It finishes, the
    DELETE is not sent, and every lock this run opened goes back before exit 130 (the relock is
    the one request a stopped run still sends). In this process, so that mutation testing sees it."""
    digest = locked_image(client)
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    held = emulator.faults.hold(method="PATCH", path_contains=digest.split(":")[1], seconds=600)

    code, outcomes, err = apply_with_ctrl_c(
        held, emulator, tmp_path, capsys, "--plan", str(saved), "--concurrency", "1"
    )

    assert code == 130, err
    # The acknowledgement counts the held PATCH, the one request in flight (--concurrency 1).
    assert (
        "acr-retention: SIGINT received: stopping; nothing new is sent, waiting for 1 request(s) in"
        " flight (Ctrl-C again to exit at once)"
    ) in err.splitlines()
    assert locks(emulator, digest) == (False, False, False)
    assert (outcomes[digest]["outcome"], outcomes[digest]["detail"]) == (
        "skipped",
        "stopped by SIGINT before it was sent; the locks it had were restored",
    )
    assert emulator.counters.count("delete_manifest") == 0


@pytest.mark.usefixtures("credential")
def test_a_signature_whose_image_was_stopped_before_its_delete_is_not_reported_gone(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT during the image's unlock: its DELETE is not sent, so its signature is still there,
    and its record says so: the level it was in never started (not that the registry took it
    with its subject)."""
    digest = locked_image(client)
    signature = pushes.push_referrer(
        client, "app", digest, artifact_type="application/vnd.cncf.notary.signature"
    )
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    held = emulator.faults.hold(method="PATCH", path_contains=digest.split(":")[1], seconds=600)

    code, outcomes, err = apply_with_ctrl_c(
        held, emulator, tmp_path, capsys, "--plan", str(saved), "--concurrency", "1"
    )

    assert code == 130, err
    assert {digest, signature} <= set(state(emulator))
    assert outcomes[digest]["outcome"] == "skipped"
    assert (outcomes[signature]["outcome"], outcomes[signature]["detail"]) == (
        "skipped",
        "interrupted before it started",
    )


@pytest.mark.usefixtures("credential")
def test_a_repository_that_cannot_be_listed_before_acting_fails_its_actions(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The saved plan's repository cannot be listed again (every listing answers 500): nothing
    there is done blind; each of its actions fails with why."""
    digest = pushes.push_image(client, "app", tag="pr-1")
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    emulator.faults.script(
        status=500, method="GET", path_contains="/app/_manifests", times=50, retry_after=0.001
    )

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1, err
    assert digest in state(emulator)
    assert outcomes[digest]["outcome"] == "failed"
    assert outcomes[digest]["error"] == f"could not read the repository before acting: {INTERNAL_ERROR}"


LOCK_OLD_UNTAGGED = """
version: 1
rules:
  - {name: lock-old-untagged, action: lock, tag_state: untagged, older_than: 30d, set: {delete_enabled: false}}
"""


@pytest.mark.usefixtures("credential")
def test_a_lock_a_plan_made_now_would_not_make_is_drift(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan locks an old untagged image. A release index listing it is pushed meanwhile: it
    is now a child of a tagged index, no image, and a plan made now locks nothing. Its tags did
    not change, but the lock is drift, and is not sent."""
    digest = pushes.push_image(client, "app", salt="old")
    saved = save_plan(emulator, write_policy(tmp_path, LOCK_OLD_UNTAGGED), tmp_path, capsys)
    index = pushes.push_index(client, "app", [digest], tag="release-1")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert set(state(emulator)) == {digest, index}
    assert state(emulator)[digest].can_delete is True
    assert outcomes[digest]["outcome"] == "drifted"
    assert outcomes[digest]["detail"] == (
        "the repository changed since the plan, and a plan of it now changes nothing here"
    )


@pytest.mark.usefixtures("credential")
def test_a_referrer_locked_after_the_plan_holds_its_whole_chain(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pr-1 has an SBOM, which has a signature; the plan deletes all three (the registry deletes
    referrers with their subject). The signature is locked meanwhile, so it stays; then the SBOM
    must stay (deleting it would take the signature along), and so must pr-1: drift runs up the
    chain, however many steps it has, and whatever the plan's order."""
    image = pushes.push_image(client, "app", tag="pr-1", salt="2")
    sbom = pushes.push_referrer(client, "app", image, salt="sbom")
    signature = pushes.push_referrer(
        client, "app", sbom, artifact_type="application/vnd.cncf.notary.signature"
    )
    # The plan lists deletes by digest: pr-1 comes before the SBOM that holds it, so its hold
    # is found only by a second pass over the plan (the salt is chosen for this order).
    assert image < sbom < signature
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    pushes.set_locks(client, "app", signature, can_delete=False)

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert set(state(emulator)) == {image, sbom, signature}
    assert {d: outcomes[d]["outcome"] for d in (image, sbom, signature)} == dict.fromkeys(
        (image, sbom, signature), "drifted"
    )
    assert outcomes[image]["detail"] == (
        f"its referrer {sbom} stays, and the registry deletes referrers with their subject"
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Until `condition` holds (an emulator counter, say): a test waits for an event, never a
    fixed time, so a loaded machine makes it slower, not wrong."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.mark.usefixtures("credential")
def test_a_403_lets_the_request_another_repository_has_in_flight_finish(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """a-first's second DELETE (the child of its index pr-1) is held; only then is b-later
    listed, and its DELETE refused (403). The run stops, but what was already sent is not
    abandoned: the child's delete finishes and has its `done` line; b-later's refused delete
    fails, and the run exits 1."""
    child = pushes.push_image(client, "a-first", salt="a")
    index = pushes.push_index(client, "a-first", [child], tag="pr-1")
    later = pushes.push_image(client, "b-later", tag="pr-1", salt="b")
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    emulator.counters.reset()
    # Not the index's DELETE: the first DELETE goes alone (registry/auth.py proves the token
    # with it), so b-later's could not be sent while that one was held.
    held = emulator.faults.hold(method="DELETE", path_contains=child.split(":")[1], seconds=600)
    listing = emulator.faults.hold(method="GET", path_contains="/b-later/_manifests", seconds=600)
    emulator.faults.script(status=403, method="DELETE", path_contains=later.split(":")[1])
    answered_when_refused: list[int] = []

    def refuse_b_while_a_is_held() -> None:
        listing.serve()
        wait_for(lambda: emulator.counters.count("delete_manifest", status=403) == 1, "b-later's 403")
        # The order the test is about: of a-first's DELETEs, only the index's was answered then.
        answered_when_refused.append(emulator.counters.count("delete_manifest", status=202))

    with meanwhile(held, refuse_b_while_a_is_held):
        code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1, err
    assert answered_when_refused == [1]
    assert listing.arrived.is_set()
    assert (outcomes[index]["outcome"], outcomes[child]["outcome"]) == ("done", "done")
    assert outcomes[child]["detail"] is None
    assert outcomes[later]["outcome"] == "failed"
    assert {r.name for r in emulator.dump().repositories} == {"b-later"}


@pytest.mark.usefixtures("credential")
def test_after_a_403_no_repository_waiting_for_its_turn_is_started(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One repository at a time (--concurrency 1): a-first's DELETE is refused (403), so the
    identity lacks a right the run needs. b-later and c-last, which wait for a free slot, are
    not started at all: not a request to either, their actions reported skipped, exit 1."""
    first = pushes.push_image(client, "a-first", tag="pr-1", salt="a")
    waiting = [pushes.push_image(client, name, tag="pr-1", salt=name) for name in ("b-later", "c-last")]
    saved = save_plan(emulator, write_policy(tmp_path, PRUNE_PR), tmp_path, capsys)
    emulator.faults.script(status=403, method="DELETE", path_contains=first.split(":")[1])
    # Served at once: each says only whether apply sent anything to that repository.
    touched = [emulator.faults.hold(path_contains=f"/{name}/", seconds=0) for name in ("b-later", "c-last")]

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved), "--concurrency", "1")

    assert code == 1, err
    assert outcomes[first]["outcome"] == "failed"
    assert [(outcomes[d]["outcome"], outcomes[d]["detail"]) for d in waiting] == [
        ("skipped", "stopped: access denied")
    ] * 2
    assert [held.arrived.is_set() for held in touched] == [False, False]
    assert {r.name for r in emulator.dump().repositories} == {"a-first", "b-later", "c-last"}


HIDE_V_PRUNE_PR = PRUNE_PR + "  - {name: hide-v, action: lock, tags: ['v.*'], set: {list_enabled: false}}\n"


@pytest.mark.usefixtures("credential")
def test_a_tag_lock_a_plan_made_now_would_not_make_is_drift(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan hides v1 (a lock that does not keep an image). Someone then tags the image pr-1
    too: a plan made now deletes it, and sets nothing on it. v1 is still on the image it was
    planned on and unchanged, but the repository changed: its lock is drift and is not sent
    (nor is the delete, which the saved plan does not have)."""
    digest = pushes.push_image(client, "app", tag="v1")
    saved = save_plan(emulator, write_policy(tmp_path, HIDE_V_PRUNE_PR), tmp_path, capsys)
    pushes.add_tag(client, "app", digest, "pr-1")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    manifest = state(emulator)[digest]
    assert manifest.can_list is True
    assert {t.name: t.can_list for t in manifest.tags} == {"pr-1": True, "v1": True}
    assert set(outcomes) == {digest, f"v1@{digest}"}
    assert (outcomes[digest]["outcome"], outcomes[digest]["detail"]) == (
        "drifted",
        "tags are now ['pr-1', 'v1']",
    )
    assert (outcomes[f"v1@{digest}"]["outcome"], outcomes[f"v1@{digest}"]["detail"]) == (
        "drifted",
        "the repository changed since the plan, and a plan of it now changes nothing here",
    )


@pytest.mark.usefixtures("credential")
def test_a_saved_lock_of_two_properties_is_sent_when_a_plan_made_now_makes_it_too(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan locks the image tagged v1, and the tag, against writes and deletes. Another image
    is pushed meanwhile, so apply plans the repository again: a plan made now sets the same two
    properties, and the saved locks are sent. (Read back from the file with their properties in
    another order than a plan's, they were drift.)"""
    digest = pushes.push_image(client, "app", tag="v1")
    saved = save_plan(emulator, write_policy(tmp_path, "version: 1\nrules:\n" + LOCK_V), tmp_path, capsys)
    other = pushes.push_image(client, "app", tag="main", salt="other")

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 0, err
    assert set(state(emulator)) == {digest, other}
    image, tag = state(emulator)[digest], state(emulator)[digest].tags[0]
    assert (image.can_write, image.can_delete, tag.can_write, tag.can_delete) == (False,) * 4
    assert (state(emulator)[other].can_write, state(emulator)[other].can_delete) == (True, True)
    assert {d: o["outcome"] for d, o in outcomes.items()} == {digest: "done", f"v1@{digest}": "done"}
