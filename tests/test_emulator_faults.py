"""Fault injection: ACR-style throttling, scripted faults, 5xx answers, resets, latency.

Time is a fake clock the tests move by hand, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import http.client
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.containerregistry import ContainerRegistryClient
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from retention.inventory import Manifest, Repository, Tag
from tests.emulator import Emulator, FakeCredential
from tests.emulator.faults import PRESETS, Faults
from tests.emulator.rawhttp import RawClient

ROOT = Path(__file__).resolve().parent.parent
TOO_MANY = {
    "errors": [
        {"code": "TOOMANYREQUESTS", "message": "too many requests, retry after the time in Retry-After"}
    ]
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(emulator: Emulator) -> Clock:
    fake = Clock()
    emulator.faults.clock = fake
    return fake


@pytest.fixture
def raw(emulator: Emulator) -> RawClient:
    return RawClient.of(emulator)


def seed(emulator: Emulator) -> None:
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    manifests = tuple(
        Manifest(digest=f"sha256:{n:064x}", updated_at=t0, tags=(Tag(f"v{n}"),)) for n in range(1, 5)
    )
    emulator.seed([Repository("app", manifests)])


def test_throttling_answers_429_with_a_retry_after_that_counts_down(
    raw: RawClient, emulator: Emulator, clock: Clock
) -> None:
    """Two reads a minute: the third is refused until the bucket has refilled one request, and
    each refusal says how long is left (ops.md §1.1)."""
    emulator.faults.throttle(read=2)
    assert raw.request("GET", "/acr/v1/_catalog").status == 401
    assert raw.request("GET", "/acr/v1/_catalog").status == 401
    refused = raw.request("GET", "/acr/v1/_catalog")
    assert (refused.status, refused.json(), refused.header("Retry-After")) == (429, TOO_MANY, "30")
    assert refused.header("Content-Type") == "application/json; charset=utf-8"
    clock.now += 12
    assert raw.request("GET", "/acr/v1/_catalog").header("Retry-After") == "18"
    clock.now += 18
    assert raw.request("GET", "/acr/v1/_catalog").status == 401
    assert emulator.counters.count("catalog", 429) == 2


def test_retry_after_is_whole_seconds_by_default_even_when_the_minute_is_shrunk(
    raw: RawClient, emulator: Emulator, clock: Clock
) -> None:
    """As ACR sends it and RFC 9110 defines it: a quarter of a second left is "1", never "0.250"
    (Go clients such as acr purge stall on fractions) and never "0" (which means "back off")."""
    emulator.faults.throttle(delete=1, time_scale=60)
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").status == 401
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").header("Retry-After") == "1"
    clock.now += 0.75
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").header("Retry-After") == "1"
    clock.now += 0.25
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").status == 401


def test_time_scale_with_fractional_retry_after_counts_milliseconds(
    raw: RawClient, emulator: Emulator, clock: Clock
) -> None:
    emulator.faults.throttle(delete=1, time_scale=60, fractional_retry_after=True)
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").status == 401
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").header("Retry-After") == "1.000"
    clock.now += 0.75
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").header("Retry-After") == "0.250"
    clock.now += 0.25
    assert raw.request("DELETE", "/acr/v1/app/_tags/v1").status == 401
    # Reads and writes have their own buckets, unlimited here.
    assert raw.request("GET", "/acr/v1/_catalog").status == 401


def test_buckets_are_per_identity_and_oauth_is_per_registry(
    raw: RawClient, emulator: Emulator, clock: Clock
) -> None:
    del clock
    seed(emulator)
    emulator.faults.throttle(read=1, oauth=2)
    bearer = {"Authorization": f"Bearer {raw.access_token('repository:app:metadata_read')}"}
    assert raw.request("GET", "/acr/v1/app", headers=bearer).status == 200
    assert raw.request("GET", "/acr/v1/app", headers=bearer).status == 429
    # Unauthenticated requests are throttled as one identity of their own.
    assert raw.request("GET", "/acr/v1/app").status == 401
    assert raw.request("GET", "/acr/v1/app").status == 429
    # One exchange and one token so far: the registry's OAuth budget of 2 is spent, whoever asks.
    assert raw.form("/oauth2/exchange", [("grant_type", "access_token"), ("access_token", "x")]).status == 429


def test_presets_follow_the_documented_limits(emulator: Emulator) -> None:
    emulator.faults.throttle("standard")
    assert emulator.faults.limits == {"read": 5000, "write": 1000, "delete": 500, "oauth": 10000}
    emulator.faults.throttle("premium")
    assert emulator.faults.limits == PRESETS["premium"]
    emulator.faults.throttle("off")
    assert emulator.faults.limits == {}
    with pytest.raises(ValueError, match="unknown throttle preset"):
        emulator.faults.throttle("gold")


def test_a_scripted_fault_fires_once(raw: RawClient, emulator: Emulator) -> None:
    emulator.faults.script(method="GET", path_contains="_catalog", status=503)
    first = raw.request("GET", "/acr/v1/_catalog")
    assert (first.status, first.header("Retry-After")) == (503, None)
    assert raw.request("GET", "/acr/v1/_catalog").status == 401


def test_scripted_retry_after_only_where_acr_would_send_it(raw: RawClient, emulator: Emulator) -> None:
    faults = emulator.faults
    faults.script(path_contains="sha256:ab", status=429, retry_after=0.05)
    faults.script(path_contains="sha256:ab", status=404, retry_after=5)
    assert raw.request("DELETE", "/v2/app/manifests/sha256%3Aab").header("Retry-After") == "0.050"
    not_found = raw.request("DELETE", "/v2/app/manifests/sha256:ab")
    assert (not_found.status, not_found.header("Retry-After")) == (404, None)


def test_reset_looks_like_a_broken_connection(raw: RawClient, emulator: Emulator) -> None:
    emulator.faults.script(path_contains="_catalog", status="reset", times=2)
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError)):
        raw.request("GET", "/acr/v1/_catalog")
    with ContainerRegistryClient(emulator.endpoint, FakeCredential(), retry_total=0) as client:
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            list(client.list_repository_names())
        assert list(client.list_repository_names()) == []
    assert emulator.counters.count("catalog", 0) == 2


def test_a_lost_delete_answer_is_retried_and_404_counts_as_done(emulator: Emulator) -> None:
    """`after=True`: the manifest is deleted, the 202 never arrives; the SDK retries the DELETE,
    gets 404, and takes it for success (acr-wire.md §5.8)."""
    seed(emulator)
    emulator.faults.script(method="DELETE", path_contains="/manifests/", status="reset", after=True)
    with ContainerRegistryClient(emulator.endpoint, FakeCredential()) as client:
        client.delete_manifest("app", f"sha256:{1:064x}")
    assert emulator.counters.count("delete_manifest", 404) == 1
    assert [m.digest for m in emulator.dump().repositories[0].manifests] == [
        f"sha256:{n:064x}" for n in (2, 3, 4)
    ]


def test_error_and_reset_rates(raw: RawClient, emulator: Emulator) -> None:
    emulator.faults.error_rate = 1.0
    answer = raw.request("GET", "/acr/v1/_catalog")
    assert answer.status in (500, 503)
    assert answer.header("Retry-After") is None
    emulator.faults.error_rate = 0.0
    emulator.faults.reset_rate = 1.0
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError)):
        raw.request("GET", "/acr/v1/_catalog")


def test_latency_is_fixed_plus_uniform_jitter() -> None:
    faults = Faults(latency_ms=20, jitter_ms=5, seed=7)
    delays = [faults.delay() for _ in range(50)]
    assert all(0.020 <= d <= 0.025 for d in delays)
    assert len(set(delays)) > 1
    assert Faults().delay() == 0.0


def test_counters_count_operations_statuses_and_phases(emulator: Emulator) -> None:
    seed(emulator)
    with ContainerRegistryClient(emulator.endpoint, FakeCredential()) as client:
        assert len(list(client.list_manifest_properties("app", results_per_page=2))) == 4
    counts = emulator.counters.snapshot()
    assert counts["by_operation"] == {
        "list_manifests": {401: 2, 200: 2},
        "exchange": {200: 2},
        "token": {200: 2},
    }
    assert counts["by_phase"] == {"challenge": 2, "exchange": 2, "token": 2, "authorized": 2}
    assert counts["total"] == emulator.counters.total() == 8
    # Requests per listed page, the figure benchmarks report:
    assert emulator.counters.total() / emulator.counters.count("list_manifests", 200) == 4
    emulator.counters.reset()
    assert emulator.counters.total() == 0


# --- holds -----------------------------------------------------------------------------------


def sdk(emulator: Emulator) -> ContainerRegistryClient:
    return ContainerRegistryClient(
        emulator.endpoint, FakeCredential("aad-token"), audience="https://containerregistry.azure.net"
    )


def test_a_held_request_waits_while_others_are_served_then_is_served(emulator: Emulator) -> None:
    seed(emulator)
    held = emulator.faults.hold(method="DELETE", path_contains=f"sha256:{1:064x}", seconds=2.0)
    elapsed: list[float] = []

    def delete() -> None:
        started = time.monotonic()
        with sdk(emulator) as client:
            client.delete_manifest("app", f"sha256:{1:064x}")
        elapsed.append(time.monotonic() - started)

    worker = threading.Thread(target=delete)
    worker.start()
    try:
        assert held.arrived.wait(timeout=10)
        # Meanwhile the server answers others, a DELETE that does not match included.
        with sdk(emulator) as client:
            client.delete_manifest("app", f"sha256:{2:064x}")
            listed = {m.digest for m in client.list_manifest_properties("app")}
        assert not held.released.is_set()
        assert listed == {f"sha256:{n:064x}" for n in (1, 3, 4)}
    finally:
        worker.join(timeout=30)
    assert held.released.is_set()
    assert elapsed[0] >= 2.0
    assert (held.count, held.dropped) == (1, 0)
    assert [m.digest for m in emulator.dump().repositories[0].manifests] == [
        f"sha256:{n:064x}" for n in (3, 4)
    ]
    # Only the request that performs the operation is held: the SDK's first, challenged DELETE is not.
    assert emulator.counters.count("delete_manifest") == 4


def test_serve_ends_a_hold_before_its_time(emulator: Emulator) -> None:
    """A test that has done what it held a request for releases it: served, not dropped."""
    seed(emulator)
    held = emulator.faults.hold(method="DELETE", path_contains=f"sha256:{1:064x}", seconds=600)

    def delete() -> None:
        with sdk(emulator) as client:
            client.delete_manifest("app", f"sha256:{1:064x}")

    worker = threading.Thread(target=delete)
    worker.start()
    try:
        assert held.arrived.wait(timeout=10)
        assert f"sha256:{1:064x}" in {m.digest for m in emulator.dump().repositories[0].manifests}
        held.serve()
        assert held.released.wait(timeout=30)
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert (held.count, held.dropped) == (1, 0)
    assert f"sha256:{1:064x}" not in {m.digest for m in emulator.dump().repositories[0].manifests}


def test_holds_take_authorized_requests_only_and_times_of_them(raw: RawClient, emulator: Emulator) -> None:
    held = emulator.faults.hold(method="GET", path_contains="_catalog", seconds=0.05, times=2)
    assert raw.request("GET", "/acr/v1/_catalog").status == 401
    assert held.count == 0
    assert not held.arrived.is_set()
    for _ in range(3):
        assert raw.authorized("GET", "/acr/v1/_catalog").status == 200
    assert (held.count, held.dropped, held.arrived.is_set(), held.released.is_set()) == (2, 0, True, True)
    with pytest.raises(ValueError, match="seconds >= 0 and times >= 1"):
        emulator.faults.hold(seconds=1, times=0)


def test_reset_drops_held_requests_instead_of_serving_them_later(raw: RawClient, emulator: Emulator) -> None:
    seed(emulator)
    held = emulator.faults.hold(method="DELETE", seconds=60)
    token = raw.access_token("repository:app:delete")
    failures: list[BaseException] = []

    def delete() -> None:
        try:
            raw.request(
                "DELETE", f"/v2/app/manifests/sha256:{1:064x}", headers={"Authorization": f"Bearer {token}"}
            )
        except (ConnectionError, http.client.HTTPException, ssl.SSLError) as error:
            failures.append(error)

    worker = threading.Thread(target=delete)
    worker.start()
    try:
        assert held.arrived.wait(timeout=10)
        started = time.monotonic()
        emulator.faults.reset()
        assert time.monotonic() - started < 5
    finally:
        worker.join(timeout=30)
    assert len(failures) == 1  # the client saw its connection reset
    assert (held.dropped, held.released.is_set()) == (1, True)
    assert emulator.counters.count("delete_manifest", 0) == 1
    assert len(emulator.dump().repositories[0].manifests) == 4


_DELETE_IN_A_SUBPROCESS = """
import sys
from azure.containerregistry import ContainerRegistryClient
from tests.emulator import FakeCredential

endpoint, repository, digest = sys.argv[1:]
credential = FakeCredential("aad-token")
with ContainerRegistryClient(endpoint, credential, audience="https://containerregistry.azure.net") as client:
    client.delete_manifest(repository, digest)
print("deleted")
"""


def test_a_client_killed_while_its_delete_is_held_deletes_nothing(emulator: Emulator) -> None:
    """What crash tests of the CLI rely on: SIGKILL a process once its DELETE has arrived, and
    the DELETE is dropped, not served when the hold ends."""
    seed(emulator)
    target = f"sha256:{1:064x}"
    held = emulator.faults.hold(method="DELETE", path_contains=target, seconds=60)
    process = subprocess.Popen(
        [sys.executable, "-c", _DELETE_IN_A_SUBPROCESS, emulator.endpoint, "app", target],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        arrived = held.arrived.wait(timeout=60)
    finally:
        process.kill()  # SIGKILL: no cleanup, no goodbye on the connection
        out, err = process.communicate(timeout=30)
    assert arrived, err.decode()
    assert (process.returncode, out) == (-signal.SIGKILL, b"")
    assert held.released.wait(timeout=5)  # noticed within the poll, not after 60 s
    assert (held.count, held.dropped) == (1, 1)
    assert target in {m.digest for m in emulator.dump().repositories[0].manifests}
    assert emulator.counters.count("delete_manifest", 202) == 0
    assert emulator.counters.count("delete_manifest", 0) == 1
