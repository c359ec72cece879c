"""The request budgets a run starts from: the --sku's documented per-identity limits (probed
upward from there), or what --max-*-per-minute says (then also the cap), handed to the limiters
of a real run against the emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retention import apply as apply_module
from retention.executor import execute_parts
from retention.ratelimit import Budgets, OperationClass
from tests.conftest import run_cli
from tests.test_apply import EXAMPLE, NOW, POLICY

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from retention.executor import Execution, Record
    from retention.plan import Plan
    from tests.emulator import Emulator

READ, WRITE, DELETE = OperationClass.READ, OperationClass.WRITE, OperationClass.DELETE

# ops.md §1.1's per-identity limits per minute.
SKU = {
    "basic": {READ: 5000, WRITE: 1000, DELETE: 500},
    "standard": {READ: 5000, WRITE: 1000, DELETE: 500},
    "premium": {READ: 10000, WRITE: 2000, DELETE: 2000},
}


@pytest.mark.parametrize("sku", sorted(SKU))
def test_budgets_start_at_the_skus_documented_limits_without_a_cap(sku: str) -> None:
    budgets = Budgets.for_sku(sku, deletes=None, writes=None, reads=None)
    assert budgets.per_minute == SKU[sku]
    assert budgets.ceilings == {}
    assert all(limiter.ceiling_per_minute is None for limiter in budgets.limiters().values())


def test_a_budget_given_on_the_command_line_replaces_and_caps_that_class_only() -> None:
    budgets = Budgets.for_sku("premium", deletes=60, writes=None, reads=7.5)
    assert budgets.per_minute == {READ: 7.5, WRITE: 2000, DELETE: 60}
    assert budgets.ceilings == {READ: 7.5, DELETE: 60}
    limiters = budgets.limiters()
    assert (limiters[DELETE].ceiling_per_minute, limiters[WRITE].ceiling_per_minute) == (60, None)


@pytest.fixture
def starting_budgets(monkeypatch: pytest.MonkeyPatch) -> dict[OperationClass, float]:
    """Filled, when `apply` starts executing, with the rate each of its limiters starts from."""
    seen: dict[OperationClass, float] = {}
    caps.clear()

    async def spy(parts: AsyncIterator[Plan], execution: Execution) -> list[Record]:
        limiters = execution.limits.limiters
        seen.update({op: limiter.per_minute for op, limiter in limiters.items()})
        caps.update({op: limiter.ceiling_per_minute for op, limiter in limiters.items()})
        records = await execute_parts(parts, execution)
        # The inventory's reads went through the very same read budget (shared, not a copy).
        assert limiters[READ].sent > 0
        return records

    monkeypatch.setattr(apply_module, "execute_parts", spy)
    return seen


# Filled with each limiter's cap as the spy above sees it: what the run's shared budgets hold.
caps: dict[OperationClass, float | None] = {}


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], SKU["standard"]),
        (["--sku", "basic"], SKU["basic"]),
        (["--sku", "premium"], SKU["premium"]),
        (["--sku", "premium", "--max-deletes-per-minute", "120"], {READ: 10000, WRITE: 2000, DELETE: 120}),
        (
            ["--max-writes-per-minute", "30", "--max-reads-per-minute", "90"],
            {READ: 90, WRITE: 30, DELETE: 500},
        ),
    ],
    ids=["default-standard", "basic", "premium", "premium-deletes-given", "standard-writes-reads-given"],
)
def test_apply_starts_its_limiters_at_the_skus_budgets(
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
    starting_budgets: dict[OperationClass, float],
    options: list[str],
    expected: dict[OperationClass, float],
) -> None:
    emulator.seed_file(EXAMPLE, content_addressed=True)
    # Only the example's sandbox repository: four deletes, done in well under a second even at
    # the smallest budget here (30 writes a minute; this part of the plan writes nothing).
    argv = ["apply", "--registry", emulator.endpoint, "--now", NOW, "--policy", POLICY]
    argv += ["--repository", "sandbox/**", "--yes", "--report", "/dev/null", *options]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    # Unless capped, a budget the inventory spent first has risen a little already (probing).
    assert starting_budgets == pytest.approx(expected, rel=0.02)
    # --max-*-per-minute is a cap of the run's shared budget too, not only where it starts.
    given = dict(zip(options[::2], options[1::2], strict=True))
    flags = {
        READ: "--max-reads-per-minute",
        WRITE: "--max-writes-per-minute",
        DELETE: "--max-deletes-per-minute",
    }
    assert caps == {op: float(given[flag]) if flag in given else None for op, flag in flags.items()}
    assert "Applied: 4 manifests deleted" in err
