"""The inventory's requests within the read budget (retention/registry/budget.py), unit by unit:
what a 429 does, when it gives up, what a 5xx does not do, and how Retry-After is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import pytest

from retention.ratelimit import AdaptiveLimiter, OperationClass
from retention.registry.budget import RequestBudget, operation_class, retry_after
from tests.test_ratelimit import FakeClock


class Registry:
    """The rest of the pipeline: answers with the statuses given, then 200; counts what it got."""

    def __init__(self, clock: FakeClock, statuses: list[int], retry_after: str | None = "1") -> None:
        self.clock, self.statuses, self.retry_after = clock, statuses, retry_after
        self.sent: list[float] = []

    async def send(self, request: Any) -> Any:
        del request
        self.sent.append(self.clock.now)
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
        return SimpleNamespace(http_response=SimpleNamespace(status_code=status, headers=headers))


def request(method: str = "GET", url: str = "https://r.azurecr.io/acr/v1/app/_manifests") -> Any:
    return SimpleNamespace(http_request=SimpleNamespace(method=method, url=url))


def budgeted(
    statuses: list[int], *, give_up_after_s: float = 600.0
) -> tuple[RequestBudget, Registry, AdaptiveLimiter]:
    clock = FakeClock()
    limiter = AdaptiveLimiter(per_minute=600, clock=clock, sleep=clock.sleep)
    policy = RequestBudget({OperationClass.READ: limiter}, give_up_after_s=give_up_after_s, clock=clock)
    registry = Registry(clock, statuses)
    policy.next = registry  # type: ignore[assignment]
    return policy, registry, limiter


def test_429s_are_sent_again_after_the_pause_and_cut_the_rate_once_per_epoch() -> None:
    policy, registry, limiter = budgeted([429, 429, 429])
    answer = asyncio.run(policy.send(request()))
    assert answer.http_response.status_code == 200
    assert registry.sent == pytest.approx([0.0, 1.0, 2.0, 3.0])  # each after its 1 s Retry-After
    assert (limiter.throttled_count, limiter.decreases, limiter.sent) == (3, 3, 4)


def test_a_request_refused_for_the_whole_give_up_time_goes_back_to_the_sdk_as_its_429() -> None:
    policy, registry, limiter = budgeted([429] * 100, give_up_after_s=10.0)
    answer = asyncio.run(policy.send(request()))
    assert answer.http_response.status_code == 429
    assert len(registry.sent) == 11  # the first at 0 s, one a second, given up at 10 s
    assert limiter.throttled_count == 11


def test_a_5xx_neither_cuts_nor_raises_the_rate_and_is_left_to_the_sdks_retry() -> None:
    policy, registry, limiter = budgeted([503])
    answer = asyncio.run(policy.send(request()))
    assert answer.http_response.status_code == 503
    assert (len(registry.sent), limiter.throttled_count, limiter.per_minute) == (1, 0, 600)


def test_token_requests_and_other_classes_without_a_budget_pass_unpaced() -> None:
    policy, _registry, limiter = budgeted([429])
    token = asyncio.run(policy.send(request("POST", "https://r.azurecr.io/oauth2/token")))
    assert token.http_response.status_code == 429  # the SDK's to retry: ACR budgets tokens per registry
    deleted = asyncio.run(policy.send(request("DELETE")))  # no delete budget given: not paced here
    assert deleted.http_response.status_code == 200
    assert limiter.sent == 0


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", OperationClass.READ), ("HEAD", OperationClass.READ), ("PATCH", OperationClass.WRITE),
     ("PUT", OperationClass.WRITE), ("POST", OperationClass.WRITE), ("DELETE", OperationClass.DELETE)],
)  # fmt: skip
def test_operation_classes_are_acrs(method: str, expected: OperationClass) -> None:
    assert operation_class(method) is expected


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    assert retry_after({"Retry-After": "30"}) == 30.0
    assert retry_after({"Retry-After": "0.250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    later = format_datetime(datetime(2026, 12, 5, 0, 0, 45, tzinfo=UTC), usegmt=True)
    assert retry_after({"Retry-After": later}, now=lambda: now) == pytest.approx(45.0)
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "-5"}) == 0.0
