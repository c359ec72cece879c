"""Run metrics pushed to a real Prometheus Pushgateway (the Debian package's binary, on loopback;
tests/tools.py finds it).

What is pushed is read back from the gateway's own API: exact values, the grouping key as the
gateway understood it, and the last-success timestamp surviving failed runs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest
import requests

from retention import metrics
from retention.metrics import PushError, Pushgateway, RunMetrics, exposition, push
from retention.plan import DeleteManifest
from tests.conftest import run_cli
from tests.test_apply import EXAMPLE, POLICY, apply_args, apply_until_sigterm, offline_plan, records
from tests.tools import require_tool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.emulator import Emulator

NOW = "2026-11-26T00:00:00Z"
PLAN_ARGS = ["plan", "--policy", POLICY, "--snapshot", EXAMPLE, "--now", NOW]
# The example snapshot under the combined policy (README quick start): 52 deletes, 4 manifest and
# 1 tag property changes, 7,496,082,736 bytes at most.
# The example policy names contoso.azurecr.io; these runs plan the emulator, which is logged as a warning.
DIFFERENT_REGISTRY = "registry_differs_from_policy"
EXAMPLE_PLAN = {
    "acr_retention_planned_deletes": 52.0,
    "acr_retention_planned_property_changes": 5.0,
    "acr_retention_planned_upper_bound_bytes": 7496082736.0,
}
APPLY_ONLY = {
    "acr_retention_manifests_deleted",
    "acr_retention_tags_deleted",
    "acr_retention_property_changes",
    "acr_retention_actions_failed",
    "acr_retention_actions_drifted",
    "acr_retention_actions_skipped",
    "acr_retention_freed_upper_bound_bytes",
    "acr_retention_throttled_requests",
}
# bcrypt (cost 4) of "s3cret": the gateway's web config stores only the hash.
BCRYPT_S3CRET = "$2b$04$waBBJEjEtDAzF/2LCKsrt.5XoMG3Ie8X1xF4EVVA9fuhII4.sfFbS"


@dataclass(frozen=True)
class Gateway:
    """A running Pushgateway and the few API calls the tests read it with."""

    url: str
    auth: tuple[str, str] | None = None

    def groups(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/metrics", auth=self.auth, timeout=5)
        answer.raise_for_status()
        groups: list[dict[str, Any]] = answer.json()["data"]
        return groups

    def group(self, **labels: str) -> dict[str, float]:
        """The acr_retention_* values of the group with exactly these grouping labels ({} if none)."""
        found = [g for g in self.groups() if g["labels"] == labels]
        if not found:
            return {}
        (group,) = found
        assert group["last_push_successful"] is True
        return {
            name: float(family["metrics"][0]["value"])
            for name, family in group.items()
            if name.startswith("acr_retention_")
        }

    def wipe(self) -> None:
        requests.put(f"{self.url}/api/v1/admin/wipe", auth=self.auth, timeout=5).raise_for_status()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_gateway(workdir: Path, *, users: dict[str, str] | None = None) -> Iterator[Gateway]:
    """Starts the Pushgateway binary on a free loopback port, in memory only; stops it after. Without
    the binary the test skips (fails under CI), as tests/tools.py says."""
    binary = require_tool("prometheus-pushgateway")
    extra = []
    auth = None
    if users:
        config = workdir / "web.yml"
        config.write_text("basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in users.items()))
        extra.append(f"--web.config.file={config}")
    for _ in range(3):  # the free port may be taken between the probe and the gateway's bind
        port = free_port()
        log = workdir / f"pushgateway-{port}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--persistence.file=",  # in memory: the package's default file is the system's
                    "--web.enable-admin-api",  # for the wipe between tests
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        if users:
            auth = next(iter(users.items()))[0], "s3cret"
        if _ready(url, process, auth):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"the Pushgateway did not start: {log.read_text()[-2000:]}", pytrace=False)
    try:
        yield Gateway(url, auth)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str, process: subprocess.Popen[bytes], auth: tuple[str, str] | None) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/-/ready", auth=auth, timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def pushgateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("pushgateway")) as gateway:
        yield gateway


@pytest.fixture
def pushgateway(pushgateway_server: Gateway) -> Gateway:
    """The session's Pushgateway, emptied."""
    pushgateway_server.wipe()
    return pushgateway_server


@contextmanager
def unreachable(kind: str) -> Iterator[str]:
    """A loopback URL where nothing answers: connections refused, or accepted and never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == "silent":
            sock.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def without_timestamp(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "timestamp"}


# --- the exposition and the grouping key -----------------------------------------------------

RESULT = RunMetrics(
    command="apply",
    registry="contoso.azurecr.io",
    exit_code=0,
    succeeded=True,
    finished_at=1764115200.25,
    duration_s=12.5,
    planned_deletes=48,
    planned_property_changes=5,
    planned_upper_bound_bytes=7014053244,
    manifests_deleted=40,
    property_changes=5,
    actions_failed=0,
    actions_drifted=1,
    actions_skipped=2,
    freed_upper_bound_bytes=123456789,
    throttled_requests=3,
)

EXPOSITION = """\
# HELP acr_retention_last_success_timestamp_seconds Unix time at which the last successful run ended (pushed only by successful runs).
# TYPE acr_retention_last_success_timestamp_seconds gauge
acr_retention_last_success_timestamp_seconds 1764115200.25
# HELP acr_retention_last_run_timestamp_seconds Unix time at which the last run ended.
# TYPE acr_retention_last_run_timestamp_seconds gauge
acr_retention_last_run_timestamp_seconds 1764115200.25
# HELP acr_retention_run_duration_seconds Wall-clock duration of the last run, inventory included.
# TYPE acr_retention_run_duration_seconds gauge
acr_retention_run_duration_seconds 12.5
# HELP acr_retention_run_exit_code Exit code of the last run (0 success).
# TYPE acr_retention_run_exit_code gauge
acr_retention_run_exit_code 0
# HELP acr_retention_planned_deletes Deletions in the last run's plan: manifests and tags (max_deletes counts both).
# TYPE acr_retention_planned_deletes gauge
acr_retention_planned_deletes 48
# HELP acr_retention_planned_property_changes Property changes in the last run's plan.
# TYPE acr_retention_planned_property_changes gauge
acr_retention_planned_property_changes 5
# HELP acr_retention_planned_upper_bound_bytes Sum of the sizes of the manifests the last run's plan deletes (an upper bound).
# TYPE acr_retention_planned_upper_bound_bytes gauge
acr_retention_planned_upper_bound_bytes 7014053244
# HELP acr_retention_manifests_deleted Manifests the last run deleted.
# TYPE acr_retention_manifests_deleted gauge
acr_retention_manifests_deleted 40
# HELP acr_retention_tags_deleted Tags the last run's untag rules removed.
# TYPE acr_retention_tags_deleted gauge
acr_retention_tags_deleted 0
# HELP acr_retention_property_changes Property changes (locks, unlocks) the last run made.
# TYPE acr_retention_property_changes gauge
acr_retention_property_changes 5
# HELP acr_retention_actions_failed Planned actions that failed in the last run.
# TYPE acr_retention_actions_failed gauge
acr_retention_actions_failed 0
# HELP acr_retention_actions_drifted Planned actions skipped in the last run because the item changed.
# TYPE acr_retention_actions_drifted gauge
acr_retention_actions_drifted 1
# HELP acr_retention_actions_skipped Planned actions the last run did not carry out (interrupted, access denied, parent kept).
# TYPE acr_retention_actions_skipped gauge
acr_retention_actions_skipped 2
# HELP acr_retention_freed_upper_bound_bytes Sum of the sizes of the manifests the last run deleted (an upper bound: layers are shared).
# TYPE acr_retention_freed_upper_bound_bytes gauge
acr_retention_freed_upper_bound_bytes 123456789
# HELP acr_retention_throttled_requests Throttled (429) answers seen while the last run executed its plan.
# TYPE acr_retention_throttled_requests gauge
acr_retention_throttled_requests 3
"""


def test_exposition_of_a_successful_apply_is_exact() -> None:
    """Every metric with HELP and TYPE, unlabelled (the grouping key labels them), in a fixed order."""
    assert exposition(RESULT) == EXPOSITION


def test_a_failed_run_leaves_out_only_the_last_success_and_a_plan_only_the_execution() -> None:
    """Without success the last-success lines go, nothing else; `plan` pushes no execution metrics."""
    lines = EXPOSITION.splitlines(keepends=True)
    failed = replace(RESULT, succeeded=False, exit_code=143)
    assert exposition(failed) == "".join(lines[3:]).replace("exit_code 0", "exit_code 143")
    planned = replace(RESULT, command="plan")
    assert exposition(planned) == "".join(lines[:21])


def test_the_group_url_encodes_what_a_path_segment_cannot_hold() -> None:
    """Plain values stay plain; '/', ':' and spaces go @base64; credentials leave the URL for a header."""
    gateway = Pushgateway.parse("https://ci:p%40ss@gw.example:9091/push/", job="nightly/prod eu")
    assert gateway == Pushgateway(
        url="https://gw.example:9091/push",
        job="nightly/prod eu",
        username="ci",
        password="p@ss",  # noqa: S106 - a made-up credential, the point of the test
    )
    assert gateway.group_url("127.0.0.1:8443", "apply") == (
        "https://gw.example:9091/push/metrics/job@base64/bmlnaHRseS9wcm9kIGV1"
        "/registry@base64/MTI3LjAuMC4xOjg0NDM=/command/apply"
    )
    assert Pushgateway.parse("http://pushgateway:9091").group_url("contoso.azurecr.io", "plan") == (
        "http://pushgateway:9091/metrics/job/acr-retention/registry/contoso.azurecr.io/command/plan"
    )


def test_encoded_grouping_values_arrive_intact(pushgateway: Gateway) -> None:
    """The real gateway decodes the @base64 segments back to the exact label values."""
    gateway = Pushgateway.parse(pushgateway.url, job="nightly/prod eu")
    target = replace(RESULT, registry="127.0.0.1:8443")
    assert push(gateway, target) == gateway.group_url("127.0.0.1:8443", "apply")
    (group,) = pushgateway.groups()
    assert group["labels"] == {"job": "nightly/prod eu", "registry": "127.0.0.1:8443", "command": "apply"}
    assert pushgateway.group(**group["labels"])["acr_retention_freed_upper_bound_bytes"] == 123456789


# --- apply and plan through the command line --------------------------------------------------


def apply_group(emulator: Emulator, gateway: Gateway) -> dict[str, float]:
    return gateway.group(job="acr-retention", registry=emulator.login_server, command="apply")


def expected_execution(report: list[dict[str, Any]]) -> dict[str, float]:
    """The execution metrics as the audit report tells them, record by record."""
    outcomes = Counter(r["outcome"] for r in report)
    deleted = [r for r in report if r["op"] == "delete_manifest" and r["outcome"] == "done"]
    untagged = [r for r in report if r["op"] == "delete_tag" and r["outcome"] == "done"]
    return {
        "acr_retention_manifests_deleted": len(deleted),
        "acr_retention_tags_deleted": len(untagged),
        "acr_retention_property_changes": outcomes["done"] - len(deleted) - len(untagged),
        "acr_retention_actions_failed": outcomes["failed"],
        "acr_retention_actions_drifted": outcomes["drifted"],
        "acr_retention_actions_skipped": outcomes["skipped"],
        "acr_retention_freed_upper_bound_bytes": sum(r["size_bytes"] or 0 for r in deleted),
        "acr_retention_throttled_requests": 0,
    }


def test_a_successful_apply_pushes_exact_metrics(
    emulator: Emulator,
    credential: None,
    pushgateway: Gateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Counts equal the audit report's, timestamps fall within the run, one info event names the group."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    report = tmp_path / "report.jsonl"
    before = time.time()
    code, _, err = run_cli(
        [
            *apply_args(
                emulator,
                "--policy",
                POLICY,
                "--yes",
                "--report",
                str(report),
                "--pushgateway",
                pushgateway.url,
            )
        ],
        capsys,
    )
    after = time.time()
    assert code == 0, err
    audit = records(report.read_text())
    got = apply_group(emulator, pushgateway)
    timing = {
        name: got.pop(name)
        for name in (
            "acr_retention_last_success_timestamp_seconds",
            "acr_retention_last_run_timestamp_seconds",
            "acr_retention_run_duration_seconds",
        )
    }
    assert got == {
        "acr_retention_run_exit_code": 0,
        **EXAMPLE_PLAN,
        **expected_execution(audit),
    }
    assert got["acr_retention_manifests_deleted"] + Counter(r["outcome"] for r in audit)["already-gone"] == 52
    assert got["acr_retention_property_changes"] == 5
    assert f"Applied: {int(got['acr_retention_manifests_deleted'])} manifests deleted" in err
    assert before <= timing["acr_retention_last_run_timestamp_seconds"] <= after
    assert (
        timing["acr_retention_last_success_timestamp_seconds"]
        == timing["acr_retention_last_run_timestamp_seconds"]
    )
    assert 0 < timing["acr_retention_run_duration_seconds"] <= after - before
    pushed = [without_timestamp(e) for e in log_lines(err) if e["event"].startswith("metrics_")]
    assert pushed == [
        {
            "url": Pushgateway.parse(pushgateway.url).group_url(emulator.login_server, "apply"),
            "exit_code": 0,
            "succeeded": True,
            "event": "metrics_pushed",
            "level": "info",
        }
    ]


def refuse_one_delete(emulator: Emulator) -> dict[str, float]:
    """The registry refuses (400) the delete of one manifest that nothing else waits for."""
    plan = offline_plan(emulator.dump())
    deletes = [a for a in plan.actions if isinstance(a, DeleteManifest)]
    waited_for = {parent for a in deletes for parent in a.after}
    target = next(a for a in deletes if a.digest not in waited_for and not a.after)
    emulator.faults.script(status=400, method="DELETE", path_contains=target.digest, times=1000)
    return {
        "acr_retention_run_exit_code": 1,
        "acr_retention_actions_failed": 1,
        "acr_retention_actions_skipped": 0,
    }


def read_only_identity(emulator: Emulator) -> dict[str, float]:
    """The identity may list but not delete or write: the first refusal (403) stops the run. The
    deletes already sent when it came back are refused too, and recorded as failed; how many
    depends on timing, so the test checks that failed and skipped account for all 53 actions."""
    emulator.auth.strict_identities = True
    emulator.add_identity("aad-token", roles={"metadata_read", "catalog", "pull"})
    return {"acr_retention_run_exit_code": 1, "acr_retention_manifests_deleted": 0}


def over_the_limit(emulator: Emulator) -> dict[str, float]:
    """--max-deletes below the plan's 52 deletes: nothing executes, exit 3."""
    del emulator
    return {
        "acr_retention_run_exit_code": 3,
        "acr_retention_manifests_deleted": 0,
        "acr_retention_actions_skipped": 0,
    }


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize("failure", [refuse_one_delete, read_only_identity, over_the_limit])
def test_a_failed_apply_keeps_the_last_success(
    failure: Callable[[Emulator], dict[str, float]],
    emulator: Emulator,
    pushgateway: Gateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run that fails replaces every last-run metric and leaves the last success exactly as it was."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    push_args = ["--pushgateway", pushgateway.url]
    code, _, err = run_cli([*apply_args(emulator, "--policy", POLICY, "--yes", *push_args)], capsys)
    assert code == 0, err
    first = apply_group(emulator, pushgateway)
    # The same registry again from its original state, and this time the run goes wrong.
    emulator.reset()
    emulator.seed_file(EXAMPLE, content_addressed=True)
    expected = failure(emulator)
    limit = ["--max-deletes", "10"] if failure is over_the_limit else []
    report = tmp_path / "report.jsonl"
    code, _, err = run_cli(
        [*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report), *limit, *push_args)],
        capsys,
    )
    assert code == expected["acr_retention_run_exit_code"], err
    second = apply_group(emulator, pushgateway)
    assert (
        second["acr_retention_last_success_timestamp_seconds"]
        == first["acr_retention_last_success_timestamp_seconds"]
    )
    assert (
        second["acr_retention_last_run_timestamp_seconds"] > first["acr_retention_last_run_timestamp_seconds"]
    )
    audit = records(report.read_text()) if report.exists() else []
    execution = expected_execution(audit)
    assert {name: second[name] for name in execution} == execution
    assert {name: second[name] for name in expected} == expected
    if failure is read_only_identity:
        assert second["acr_retention_actions_failed"] >= 1
        assert second["acr_retention_actions_failed"] + second["acr_retention_actions_skipped"] == 57
    assert {name: second[name] for name in EXAMPLE_PLAN} == EXAMPLE_PLAN
    assert [e["succeeded"] for e in log_lines(err) if e["event"] == "metrics_pushed"] == [False]


def test_an_apply_stopped_by_sigterm_pushes_exit_143_without_success(
    emulator: Emulator, pushgateway: Gateway, tmp_path: Path
) -> None:
    """A CronJob deadline: the interrupted run still pushes (from $ACR_RETENTION_PUSHGATEWAY), minus success."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    report = tmp_path / "report.jsonl"
    code, err = apply_until_sigterm(emulator, report, {"ACR_RETENTION_PUSHGATEWAY": pushgateway.url})
    assert code == 143, err
    got = apply_group(emulator, pushgateway)
    assert "acr_retention_last_success_timestamp_seconds" not in got
    assert got["acr_retention_run_exit_code"] == 143
    audit = records(report.read_text())
    assert {name: got[name] for name in APPLY_ONLY} == expected_execution(audit)
    assert got["acr_retention_actions_skipped"] > 0
    assert [e["event"] for e in log_lines(err) if e["event"].startswith("metrics_")] == ["metrics_pushed"]


def test_plan_pushes_its_planned_counts_under_command_plan(
    pushgateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run's metrics, under its own job name; --pushgateway wins over the environment."""
    with unreachable("refused") as nowhere:
        monkeypatch.setenv("ACR_RETENTION_PUSHGATEWAY", nowhere)
        code, out, err = run_cli(
            [
                *PLAN_ARGS,
                "--detailed-exitcode",
                "--pushgateway",
                pushgateway.url,
                "--pushgateway-job",
                "nightly/dry-run",
            ],
            capsys,
        )
    assert code == 2, err  # a non-empty plan with --detailed-exitcode: a success
    assert out.splitlines()[-1].startswith("Plan: 52 manifests to delete")
    (group,) = pushgateway.groups()
    assert group["labels"] == {"job": "nightly/dry-run", "registry": "contoso.azurecr.io", "command": "plan"}
    got = pushgateway.group(**group["labels"])
    assert got.pop("acr_retention_last_success_timestamp_seconds") == got.pop(
        "acr_retention_last_run_timestamp_seconds"
    )
    assert got.pop("acr_retention_run_duration_seconds") > 0
    assert got == {"acr_retention_run_exit_code": 2, **EXAMPLE_PLAN}
    assert [e["level"] for e in log_lines(err)] == ["info", "info"]  # plan_made, metrics_pushed


def test_a_run_that_fails_before_planning_pushes_when_its_registry_is_named(
    pushgateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy that does not load: exit 1 and zero counts for the named registry; unnamed, no push."""
    monkeypatch.delenv("ACR_RETENTION_REGISTRY", raising=False)
    missing = str(tmp_path / "missing.yaml")
    push_args = ["--pushgateway", pushgateway.url]
    code, _, _ = run_cli(
        ["plan", "--policy", missing, "--registry", "example.azurecr.io", *push_args], capsys
    )
    assert code == 1
    got = pushgateway.group(job="acr-retention", registry="example.azurecr.io", command="plan")
    assert got.pop("acr_retention_last_run_timestamp_seconds") > 0
    assert got.pop("acr_retention_run_duration_seconds") >= 0
    assert got == {"acr_retention_run_exit_code": 1} | dict.fromkeys(EXAMPLE_PLAN, 0.0)
    code, _, err = run_cli(["apply", "--policy", missing, "--yes", *push_args], capsys)
    assert code == 1
    assert [without_timestamp(e) for e in log_lines(err)] == [
        {
            "reason": "the run ended before the registry was known",
            "event": "metrics_not_pushed",
            "level": "warning",
        }
    ]
    assert [g["labels"]["command"] for g in pushgateway.groups()] == ["plan"]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_pushgateway_changes_nothing_but_one_warning(
    kind: str,
    emulator: Emulator,
    credential: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's output and exit code are those of a run without metrics; one warning says why."""
    monkeypatch.setattr(metrics, "TIMEOUT_S", 0.5)
    error = {"refused": "[Errno 111] Connection refused", "silent": "no answer within 0.5 s"}[kind]
    baseline_code, baseline_out, _ = run_cli([*PLAN_ARGS, "--detailed-exitcode"], capsys)
    emulator.seed_file(EXAMPLE, content_addressed=True)
    with unreachable(kind) as nowhere:
        warning = {"pushgateway": nowhere, "error": error, "event": "metrics_push_failed", "level": "warning"}
        code, out, err = run_cli([*PLAN_ARGS, "--detailed-exitcode", "--pushgateway", nowhere], capsys)
        assert (code, out) == (baseline_code, baseline_out) == (2, baseline_out)
        assert [
            without_timestamp(e)
            for e in log_lines(err)
            if e["level"] != "info" and e["event"] != DIFFERENT_REGISTRY
        ] == [warning]
        started = time.monotonic()
        code, _, err = run_cli(
            [*apply_args(emulator, "--policy", POLICY, "--yes", "--pushgateway", nowhere)], capsys
        )
        assert code == 0, err
        assert [
            without_timestamp(e)
            for e in log_lines(err)
            if e["level"] != "info" and e["event"] != DIFFERENT_REGISTRY
        ] == [warning]
        assert "Traceback" not in err
        assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://gw:9091",
            "'ftp://gw:9091' is not an http:// or https:// URL such as http://pushgateway:9091",
        ),
        (
            "pushgateway:9091",
            "'pushgateway:9091' is not an http:// or https:// URL such as http://pushgateway:9091",
        ),
        (
            "http://gw:port",
            "'http://gw:port' is not an http:// or https:// URL such as http://pushgateway:9091",
        ),
        ("http://gw:9091/?job=x", "'http://gw:9091/?job=x': a Pushgateway URL takes no query or fragment"),
    ],
    ids=["ftp", "no-scheme", "bad-port", "query"],
)
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_bad_pushgateway_url_is_a_usage_error(
    url: str, message: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything runs: exit 2, nothing on stdout, the error on stderr's last line."""
    argv = (
        PLAN_ARGS if command == "plan" else ["apply", "--registry", "example.azurecr.io", "--policy", POLICY]
    )
    with pytest.raises(SystemExit) as exited:
        run_cli([*argv, "--pushgateway", url], capsys)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == f"acr-retention: error: argument --pushgateway: {message}"


def test_a_bad_pushgateway_url_in_the_environment_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message names the variable; an empty --pushgateway turns the push off, overriding it."""
    monkeypatch.setenv("ACR_RETENTION_PUSHGATEWAY", "pushgateway:9091")
    code, out, err = run_cli(PLAN_ARGS, capsys)
    assert (code, out) == (2, "")
    assert err == (
        "acr-retention: error: $ACR_RETENTION_PUSHGATEWAY: 'pushgateway:9091' is not an http:// or https://"
        " URL such as http://pushgateway:9091\n"
    )
    code, out, err = run_cli([*PLAN_ARGS, "--pushgateway", ""], capsys)
    assert code == 0
    assert [e["event"] for e in log_lines(err)] == ["plan_made"]


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway behind basic auth takes the push; a wrong password is one warning with the 401."""
    with running_gateway(tmp_path, users={"ci": BCRYPT_S3CRET}) as gateway:
        host = gateway.url.removeprefix("http://")
        code, _, err = run_cli([*PLAN_ARGS, "--pushgateway", f"http://ci:s3cret@{host}"], capsys)
        assert code == 0
        assert gateway.group(job="acr-retention", registry="contoso.azurecr.io", command="plan") != {}
        code, _, err_wrong = run_cli([*PLAN_ARGS, "--pushgateway", f"http://ci:wrong@{host}"], capsys)
        assert code == 0
        assert [without_timestamp(e) for e in log_lines(err_wrong) if e["level"] == "warning"] == [
            {
                "pushgateway": gateway.url,
                "error": "HTTP 401 Unauthorized: Unauthorized",
                "event": "metrics_push_failed",
                "level": "warning",
            }
        ]
        assert "s3cret" not in err
        assert "wrong" not in err_wrong


def test_a_refused_push_is_one_line_naming_the_status(pushgateway: Gateway) -> None:
    """A wrong path prefix (404): the status and the gateway's first line of explanation."""
    with pytest.raises(PushError) as failed:
        push(Pushgateway.parse(f"{pushgateway.url}/not-here"), RESULT)
    assert str(failed.value) == "HTTP 404 Not Found: 404 page not found"
    assert pushgateway.groups() == []
