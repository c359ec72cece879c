"""The soft-delete routes (`/acr/v1/_deleted/…`) and ARM's registry resource, in ACR's shapes.

Bodies carry only the keys azure-cli reads (acr-softdelete.md §2): `repositories`, `manifests`,
`tags`, each item with `deletedAt` (and `createdAt`); a client must not rely on more. Lists run
oldest deletion first; `last` is an opaque cursor (`<microseconds>|<id>`) that the `Link` header
carries with `n`, as the CLI expects.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from tests.emulator import wire

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tests.emulator.handlers import Call, Config
    from tests.emulator.state import Registry

_ARM_PATH = re.compile(
    r"subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/([^/]+)",
    re.IGNORECASE,
)
# softDeletePolicy exists only in preview API versions, from 2022-02-01-preview on (acr-softdelete.md §1).
_FIRST_PREVIEW = "2022-02-01-preview"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    # As handlers.json_response (which imports this module).
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(status=status, body=data, headers={"Content-Type": wire.JSON_TYPE, **(headers or {})})


def _cursor(key: tuple[int, str]) -> str:
    return f"{key[0]}|{key[1]}"


def _after(last: str | None) -> tuple[int, str] | None:
    if not last:
        return None
    stamp, bar, ident = last.partition("|")
    if not bar or not stamp.lstrip("-").isdigit():
        raise wire.bad_request("invalid last")
    return (int(stamp), ident)


class DeletedHandlers:
    """Mixed into `handlers.Handlers`."""

    registry: Registry
    config: Config
    _page_size: Callable[[Call], int]

    def _deleted_page(
        self, call: Call, path: str, key: str, items: Sequence[Any], item: Callable[[Any], dict[str, Any]]
    ) -> web.Response:
        n = self._page_size(call)
        after = _after(call.arg("last"))
        rest = [i for i in items if after is None or i.key > after]
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            last = quote(_cursor(page[-1].key), safe="")
            headers["Link"] = f'<{path}?last={last}&n={n}>; rel="next"'
        return json_response(200, {key: [item(i) for i in page]}, headers)

    async def deleted_catalog(self, call: Call) -> web.Response:
        with self.registry.lock:
            trash = self.registry.trash
            trash.purge(self.registry.clock())
            return self._deleted_page(
                call,
                "/acr/v1/_deleted/_catalog",
                "repositories",
                trash.deleted_repositories(),
                lambda r: {
                    "repository": r.name,
                    "createdAt": wire.format_time(r.created),
                    "deletedAt": wire.format_time(r.deleted_at),
                },
            )

    async def deleted_manifests(self, call: Call) -> web.Response:
        with self.registry.lock:
            trash = self.registry.trash
            trash.purge(self.registry.clock())
            return self._deleted_page(
                call,
                f"/acr/v1/_deleted/{quote(call.name, safe='')}/_manifests",
                "manifests",
                trash.deleted_manifests(call.name),
                lambda m: {
                    "digest": m.record.digest,
                    "createdAt": wire.format_time(m.record.created),
                    "deletedAt": wire.format_time(m.deleted_at),
                },
            )

    async def deleted_tags(self, call: Call) -> web.Response:
        with self.registry.lock:
            trash = self.registry.trash
            trash.purge(self.registry.clock())
            return self._deleted_page(
                call,
                f"/acr/v1/_deleted/{quote(call.name, safe='')}/_tags",
                "tags",
                trash.deleted_tags(call.name),
                lambda t: {
                    "tag": t.tag.name,
                    "digest": t.tag.digest,
                    "createdAt": wire.format_time(t.tag.created),
                    "deletedAt": wire.format_time(t.deleted_at),
                },
            )

    async def restore_deleted(self, call: Call) -> web.Response:
        force = (call.arg("force") or "false").lower() == "true"  # azure-cli sends True/False
        try:
            body = json.loads(await call.request.read() or b"{}")
        except ValueError:
            raise wire.bad_request("the request body is not JSON") from None
        tag = body.get("tag") if isinstance(body, dict) else None
        if tag is not None and (not isinstance(tag, str) or not wire.TAG_NAME.fullmatch(tag)):
            raise wire.bad_request("tag is not a tag name")
        digest = call.argument
        if not wire.DIGEST.fullmatch(digest):
            raise wire.bad_request("not a digest")
        with self.registry.lock:
            self.registry.trash.purge(self.registry.clock())
            self.registry.trash.restore(self.registry, call.name, digest, tag, force=force)
        return json_response(200, {"digest": digest, "tag": tag})

    async def arm_registry(self, call: Call) -> web.Response:
        """`GET …/registries/{name}?api-version=…` with any Entra bearer token: the registry resource
        with `properties.policies.softDeletePolicy`, which only preview API versions carry."""
        match = _ARM_PATH.fullmatch(call.argument)
        if not call.request.headers.get("Authorization", "").startswith("Bearer "):
            return json_response(
                401, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}}
            )
        if match is None:
            return json_response(404, {"error": {"code": "ResourceNotFound", "message": "not found"}})
        version = call.arg("api-version") or ""
        trash = self.registry.trash
        policies: dict[str, Any] = {"retentionPolicy": {"days": 7, "status": "disabled"}}
        if version.endswith("-preview") and version >= _FIRST_PREVIEW:
            policies["softDeletePolicy"] = {
                "retentionDays": trash.retention_days,
                "status": "enabled" if trash.enabled else "disabled",
            }
        document = {
            "id": "/" + call.argument,
            "name": match.group(1),
            "type": "Microsoft.ContainerRegistry/registries",
            "properties": {"loginServer": self.config.login_server, "policies": policies},
        }
        return json_response(200, document)
