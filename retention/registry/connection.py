"""Where the registry is and how its failures read: the target, the connection, one-line errors."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from retention.errors import RetentionError
from retention.redact import redact, redact_url
from retention.registry.auth import (
    ACCESS_TOKEN_VARIABLE,
    StaticTokenCredential,
    TokenStore,
    wrong_audience,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from azure.core.credentials_async import AsyncTokenCredential

    from retention.ratelimit import OperationClass, SharedBudget


DEFAULT_AUDIENCE = "https://containerregistry.azure.net"
# ACR registry names: 5-50 alphanumerics. `localhost` is a host, not a registry name.
_BARE_NAME = re.compile(r"(?!localhost$)[A-Za-z0-9]{5,50}")


class RegistryError(RetentionError):
    """The registry cannot be read: bad name, unreachable, or credentials refused."""


@dataclass(frozen=True)
class RegistryTarget:
    """Where the registry is: `login_server` names it in plans, `endpoint` is what the SDK calls."""

    login_server: str
    endpoint: str
    completed: bool = False  # a bare name (`myreg`) taken as `myreg.azurecr.io`

    @classmethod
    def parse(cls, text: str) -> RegistryTarget:
        """`myreg.azurecr.io`, `https://myreg.azurecr.io`, `https://127.0.0.1:8443`, or a bare
        registry name (`myreg`, as `az acr -n` takes it), which means `myreg.azurecr.io`."""
        value = text.strip()
        if _BARE_NAME.fullmatch(value):
            login = f"{value.lower()}.azurecr.io"
            return cls(login_server=login, endpoint=f"https://{login}", completed=True)
        shown = repr(redact_url(text))  # `https://user:password@…` is refused, and not echoed whole
        invalid = f"registry {shown} is not a login server such as myregistry.azurecr.io"
        try:
            url = urlsplit(value if "://" in value else f"https://{value}")
        except ValueError:  # an unbalanced `[`
            raise RegistryError(invalid) from None
        if url.scheme != "https":
            raise RegistryError(f"registry {shown}: only https:// registries are supported")
        if not url.hostname or url.path not in ("", "/") or url.query or "@" in url.netloc:
            raise RegistryError(invalid)
        return cls(login_server=url.netloc, endpoint=f"https://{url.netloc}")


@dataclass(frozen=True)
class Connection:
    target: RegistryTarget
    credential: AsyncTokenCredential | None  # None: anonymous
    audience: str = DEFAULT_AUDIENCE
    concurrency: int = 8  # repositories read at once, per reader process
    processes: int = 1  # reader processes for the inventory (retention.parallel)
    cache_path: str | None = None  # the content cache (retention.registry.cache); None: no cache
    # One budget per operation class for the whole run, in shared memory so that reader processes
    # spend it together (retention.ratelimit); None: the inventory is not paced.
    budgets: Mapping[OperationClass, SharedBudget] | None = None
    # Registry tokens obtained so far, shared by the run's clients (auth.TokenStore).
    tokens: TokenStore = field(default_factory=TokenStore, compare=False, repr=False)


@contextlib.asynccontextmanager
async def registry_errors(connection: Connection) -> AsyncIterator[None]:
    """The SDK's exceptions for a whole registry, as one line for the user."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise RegistryError(refused_message(connection, exc)) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise RegistryError(
            f"cannot reach registry {connection.target.login_server}: {first_line(exc)}"
        ) from None
    except HttpResponseError as exc:
        raise RegistryError(
            f"registry {connection.target.login_server} answered {exc.status_code}: {first_line(exc)}"
        ) from None


async def close_credential(connection: Connection) -> None:
    """Close the credential's sessions: each event loop that used it is about to end."""
    if connection.credential is not None and hasattr(connection.credential, "close"):
        await connection.credential.close()


def first_line(exc: Exception) -> str:
    """The first line of an SDK or registry error, redacted: registries and proxies echo tokens,
    URLs carry SAS signatures, and the line ends up in CI logs and reports."""
    text = str(getattr(exc, "message", None) or exc)
    return redact(text.strip().splitlines()[0]) if text.strip() else type(exc).__name__


def refused_message(connection: Connection, exc: Exception) -> str:
    """One line for credentials the registry refused; a token for the wrong audience says so."""
    login = connection.target.login_server
    audience = wrong_audience(exc)
    if audience is not False and isinstance(connection.credential, StaticTokenCredential):
        return (
            f"registry {login}: the access token in ${ACCESS_TOKEN_VARIABLE} is for another audience"
            + (f" ({audience})" if audience else "")
            + f"; get one for {connection.audience} (az account get-access-token --resource"
            f" {connection.audience})"
        )
    if audience is not False:
        differs = audience and audience.rstrip("/") != connection.audience.rstrip("/")
        return (
            f"registry {login}: the Azure credential's token is for another audience"
            + (f" ({audience})" if differs else "")
            + f"; check --audience (now {connection.audience})"
        )
    if connection.credential is not None and _no_credential(exc):
        # Nothing was refused: no credential source was found at all. Say where one comes from.
        return (
            f"registry {login}: no Azure credential is available here; sign in with `az login`, run"
            " under a workload or managed identity, set AZURE_CLIENT_ID, AZURE_TENANT_ID and"
            f" AZURE_CLIENT_SECRET, put a registry token in ${ACCESS_TOKEN_VARIABLE}, or use --anonymous"
            " for a registry with anonymous pull"
        )
    who = "anonymous access" if connection.credential is None else "the Azure credential"
    return f"registry {login}: {who} was refused: {first_line(exc)}"


def _no_credential(exc: Exception) -> bool:
    """DefaultAzureCredential found no source it could use (as opposed to a token refused)."""
    text = str(getattr(exc, "message", None) or exc)
    return (
        isinstance(exc, CredentialUnavailableError)
        or "to retrieve a token from the included credentials" in text
    )
