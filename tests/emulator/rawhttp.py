"""A raw HTTPS client for wire-level tests: the path goes out exactly as written (no
normalisation of %2F or ':'), and every header of the answer is kept, repeated ones included."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from tests.emulator.server import Emulator


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    def __init__(self, host: str, port: int, ca_file: str) -> None:
        self.host, self.port = host, port
        self.service = f"{host}:{port}"
        self.context = ssl.create_default_context(cafile=ca_file)

    @classmethod
    def of(cls, emulator: Emulator) -> RawClient:
        return cls(emulator.host, emulator.port, emulator.ca_file)

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> RawResponse:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return RawResponse(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def form(self, path: str, fields: list[tuple[str, str]]) -> RawResponse:
        body = urlencode(fields).encode()
        return self.request(
            "POST", path, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body
        )

    def refresh_token(self, aad_token: str = "aad-token") -> str:  # noqa: S107 - a fake
        answer = self.form(
            "/oauth2/exchange?api-version=2021-07-01",
            [("grant_type", "access_token"), ("service", self.service), ("access_token", aad_token)],
        )
        assert answer.status == 200, answer.body
        token: str = answer.json()["refresh_token"]
        return token

    def access_token(self, scope: str, aad_token: str = "aad-token") -> str:  # noqa: S107 - a fake
        answer = self.form(
            "/oauth2/token?api-version=2021-07-01",
            [
                ("service", self.service),
                ("scope", scope),
                ("refresh_token", self.refresh_token(aad_token)),
                ("grant_type", "refresh_token"),
            ],
        )
        assert answer.status == 200, answer.body
        token: str = answer.json()["access_token"]
        return token

    def authorized(
        self,
        method: str,
        path: str,
        scope: str = "repository:*:* registry:catalog:*",
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> RawResponse:
        """The request with a bearer token for `scope` (by default everything)."""
        bearer = {"Authorization": f"Bearer {self.access_token(scope)}"}
        return self.request(method, path, headers={**bearer, **(headers or {})}, body=body)
