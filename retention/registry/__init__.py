"""The registry adapter: the only package that imports `azure.*`.

It maps SDK models and exceptions to the project's own types once, here:
`Repository`/`Manifest`/`Tag` values out, `RegistryError` (one clear line,
exit 1) for conditions a user can cause, `AccessDeniedError` and
`WriteFailedError` for the executor.

- `connection`: where the registry is, and one-line errors for the user;
- `auth`: cached registry tokens and where the Entra token comes from;
- `reader`: the live inventory, repository by repository;
- `writer`: deletes and property changes.
"""

from retention.registry.auth import (
    ACCESS_TOKEN_VARIABLE,
    JitteredRetryPolicy,
    StaticTokenCredential,
    TokenCache,
    default_credential,
    open_client,
    scope_for,
)
from retention.registry.connection import (
    DEFAULT_AUDIENCE,
    Connection,
    RegistryError,
    RegistryTarget,
    close_credential,
)
from retention.registry.reader import (
    Skipped,
    iter_registry,
    list_names,
    read_registry,
    read_repository,
    read_shard,
)
from retention.registry.writer import RegistryWriter

__all__ = [
    "ACCESS_TOKEN_VARIABLE",
    "DEFAULT_AUDIENCE",
    "Connection",
    "JitteredRetryPolicy",
    "RegistryError",
    "RegistryTarget",
    "RegistryWriter",
    "Skipped",
    "StaticTokenCredential",
    "TokenCache",
    "close_credential",
    "default_credential",
    "iter_registry",
    "list_names",
    "open_client",
    "read_registry",
    "read_repository",
    "read_shard",
    "scope_for",
]
