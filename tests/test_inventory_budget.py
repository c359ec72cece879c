"""The live inventory within the run's read budget, against a throttled emulator through the SDK.

ACR throttles each identity per minute, with a burst allowance it does not document. Without a
budget the inventory's concurrent requests spent the SDK's six retries in seconds and the run
failed (issue 10); with it, every request waits for a slot of one read budget shared by every
reader process, and a 429 pauses them all instead of failing a repository.
"""

from __future__ import annotations

import json
import multiprocessing
from typing import TYPE_CHECKING

import pytest

from retention.plan import plan_to_json
from retention.planner import make_plan
from retention.policyload import load_policy
from retention.ratelimit import AdaptiveLimiter, SharedBudget
from retention.registry import auth
from retention.timefmt import parse_time
from tests.conftest import run_cli

if TYPE_CHECKING:
    from retention.registry import Connection
    from tests.emulator import Emulator

EXAMPLE = "examples/snapshot.json"
NOW = "2026-11-26T00:00:00Z"
POLICY = "policies/combined"


def throttle_reads(emulator: Emulator) -> None:
    """600 reads an emulator minute from a 5-request bucket, the minute shrunk 4 times: 40 reads a
    real second, half the rate the client starts at (the Standard SKU's 5,000 a minute)."""
    emulator.faults.throttle(read=600, burst={"read": 5}, time_scale=4, fractional_retry_after=True)


def offline(emulator: Emulator) -> dict[str, object]:
    return plan_to_json(make_plan(load_policy([POLICY]), emulator.dump().repositories, now=parse_time(NOW)))


def plan_args(emulator: Emulator, *extra: str) -> list[str]:
    return ["plan", "--policy", POLICY, "--registry", emulator.endpoint, "--now", NOW, "--no-cache", *extra]


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_throttled_registry_is_planned_whole_with_few_429s(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], processes: str
) -> None:
    emulator.seed_file(EXAMPLE, content_addressed=True)
    expected = offline(emulator)
    throttle_reads(emulator)
    code, out, err = run_cli([*plan_args(emulator, "--processes", processes), "--format", "json"], capsys)
    assert code == 0, err
    live = json.loads(out)
    assert (live["actions"], live["kept"]) == (expected["actions"], expected["kept"])
    counts = emulator.counters.snapshot()
    throttled = emulator.counters.count(status=429)
    answered = emulator.counters.count()
    # The limiter starts above the registry's rate and learns it from the first 429s: a handful
    # in a run this short (measured: 2-5 of about 140), never the storm the SDK alone provokes.
    assert throttled <= 10, counts
    assert answered - throttled >= 130


@pytest.mark.usefixtures("credential")
def test_without_the_budget_the_same_registry_fails_the_run(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: what the test above guards against is real. The SDK's own retries, with the
    inventory's requests unpaced, give up on this registry."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    throttle_reads(emulator)
    unpaced = auth.open_client

    def open_client(connection: Connection, *, budgeted: bool = False) -> object:
        del budgeted
        return unpaced(connection)

    monkeypatch.setattr(auth, "open_client", open_client)
    monkeypatch.setattr("retention.registry.reader.open_client", open_client)
    code, _, err = run_cli(plan_args(emulator), capsys)
    assert code == 1
    assert "answered 429" in err


def _spend(budget: SharedBudget, slots: int, throttle: bool) -> None:  # pragma: no cover - a child process
    limiter = AdaptiveLimiter(shared=budget)
    for _ in range(slots):
        limiter.reserve()
    if throttle:
        limiter.throttled(None, sent_in=limiter.epoch)


def spent_by_a_child(slots: int, *, throttle: bool) -> AdaptiveLimiter:
    context = multiprocessing.get_context("spawn")
    budget = SharedBudget(600, context=context)
    child = context.Process(target=_spend, args=(budget, slots, throttle))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    return AdaptiveLimiter(shared=budget)


def test_slots_another_process_reserved_are_taken() -> None:
    """A child reserved 30 slots at 600 a minute (3 s of budget) and ended: this process's next
    slot is after them, not free at once as with a budget of its own."""
    here = spent_by_a_child(30, throttle=False)
    delay, _ = here.reserve()
    assert 1.0 < delay <= 3.0
    assert AdaptiveLimiter(per_minute=600).reserve()[0] == 0


def test_a_429_another_process_saw_cuts_the_rate_here() -> None:
    here = spent_by_a_child(1, throttle=True)
    assert here.per_minute == pytest.approx(420)
    assert (here.decreases, here.throttled_count, here.epoch) == (1, 1, 1)
    first, epoch = here.reserve()
    second, _ = here.reserve()
    assert epoch == 1
    assert first == pytest.approx(0.0, abs=1e-6)
    assert second == pytest.approx(60 / 420, abs=0.01)
