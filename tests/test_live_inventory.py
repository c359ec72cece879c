"""Live inventory through the unmodified SDK over real HTTPS, against the project's ACR emulator.

Nothing is mocked but the Entra ID credential (the emulator accepts any
token at /oauth2/exchange, as ACR accepts any valid Entra token).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from retention import registry
from retention.plan import plan_to_json
from retention.planner import make_plan
from retention.policyload import load_policy
from retention.snapshot import load_snapshot
from retention.timefmt import parse_time
from tests.builders import manifest, repository
from tests.conftest import run_cli

if TYPE_CHECKING:
    from tests.emulator import Emulator

ROOT_EXAMPLE = "examples/snapshot.json"
NOW = "2026-11-26T00:00:00Z"


run = run_cli


def test_snapshot_of_a_live_registry_equals_what_it_holds(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`snapshot` records every repository, manifest, reference, subject and tag attribute."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    expected = emulator.dump()
    out = tmp_path / "snap.json"
    code, _, err = run(["snapshot", "--registry", emulator.endpoint, "--out", str(out)], capsys)
    assert code == 0, err
    recorded = load_snapshot(out)
    assert recorded.registry == emulator.login_server
    # A live snapshot lists manifests as the registry does, newest first; dump() sorts by digest.
    assert [(r.name, sorted(r.manifests, key=lambda m: m.digest)) for r in recorded.repositories] == [
        (r.name, list(r.manifests)) for r in expected.repositories
    ]


def test_plan_of_a_live_registry_equals_the_plan_of_its_snapshot(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan --registry and plan --snapshot of the same content give the same actions and kept list."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    policy = load_policy(["policies/combined"])
    offline = make_plan(policy, emulator.dump().repositories, now=parse_time(NOW))
    code, out, err = run(
        plan_args(emulator, "--format", "json"),
        capsys,
    )
    assert code == 0, err
    live = json.loads(out)
    wanted = plan_to_json(offline)
    assert live["actions"] == wanted["actions"]
    assert live["kept"] == wanted["kept"]
    assert live["registry"] == emulator.login_server


def test_steady_state_costs_about_one_request_per_listed_page(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the token cache, authentication adds a handful of requests per run, not three per
    request: one exchange, one token per scope (catalog, listing, content), no 401 challenge."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.counters.reset()
    code, _, err = run(
        ["snapshot", "--registry", emulator.endpoint, "--out", str(tmp_path / "s.json")], capsys
    )
    assert code == 0, err
    counts: dict[str, Any] = emulator.counters.snapshot()
    assert counts["by_phase"].get("challenge", 0) == 0
    assert counts["by_phase"].get("exchange", 0) == 1
    assert counts["by_phase"].get("token", 0) == 3


def plan_args(emulator: Emulator, *extra: str) -> list[str]:
    return ["plan", "--policy", "policies/combined", "--registry", emulator.endpoint, "--now", NOW, *extra]


def offline_plan(emulator: Emulator) -> dict[str, Any]:
    policy = load_policy(["policies/combined"])
    return plan_to_json(make_plan(policy, emulator.dump().repositories, now=parse_time(NOW)))


def test_index_children_come_from_content_when_listings_leave_them_out(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry whose listings carry no `references` still gives the same plan (one GET per index)."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.list_references = False
    code, out, err = run([*plan_args(emulator), "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["actions"] == offline_plan(emulator)["actions"]


@pytest.mark.parametrize("mode", ["refuse", "drop"])
def test_a_registry_without_wildcard_scopes_falls_back_to_per_repository_tokens(
    mode: Literal["refuse", "drop"], emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """ABAC registries grant no `repository:*:...` scope; the SDK's challenge gets each exact one.

    "refuse": the token endpoint answers 401; "drop": the token arrives without the wildcard and
    the request it was sent with answers 401. Either way the plan is the same and each exact scope
    is challenged for once (5 repositories: metadata_read for the listings, pull for the contents),
    not once per request: before requests of one scope waited for the first one's token, 8
    concurrent content reads ran 8 challenges, and a refused wildcard was asked for again by each.
    """
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.auth.wildcard_scopes = mode
    code, out, err = run([*plan_args(emulator), "--format", "json"], capsys)
    assert code == 0, err
    live, wanted = json.loads(out), offline_plan(emulator)
    assert (live["actions"], live["kept"]) == (wanted["actions"], wanted["kept"])
    counts: dict[str, Any] = emulator.counters.snapshot()
    assert counts["by_phase"].get("challenge", 0) <= 1 + 2 * 5, counts
    # One wildcard token request per action (metadata_read, pull) until the registry's answer is known.
    assert counts["by_operation"]["token"].get(401, 0) <= 2, counts


def test_throttling_and_server_errors_are_retried_to_the_same_plan(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """429 with Retry-After and one-off 503s and resets slow the run down but do not change its plan."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.faults.script(status=429, method="GET", path_contains="_manifests", times=3, retry_after=0.05)
    emulator.faults.script(status=503, method="GET", path_contains="_tags", times=2)
    emulator.faults.script(status="reset", method="GET", path_contains="_catalog", times=1)
    code, out, err = run([*plan_args(emulator), "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["actions"] == offline_plan(emulator)["actions"]
    assert emulator.counters.count(status=429) == 3
    assert emulator.counters.count(status=503) == 2


def test_repository_deleted_while_listed_is_skipped_with_a_warning(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository that answers 404 after the catalog named it is left out, with a warning."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.faults.script(status=404, method="GET", path_contains="shop%2Fweb/_manifests", times=1)
    code, out, err = run([*plan_args(emulator), "--format", "json"], capsys)
    assert code == 0, err
    assert "shop/web" not in {r["name"] for r in json.loads(out)["repositories"]}
    warnings = [json.loads(line) for line in err.splitlines() if '"repository_skipped"' in line]
    assert [(w["repository"], w["reason"]) for w in warnings] == [("shop/web", "deleted while being listed")]


def test_refused_credentials_are_one_line_and_exit_1(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An Entra token the registry does not accept ends the run with one line naming the registry."""
    emulator.seed_file(ROOT_EXAMPLE)
    emulator.auth.strict_identities = True
    code, out, err = run(plan_args(emulator), capsys)
    assert (code, out) == (1, "")
    (line,) = [line for line in err.splitlines() if not line.startswith("{")]
    assert line.startswith(
        f"acr-retention: error: registry {emulator.login_server}: the Azure credential was refused"
    )


def test_unreachable_registry_is_one_line_and_exit_1(
    credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry nobody answers for ends the run with one line, after the connection retries."""
    code, out, err = run(
        ["plan", "--policy", "policies/combined", "--registry", "127.0.0.1:9", "--now", NOW], capsys
    )
    assert (code, out) == (1, "")
    (line,) = [line for line in err.splitlines() if not line.startswith("{")]
    assert line.startswith("acr-retention: error: cannot reach registry 127.0.0.1:9: ")


def test_bad_registry_name_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A registry given as http:// or with a path is refused before any request."""
    code, _, err = run(["snapshot", "--registry", "http://myreg.azurecr.io", "--out", "x.json"], capsys)
    assert code == 1
    assert (
        err
        == "acr-retention: error: registry 'http://myreg.azurecr.io': only https:// registries are supported\n"
    )


def test_anonymous_mode_reads_a_public_registry(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--anonymous reads a registry with anonymous pull enabled, with no credential at all."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.anonymous_pull = True
    out = tmp_path / "anon.json"
    code, _, err = run(
        ["snapshot", "--registry", emulator.endpoint, "--anonymous", "--out", str(out)], capsys
    )
    assert code == 0, err
    assert len(load_snapshot(out).repositories) == len(emulator.dump().repositories)


def test_repository_option_limits_what_is_read(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--repository globs select repositories; the others are never listed."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    out = tmp_path / "shop.json"
    code, _, err = run(
        ["snapshot", "--registry", emulator.endpoint, "--repository", "shop/*", "--out", str(out)], capsys
    )
    assert code == 0, err
    assert [r.name for r in load_snapshot(out).repositories] == ["shop/api", "shop/web"]
    assert emulator.counters.count(operation="list_manifests") == 2


def test_content_that_does_not_match_its_digest_makes_the_repository_delete_nothing(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest body that does not hash to its digest is never trusted: its repository is recorded
    as unreadable (with the reason), and a plan deletes nothing there and says why."""
    # Seeded as is, bodies are synthesized under the snapshot's digests, so none of them verify.
    emulator.seed_file(ROOT_EXAMPLE)
    out = tmp_path / "s.json"
    code, _, err = run(["snapshot", "--registry", emulator.endpoint, "--out", str(out)], capsys)
    assert code == 0, err
    warned = {
        json.loads(line)["repository"] for line in err.splitlines() if '"repository_deletes_nothing"' in line
    }
    recorded = load_snapshot(out).repositories
    unreadable = {r.name: r.unreadable for r in recorded if r.unreadable is not None}
    assert set(unreadable) == warned
    assert {r.name for r in recorded} == {r.name for r in emulator.dump().repositories}
    assert all("content does not match its digest" in why for why in unreadable.values())
    # Every repository with a manifest that can be a referrer is unreadable here.
    assert unreadable.keys() == {
        r.name
        for r in emulator.dump().repositories
        if any(m.media_type and "oci" in m.media_type for m in r.manifests)
    }
    code, plan_out, err = run(
        plan_args(emulator, "--format", "json"),
        capsys,
    )
    assert code == 0, err
    live = json.loads(plan_out)
    assert not any(a["repository"] in unreadable for a in live["actions"] if a["op"] == "delete_manifest")
    # Reads run concurrently, so which manifest the reason names can differ from run to run.
    reasons = {r["name"]: r["unreadable"] for r in live["repositories"] if r.get("unreadable")}
    assert reasons.keys() == unreadable.keys()
    assert all(why.endswith(": content does not match its digest") for why in reasons.values())


def test_an_identity_that_may_not_pull_plans_no_deletion_and_says_why(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing needs metadata_read, content needs pull: without pull no subject can be learned, so
    no repository with a possible referrer deletes anything, and the plan says why (exit 0)."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.auth.strict_identities = True
    emulator.add_identity("aad-token", roles={"metadata_read", "catalog"})
    code, out, err = run(
        plan_args(emulator, "--format", "json"),
        capsys,
    )
    assert code == 0, err
    live = json.loads(out)
    reasons = {r["name"]: r["unreadable"] for r in live["repositories"] if r.get("unreadable")}
    assert reasons
    assert all(
        why.endswith("reading its content was refused (401); the identity needs pull")
        for why in reasons.values()
    )
    assert not [a for a in live["actions"] if a["op"] == "delete_manifest" and a["repository"] in reasons]


def test_access_tokens_expiring_during_the_run_are_renewed(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Short-lived registry tokens expire mid-run; the run renews them and plans the same."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.auth.access_token_lifetime = 1.0
    emulator.faults.latency_ms = 60
    code, out, err = run([*plan_args(emulator), "--format", "json", "--concurrency", "1"], capsys)
    assert code == 0, err
    assert json.loads(out)["actions"] == offline_plan(emulator)["actions"]
    # Renewed as they expire, not before every request.
    assert emulator.counters.count(operation="token") < emulator.counters.phases().get("authorized", 0)


def test_content_addressed_seeding_keeps_the_registry_meaning(emulator: Emulator) -> None:
    """Renamed to their content's digests (signature tags included), the example plans the same."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    policy = load_policy(["policies/combined"])
    renamed = make_plan(policy, emulator.dump().repositories, now=parse_time(NOW))
    original = make_plan(policy, load_snapshot(ROOT_EXAMPLE).repositories, now=parse_time(NOW))
    assert renamed.summary() == original.summary()


def test_reader_processes_record_the_same_snapshot_as_one_reader(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--processes 3 splits the catalog between readers and merges back into the same file."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    files = []
    for processes in ("1", "3"):
        out = tmp_path / f"snap-{processes}.json"
        code, _, err = run(
            ["snapshot", "--registry", emulator.endpoint, "--out", str(out), "--processes", processes], capsys
        )
        assert code == 0, err
        files.append(json.loads(out.read_text(encoding="utf-8")))
    single, split = files
    assert split["repositories"] == single["repositories"]
    assert [r["name"] for r in split["repositories"]] == [r.name for r in emulator.dump().repositories]


def test_reader_processes_plan_what_one_reader_plans(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    policy = load_policy(["policies/combined"])
    wanted = plan_to_json(make_plan(policy, emulator.dump().repositories, now=parse_time(NOW)))
    code, out, err = run(
        [*plan_args(emulator), "--format", "json", "--processes", "2"],
        capsys,
    )
    assert code == 0, err
    live = json.loads(out)
    assert (live["actions"], live["kept"]) == (wanted["actions"], wanted["kept"])


def test_reader_processes_skip_a_vanished_repository_with_one_warning(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reader's skip reaches the merging process, which warns once and leaves the repository out."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.faults.script(status=404, method="GET", path_contains="shop%2Fweb/_manifests", times=1)
    code, out, err = run([*plan_args(emulator), "--format", "json", "--processes", "2"], capsys)
    assert code == 0, err
    assert "shop/web" not in {r["name"] for r in json.loads(out)["repositories"]}
    warnings = [json.loads(line) for line in err.splitlines() if '"repository_skipped"' in line]
    assert [(w["repository"], w["reason"]) for w in warnings] == [("shop/web", "deleted while being listed")]


def test_a_readers_registry_error_is_one_line_and_exit_1(
    emulator: Emulator, credential: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 met by a reader process (after the catalog was read) ends the run as one would in-process."""
    emulator.seed_file(ROOT_EXAMPLE, content_addressed=True)
    emulator.faults.script(status=403, method="GET", path_contains="shop%2Fweb/_manifests", times=1)
    code, out, err = run([*plan_args(emulator), "--processes", "2"], capsys)
    assert (code, out) == (1, "")
    (line,) = [line for line in err.splitlines() if not line.startswith("{")]
    assert line.startswith(f"acr-retention: error: registry {emulator.login_server} answered 403: ")


def _processes_marked(marker: str) -> list[int]:
    """Pids of live processes whose environment carries `marker` (a killed run's orphans)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def test_reader_processes_end_when_their_parent_is_killed(emulator: Emulator) -> None:
    """kill -9 of a plan with --processes 2 leaves no reader running on behind it.

    Forty repositories, so each reader has more to hand over than its queue holds: without
    watching its parent, a reader would wait for room in that queue for ever.
    """
    emulator.seed(
        [repository(f"team/app-{n:02}", manifest(f"{n:02x}" * 32, tags=("v1",))) for n in range(40)]
    )
    emulator.faults.latency_ms = 100
    marker = f"ACR_RETENTION_TEST_RUN={uuid.uuid4().hex}"
    env = {
        **os.environ,
        registry.ACCESS_TOKEN_VARIABLE: "aad-token",
        "SSL_CERT_FILE": emulator.ca_file,
        marker.split("=", 1)[0]: marker.split("=", 1)[1],
    }
    command = [sys.executable, "-m", "retention", *plan_args(emulator), "--processes", "2"]
    run_ = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and emulator.counters.count(operation="list_manifests") == 0:
            time.sleep(0.05)
        # The run, its two readers, and multiprocessing's resource tracker.
        assert len(_processes_marked(marker)) == 4
    finally:
        run_.send_signal(signal.SIGKILL)
        run_.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _processes_marked(marker):
        time.sleep(0.1)
    assert _processes_marked(marker) == []
