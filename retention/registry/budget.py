"""The inventory's requests within the run's budgets: a policy in the SDK client's pipeline.

ACR throttles each identity per operation class (ops.md §1.1). The inventory reads through the
SDK, whose own retry policy, left alone, spends six 429 retries in a few seconds when eight
repositories and their content reads hit a throttled registry at once, and then the whole run
fails. This policy sits after the SDK's retry and authentication policies, so it sees every
request that goes on the wire (the authentication challenge's too, which ACR counts): each one
waits for a slot of its class's `AdaptiveLimiter`, and a 429 is answered here, by pausing every
request of the class for its Retry-After, cutting the rate and sending again, instead of
reaching the SDK's retry count. A repository does not fail for 429s while the registry still
answers: only a request refused for `give_up_after_s` without a break is handed to the SDK as
the 429 it is.

Token requests (`/oauth2/`) are not paced: ACR budgets them per registry, not per identity, and
a run makes a handful of them (auth.TokenCache).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.pipeline.policies import AsyncHTTPPolicy

from retention.ratelimit import GIVE_UP_AFTER_S, OperationClass

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from azure.core.pipeline import PipelineRequest, PipelineResponse

    from retention.ratelimit import AdaptiveLimiter

_THROTTLED = 429
_SERVER_ERROR = 500


def operation_class(method: str) -> OperationClass:
    """ACR's classes: reads (GET, HEAD), writes (PUT, PATCH, POST) and deletes."""
    if method == "DELETE":
        return OperationClass.DELETE
    if method in ("PUT", "PATCH", "POST"):
        return OperationClass.WRITE
    return OperationClass.READ


def retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Retry-After in seconds: delay-seconds (ACR sends whole ones; fractions are accepted) or an
    HTTP date; None when absent or unreadable."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError, IndexError):
        return None


class RequestBudget(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """Every request within its class's limiter; 429s absorbed by pausing and sending again."""

    def __init__(
        self,
        limiters: Mapping[OperationClass, AdaptiveLimiter],
        *,
        give_up_after_s: float = GIVE_UP_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.limiters = limiters
        self.give_up_after_s = give_up_after_s
        self.clock = clock

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        limiter = self.limiters.get(operation_class(http.method))
        if limiter is None or urlsplit(http.url).path.startswith("/oauth2/"):
            return await self.next.send(request)
        refused_since: float | None = None
        while True:
            epoch = await limiter.acquire()
            response = await self.next.send(request)
            status = response.http_response.status_code
            if status != _THROTTLED:
                if status < _SERVER_ERROR:  # a 5xx says nothing about the budget
                    limiter.succeeded(sent_in=epoch)
                return response
            # acquire() holds every request of the class until this pause has passed.
            limiter.throttled(retry_after(response.http_response.headers), sent_in=epoch)
            now = self.clock()
            refused_since = now if refused_since is None else refused_since
            if now - refused_since >= self.give_up_after_s:
                return response
