"""The request budgets `apply` starts from: half the --sku's documented per-identity limits, or
what --max-*-per-minute says, handed to the limiters of a real run against the emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retention import apply as apply_module
from retention.apply import Budgets
from retention.executor import execute
from retention.ratelimit import OperationClass
from tests.conftest import run_cli
from tests.test_apply import EXAMPLE, NOW, POLICY

if TYPE_CHECKING:
    from retention.executor import Execution, Record
    from retention.plan import Plan
    from tests.emulator import Emulator

READ, WRITE, DELETE = OperationClass.READ, OperationClass.WRITE, OperationClass.DELETE

# Half of ops.md §1.1's per-identity limits per minute: other clients share the identity's bucket.
HALF_OF_SKU = {
    "basic": {READ: 2500, WRITE: 500, DELETE: 250},
    "standard": {READ: 2500, WRITE: 500, DELETE: 250},
    "premium": {READ: 5000, WRITE: 1000, DELETE: 1000},
}


@pytest.mark.parametrize("sku", sorted(HALF_OF_SKU))
def test_budgets_start_at_half_the_skus_limits(sku: str) -> None:
    assert Budgets.for_sku(sku, deletes=None, writes=None, reads=None).per_minute == HALF_OF_SKU[sku]


def test_a_budget_given_on_the_command_line_replaces_that_class_only() -> None:
    budgets = Budgets.for_sku("premium", deletes=60, writes=None, reads=7.5)
    assert budgets.per_minute == {READ: 7.5, WRITE: 1000, DELETE: 60}


@pytest.fixture
def starting_budgets(monkeypatch: pytest.MonkeyPatch) -> dict[OperationClass, float]:
    """Filled, when `apply` starts executing, with the rate each of its limiters starts from."""
    seen: dict[OperationClass, float] = {}

    async def spy(plan: Plan, execution: Execution) -> list[Record]:
        seen.update({op: limiter.per_minute for op, limiter in execution.limits.limiters.items()})
        return await execute(plan, execution)

    monkeypatch.setattr(apply_module, "execute", spy)
    return seen


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], HALF_OF_SKU["standard"]),
        (["--sku", "basic"], HALF_OF_SKU["basic"]),
        (["--sku", "premium"], HALF_OF_SKU["premium"]),
        (["--sku", "premium", "--max-deletes-per-minute", "120"], {READ: 5000, WRITE: 1000, DELETE: 120}),
        (
            ["--max-writes-per-minute", "30", "--max-reads-per-minute", "90"],
            {READ: 90, WRITE: 30, DELETE: 250},
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
    assert starting_budgets == expected
    assert "Applied: 4 manifests deleted" in err
