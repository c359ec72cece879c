"""Whether the registry's soft delete is on, read from ARM (the data plane does not tell).

`properties.policies.softDeletePolicy` (`{status, retentionDays}`) exists only in preview API
versions of the registry resource (acr-softdelete.md §1). The stable azure-mgmt-containerregistry
release (15.0.0) does not model it and its preview (15.1.0b3) is not installable here, so one GET
is sent with azure-core's own pipeline (already a dependency): the identity needs only Reader on
the registry. Anything that keeps the answer from being read makes the status "unknown", never
"on": a run that cannot prove its deletes are recoverable says they are permanent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from azure.core import AsyncPipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, AsyncRetryPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest

from retention.registry.connection import first_line

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# The preview API version azure-cli 2.91.0's client (azure-mgmt-containerregistry 15.1.0b3) uses;
# stable versions neither return nor accept softDeletePolicy (acr-softdelete.md §1).
ARM_API_VERSION = "2026-09-01-preview"
RESOURCE_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/[^/]+",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SoftDeletePolicy:
    state: Literal["on", "off", "unknown"]
    retention_days: int | None = None
    why_unknown: str | None = None


async def read_soft_delete(
    credential: AsyncTokenCredential | None,
    resource_id: str | None,
    *,
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT,
) -> SoftDeletePolicy:
    if not resource_id:
        return SoftDeletePolicy("unknown", why_unknown="no --registry-resource-id given")
    if credential is None:
        return SoftDeletePolicy("unknown", why_unknown="ARM cannot be read anonymously")
    endpoint = arm_endpoint.rstrip("/")
    policies = [
        AsyncRetryPolicy(retry_total=2),
        AsyncBearerTokenCredentialPolicy(credential, f"{endpoint}/.default"),
    ]
    client: AsyncPipelineClient[HttpRequest, AsyncHttpResponse] = AsyncPipelineClient(
        endpoint, policies=policies, transport=AioHttpTransport()
    )
    request = HttpRequest("GET", f"{endpoint}{resource_id}", params={"api-version": ARM_API_VERSION})
    try:
        async with client:
            response: AsyncHttpResponse = await client.send_request(request)
            await response.read()
    except AzureError as exc:
        return SoftDeletePolicy("unknown", why_unknown=f"ARM could not be read: {first_line(exc)}")
    if response.status_code != 200:  # noqa: PLR2004
        return SoftDeletePolicy("unknown", why_unknown=f"ARM answered {response.status_code}")
    try:
        document = json.loads(response.text())
        policy = document["properties"]["policies"].get("softDeletePolicy")
    except (ValueError, KeyError, TypeError, AttributeError):
        return SoftDeletePolicy("unknown", why_unknown="ARM's answer has no properties.policies")
    if not isinstance(policy, dict):
        return SoftDeletePolicy("unknown", why_unknown="ARM's answer has no softDeletePolicy")
    days = policy.get("retentionDays")
    status = str(policy.get("status", "")).lower()
    if status == "enabled" and isinstance(days, int) and days > 0:
        return SoftDeletePolicy("on", retention_days=days)
    if status == "disabled":
        return SoftDeletePolicy("off", retention_days=days if isinstance(days, int) else None)
    return SoftDeletePolicy("unknown", why_unknown=f"softDeletePolicy status {status or 'missing'!r}")
