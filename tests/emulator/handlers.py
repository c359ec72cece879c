"""One coroutine per operation: read the request, call the registry, answer in ACR's shapes."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from aiohttp import web

from tests.emulator import wire
from tests.emulator.auth import ANONYMOUS, invalid_audience_message, parse_scopes
from tests.emulator.deleted import DeletedHandlers

if TYPE_CHECKING:
    from tests.emulator.auth import AuthService
    from tests.emulator.counters import Counters
    from tests.emulator.routes import Route
    from tests.emulator.state import ManifestRecord, Registry, RepositoryRecord, TagRecord

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Config:
    registry_name: str
    login_server: str = ""
    list_references: bool = True
    max_page_size: int = 1000
    default_page_size: int = 100


@dataclass
class Call:
    request: web.Request
    route: Route
    query: dict[str, list[str]]
    subject: str | None = None

    def arg(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    @property
    def name(self) -> str:
        assert self.route.repository is not None
        return self.route.repository

    @property
    def argument(self) -> str:
        assert self.route.argument is not None
        return self.route.argument


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(status=status, body=data, headers={"Content-Type": wire.JSON_TYPE, **(headers or {})})


def empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers={"Content-Length": "0", **(headers or {})})


class Handlers(DeletedHandlers):
    def __init__(self, registry: Registry, auth: AuthService, counters: Counters, config: Config) -> None:
        self.registry = registry
        self.auth = auth
        self.counters = counters
        self.config = config

    # --- helpers -----------------------------------------------------------------------------

    def _page_size(self, call: Call) -> int:
        text = call.arg("n")
        if text is None or text == "":
            return self.config.default_page_size
        if not text.isdigit() or int(text) < 1:
            raise wire.RegistryError(
                400, wire.errors("PAGINATION_NUMBER_INVALID", "invalid number of results requested")
            )
        return min(int(text), self.config.max_page_size)

    @staticmethod
    def _order(call: Call) -> str:
        # "", "none" and a missing value all mean the default order (acr-wire.md §2).
        order = (call.arg("orderby") or "").lower()
        return order if order in ("timeasc", "timedesc") else ""

    @staticmethod
    def _link(path: str, last: str, n: int, orderby: str, extra: str = "") -> dict[str, str]:
        # Relative, percent-encoded, `n` and `orderby` repeated: the SDK follows it verbatim.
        return {"Link": f'<{path}?last={quote(last, safe="")}&n={n}&orderby={orderby}{extra}>; rel="next"'}

    def _manifest_json(
        self, repository: RepositoryRecord, record: ManifestRecord, *, single: bool
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "digest": record.digest,
            "imageSize": record.image_size,
            "createdTime": wire.format_time(record.created),
            "lastUpdateTime": wire.format_time(record.updated),
        }
        if record.architecture is not None:
            item["architecture"] = record.architecture
        if record.os is not None:
            item["os"] = record.os
        item["mediaType"] = record.media_type
        if record.config_media_type is not None:
            item["configMediaType"] = record.config_media_type
        if record.tags:
            item["tags"] = sorted(record.tags)  # omitted when untagged, as ACR does
        item["changeableAttributes"] = record.attrs.to_wire()
        if record.media_type in wire.INDEX_TYPES and (single or self.config.list_references):
            references = []
            for digest in record.references:
                child = repository.manifests.get(digest)
                references.append(
                    {
                        "digest": digest,
                        "architecture": child.architecture if child else None,
                        "os": child.os if child else None,
                    }
                )
            item["references"] = references
        return item

    @staticmethod
    def _tag_json(tag: TagRecord) -> dict[str, Any]:
        return {
            "name": tag.name,
            "digest": tag.digest,
            "createdTime": wire.format_time(tag.created),
            "lastUpdateTime": wire.format_time(tag.updated),
            "signed": False,
            "changeableAttributes": tag.attrs.to_wire(),
        }

    def _repository_json(self, repository: RepositoryRecord) -> dict[str, Any]:
        return {
            "registry": self.config.registry_name,
            "imageName": repository.name,
            "createdTime": wire.format_time(repository.created),
            "lastUpdateTime": wire.format_time(repository.updated),
            "manifestCount": len(repository.manifests),
            "tagCount": len(repository.tags),
            "changeableAttributes": repository.attrs.to_wire(),
        }

    @staticmethod
    async def _patch_body(call: Call) -> dict[str, Any]:
        try:
            body = json.loads(await call.request.read() or b"{}")
        except ValueError:
            raise wire.RegistryError(
                400, wire.errors("UNSUPPORTED", "the request body is not JSON")
            ) from None
        if not isinstance(body, dict):
            raise wire.RegistryError(400, wire.errors("UNSUPPORTED", "the request body is not a JSON object"))
        return body

    # --- /acr/v1 -----------------------------------------------------------------------------

    async def catalog(self, call: Call) -> web.Response:
        n = self._page_size(call)
        page = self.registry.catalog(call.arg("last"), n)
        headers = self._link("/acr/v1/_catalog", page.keys[-1], n, "") if page.more else {}
        return json_response(200, {"repositories": page.keys}, headers)

    async def get_repository(self, call: Call) -> web.Response:
        with self.registry.lock:
            repository = self.registry.get(call.name)
            if repository is None:
                raise wire.repository_not_found(call.name)
            return json_response(200, self._repository_json(repository))

    async def update_repository(self, call: Call) -> web.Response:
        patch = await self._patch_body(call)
        with self.registry.lock:
            repository = self.registry.get(call.name)
            if repository is None:
                raise wire.repository_not_found(call.name)
            repository.attrs.merge(patch)
            return json_response(200, self._repository_json(repository))

    async def delete_repository(self, call: Call) -> web.Response:
        digests, tags = self.registry.delete_repository(call.name)
        # ACR sends null, not [], for an empty list (recordings: delete_tag, upload_blob_in_chunk).
        return json_response(202, {"manifestsDeleted": digests or None, "tagsDeleted": tags or None})

    async def list_manifests(self, call: Call) -> web.Response:
        n, order = self._page_size(call), self._order(call)
        with self.registry.lock:
            records, cursor, more = self.registry.manifest_page(call.name, order, call.arg("last"), n)
            repository = self.registry.require(call.name)
            items = [self._manifest_json(repository, record, single=False) for record in records]
        headers = {}
        if more and cursor is not None:
            headers = self._link(f"/acr/v1/{quote(call.name, safe='')}/_manifests", cursor, n, order)
        body = {"registry": self.config.registry_name, "imageName": call.name, "manifests": items}
        return json_response(200, body, headers)

    def _single_manifest(self, repository: RepositoryRecord, record: ManifestRecord) -> web.Response:
        body = {
            "registry": self.config.registry_name,
            "imageName": repository.name,
            "manifest": self._manifest_json(repository, record, single=True),
        }
        return json_response(200, body)

    async def get_manifest_properties(self, call: Call) -> web.Response:
        with self.registry.lock:
            repository, record = self.registry.manifest(call.name, call.argument)
            return self._single_manifest(repository, record)

    async def patch_manifest(self, call: Call) -> web.Response:
        patch = await self._patch_body(call)
        with self.registry.lock:
            repository, record = self.registry.patch_manifest(call.name, call.argument, patch)
            return self._single_manifest(repository, record)

    async def list_tags(self, call: Call) -> web.Response:
        n, order, digest = self._page_size(call), self._order(call), call.arg("digest") or None
        tags, cursor, more = self.registry.tag_page(call.name, order, call.arg("last"), n, digest)
        headers = {}
        if more and cursor is not None:
            extra = f"&digest={quote(digest, safe='')}" if digest else ""
            headers = self._link(f"/acr/v1/{quote(call.name, safe='')}/_tags", cursor, n, order, extra)
        body = {
            "registry": self.config.registry_name,
            "imageName": call.name,
            # Recorded: a repository without tags lists `"tags": null`.
            "tags": [self._tag_json(tag) for tag in tags] or None,
        }
        return json_response(200, body, headers)

    def _single_tag(self, repository: RepositoryRecord, tag: TagRecord) -> web.Response:
        body = {
            "registry": self.config.registry_name,
            "imageName": repository.name,
            "tag": self._tag_json(tag),
        }
        return json_response(200, body)

    async def get_tag(self, call: Call) -> web.Response:
        with self.registry.lock:
            repository, tag = self.registry.tag(call.name, call.argument)
            return self._single_tag(repository, tag)

    async def patch_tag(self, call: Call) -> web.Response:
        patch = await self._patch_body(call)
        with self.registry.lock:
            repository, tag = self.registry.patch_tag(call.name, call.argument, patch)
            return self._single_tag(repository, tag)

    async def delete_tag(self, call: Call) -> web.Response:
        tag = self.registry.delete_tag(call.name, call.argument)
        return empty(202, {"X-Ms-Int-Docker-Content-Digest": tag.digest})

    # --- /v2 ---------------------------------------------------------------------------------

    async def v2_base(self, call: Call) -> web.Response:
        del call
        return json_response(200, {})

    async def v2_catalog(self, call: Call) -> web.Response:
        n = self._page_size(call)
        page = self.registry.catalog(call.arg("last"), n)
        headers = {}
        if page.more:
            headers = {"Link": f'</v2/_catalog?last={quote(page.keys[-1], safe="")}&n={n}>; rel="next"'}
        return json_response(200, {"repositories": page.keys}, headers)

    async def tags_list(self, call: Call) -> web.Response:
        n = self._page_size(call)
        tags, cursor, more = self.registry.tag_page(call.name, "", call.arg("last"), n, None)
        headers = {}
        if more and cursor is not None:
            headers = {"Link": f'</v2/{call.name}/tags/list?last={quote(cursor, safe="")}&n={n}>; rel="next"'}
        return json_response(200, {"name": call.name, "tags": [tag.name for tag in tags]}, headers)

    def _content(self, call: Call) -> web.Response:
        with self.registry.lock:
            repository = self.registry.require(call.name)
            record = self.registry.resolve(repository, call.argument)
            if record is None:
                raise wire.manifest_unknown(call.argument)
            headers = {
                "Content-Type": record.media_type,
                "Docker-Content-Digest": record.digest,
                "ETag": f'"{record.digest}"',
            }
            return web.Response(status=200, body=record.body, headers=headers)

    async def get_manifest(self, call: Call) -> web.Response:
        return self._content(call)

    async def head_manifest(self, call: Call) -> web.Response:
        return self._content(call)

    async def put_manifest(self, call: Call) -> web.Response:
        body = await call.request.read()
        record = self.registry.put_manifest(
            call.name, call.argument, call.request.headers.get("Content-Type"), body
        )
        return empty(
            201,
            {
                "Docker-Content-Digest": record.digest,
                "Location": f"/v2/{call.name}/manifests/{record.digest}",
            },
        )

    async def delete_manifest(self, call: Call) -> web.Response:
        self.registry.delete_manifest(call.name, call.argument)
        return empty(202)

    async def get_blob(self, call: Call) -> web.Response:
        data = self.registry.blob(call.name, call.argument)
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": call.argument}
        ranged = call.request.headers.get("Range")
        if ranged is None:
            return web.Response(status=200, body=data, headers=headers)
        match = _RANGE.fullmatch(ranged.strip())
        start = int(match.group(1)) if match else 0
        end = int(match.group(2)) if match and match.group(2) else len(data) - 1
        end = min(end, len(data) - 1)
        if match is None or start > end:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        headers["Accept-Ranges"] = "bytes"
        return web.Response(status=206, body=data[start : end + 1], headers=headers)

    async def head_blob(self, call: Call) -> web.StreamResponse:
        size = self.registry.blob_size(call.name, call.argument)
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/octet-stream", "Docker-Content-Digest": call.argument},
        )
        response.content_length = size
        return response

    async def delete_blob(self, call: Call) -> web.Response:
        self.registry.delete_blob(call.name, call.argument)
        return empty(202, {"Docker-Content-Digest": call.argument})

    def _upload_headers(self, name: str, upload_id: str, size: int, started: float) -> dict[str, str]:
        state = {"Name": name, "UUID": upload_id, "Offset": size, "StartedAt": started}
        token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return {
            # Literal '/' in the name, as ACR writes upload locations (recorded).
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}?_nouploadcache=false&_state={quote(token, safe='')}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    async def start_upload(self, call: Call) -> web.Response:
        mount, source = call.arg("mount"), call.arg("from")
        if mount and source and self.registry.mount(call.name, mount, source):
            return empty(201, {"Docker-Content-Digest": mount, "Location": f"/v2/{call.name}/blobs/{mount}"})
        upload = self.registry.start_upload(call.name)
        digest = call.arg("digest")
        if digest:  # monolithic upload: POST with the content and its digest
            self.registry.finish(call.name, upload.uuid, digest, await call.request.read())
            return empty(
                201, {"Docker-Content-Digest": digest, "Location": f"/v2/{call.name}/blobs/{digest}"}
            )
        return empty(202, self._upload_headers(call.name, upload.uuid, 0, time.time()))

    async def upload_chunk(self, call: Call) -> web.Response:
        upload = self.registry.append(call.name, call.argument, await call.request.read())
        return empty(202, self._upload_headers(call.name, upload.uuid, len(upload.data), time.time()))

    async def upload_status(self, call: Call) -> web.Response:
        upload = self.registry.upload(call.name, call.argument)
        return empty(204, self._upload_headers(call.name, upload.uuid, len(upload.data), time.time()))

    async def cancel_upload(self, call: Call) -> web.Response:
        self.registry.cancel(call.name, call.argument)
        return empty(204)

    async def complete_upload(self, call: Call) -> web.Response:
        digest = call.arg("digest")
        if not digest:
            raise wire.digest_invalid()
        self.registry.finish(call.name, call.argument, digest, await call.request.read())
        return empty(201, {"Docker-Content-Digest": digest, "Location": f"/v2/{call.name}/blobs/{digest}"})

    async def referrers(self, call: Call) -> web.Response:
        wanted = call.arg("artifactType")
        descriptors = []
        for record in self.registry.referrers(call.name, call.argument):
            if wanted and record.referrer_type != wanted:
                continue
            descriptor: dict[str, Any] = {
                "mediaType": record.media_type,
                "digest": record.digest,
                "size": len(record.body),
            }
            if record.referrer_type is not None:
                descriptor["artifactType"] = record.referrer_type
            descriptors.append(descriptor)
        body = {"schemaVersion": 2, "mediaType": wire.OCI_INDEX, "manifests": descriptors}
        headers = {"Content-Type": wire.OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        return web.Response(
            status=200, body=json.dumps(body, separators=(",", ":")).encode(), headers=headers
        )

    # --- /oauth2 -----------------------------------------------------------------------------

    async def _form(self, call: Call) -> dict[str, list[str]]:
        text = (await call.request.read()).decode("utf-8", "replace")
        return parse_qs(text, keep_blank_values=True)

    @staticmethod
    def _unauthorized(message: str = wire.AUTH_MESSAGE) -> web.Response:
        return json_response(401, wire.errors("UNAUTHORIZED", message))

    async def exchange(self, call: Call) -> web.Response:
        form = await self._form(call)
        grant_type = (form.get("grant_type") or [""])[0]
        service = (form.get("service") or [self.config.login_server])[0]
        subject: str | None
        if grant_type == "access_token":
            aad_token = (form.get("access_token") or [""])[0]
            audience = self.auth.refused_audience(aad_token)
            if audience is not None:
                # Recorded [set_audience]: an Entra token for another audience.
                return _plain_json_401(invalid_audience_message(audience))
            subject = self.auth.aad_subject(aad_token)
            if subject is None:
                # Recorded for an identity the registry does not know [construct_container_registry_client].
                return _plain_json_401("retrieving permissions failed")
        elif grant_type == "refresh_token":
            subject = self.auth.refresh_subject((form.get("refresh_token") or [""])[0])
            if subject is None:
                return self._unauthorized()
        else:
            return json_response(400, wire.errors("UNSUPPORTED", f"unsupported grant_type {grant_type!r}"))
        self.counters.phase("exchange")
        return json_response(200, {"refresh_token": self.auth.refresh_token(subject, service)})

    async def token(self, call: Call) -> web.Response:
        if call.request.method == "GET":
            # Docker's token flow (skopeo, docker): query parameters, Basic credentials or none.
            form = call.query
            authorization = call.request.headers.get("Authorization", "")
            subject = self.auth.basic_subject(authorization) if authorization else ANONYMOUS
        else:
            form = await self._form(call)
            grant_type = (form.get("grant_type") or [""])[0]
            if grant_type == "refresh_token":
                subject = self.auth.refresh_subject((form.get("refresh_token") or [""])[0])
            elif grant_type == "password":
                user, password = (form.get("username") or [""])[0], (form.get("password") or [""])[0]
                subject = self.auth.password_subject(user, password) if user else ANONYMOUS
            else:
                return json_response(
                    400, wire.errors("UNSUPPORTED", f"unsupported grant_type {grant_type!r}")
                )
        if subject is None:
            return self._unauthorized()
        service = (form.get("service") or [self.config.login_server])[0]
        scopes = parse_scopes(form.get("scope", []))
        wildcards = [s for s in scopes if s.kind == "repository" and s.name == "*"]
        if wildcards and self.auth.wildcard_scopes == "refuse":
            return self._unauthorized()
        if wildcards and self.auth.wildcard_scopes == "drop":
            scopes = [s for s in scopes if s not in wildcards]
        self.counters.phase("token")
        return json_response(200, {"access_token": self.auth.access_token(subject, service, scopes)})


def _plain_json_401(message: str) -> web.Response:
    """ACR's refusals at the exchange: `Content-Type: application/json`, without a charset (recorded)."""
    data = json.dumps(wire.errors("UNAUTHORIZED", message), separators=(",", ":")).encode()
    return web.Response(status=401, body=data, headers={"Content-Type": "application/json"})
