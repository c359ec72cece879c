"""ACR's token service: scopes, identities, refresh and access tokens, and per-request checks.

Tokens are JWT-shaped (header.payload.signature, HMAC-signed with a per-emulator key) and carry
everything needed to check them, so the emulator stores no tokens. Refresh tokens are written so
that the SDK's naive decoder can read them (acr-wire.md §3.4): standard base64 with `"=" * (len % 4)`
padding chokes on the URL-safe alphabet, so their payload segment is re-rolled until it uses
`[A-Za-z0-9]` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Entra ID audiences ACR accepts at /oauth2/exchange: its own, and the ARM ones the recorded refusal
# lists [set_audience]. A token without an `aud` claim (an opaque fake) is accepted too.
ALLOWED_AUDIENCES = (
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
)
ACCEPTED_AUDIENCES = frozenset(
    {"https://containerregistry.azure.net", "https://containerregistry.azure.net/", *ALLOWED_AUDIENCES}
)


def invalid_audience_message(received: str) -> str:
    """ACR's message for an Entra token of another audience, word for word as recorded [set_audience]."""
    allowed = ", ".join(f'"{a}"' for a in ALLOWED_AUDIENCES)
    return (
        "token invalid audience: the received access token has been obtained for wrong audience or"
        f' resource "{received}". It should exactly match with one of the allowed audiences {allowed}.'
    )


def entra_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT-shaped Entra token, unverified (the emulator cannot check Entra's
    signature); {} for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def entra_identity(token: str) -> str:
    """Who an Entra token stands for: its `sub` claim when it has one, else the token itself
    (so `add_identity("aad-token")` also covers JWT-shaped fakes minted for subject "aad-token")."""
    subject = entra_claims(token).get("sub")
    return subject if isinstance(subject, str) and subject else token


REPOSITORY_ACTIONS = (
    "metadata_read",
    "metadata_write",
    "delete",
    "pull",
    "push",
    "deleted_read",
    "deleted_restore",
)
ROLES = frozenset({*REPOSITORY_ACTIONS, "catalog"})
# What an anonymous-pull registry lets anyone do (recordings: test_anon_access lists and reads).
ANONYMOUS_ROLES = frozenset({"pull", "metadata_read", "catalog"})
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # "repository" or "registry"
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}:{','.join(self.actions)}"

    def detail(self) -> list[dict[str, str]]:
        """The 401 body's `detail`: one entry per action (recorded: pull and push apart)."""
        return [{"Type": self.kind, "Name": self.name, "Action": action} for action in self.actions]


def parse_scopes(texts: Iterable[str]) -> list[Scope]:
    """Scopes as clients send them: space-separated, repeated, with `*` for a name or the actions."""
    scopes = []
    for text in texts:
        for part in text.split():
            kind, _, rest = part.partition(":")
            name, _, actions = rest.rpartition(":")
            names = tuple(a for a in actions.split(",") if a)
            if kind and name and names:
                scopes.append(Scope(kind, name, names))
    return scopes


def grant(roles: frozenset[str], requested: Iterable[Scope]) -> list[Scope]:
    """What a token gets: the requested actions the identity's roles allow (like ACR, never an error)."""
    out = []
    for scope in requested:
        if scope.kind == "registry":
            if scope.name == "catalog" and "catalog" in roles:
                out.append(Scope("registry", "catalog", ("*",)))
            # Listing deleted repositories is part of `deleted/read` (acr-softdelete.md §1).
            if scope.name == "deleted_catalog" and "deleted_read" in roles:
                out.append(Scope("registry", "deleted_catalog", ("*",)))
        elif scope.kind == "repository":
            wanted = REPOSITORY_ACTIONS if "*" in scope.actions else scope.actions
            allowed = tuple(a for a in dict.fromkeys(wanted) if a in roles and a in REPOSITORY_ACTIONS)
            if allowed:
                out.append(Scope("repository", scope.name, allowed))
    return out


def allows(access: Iterable[Scope], needed: Scope) -> bool:
    granted = list(access)
    return all(
        any(
            a.kind == needed.kind
            and a.name in (needed.name, "*")
            and (action in a.actions or "*" in a.actions)
            for a in granted
        )
        for action in needed.actions
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sdk_decodable(segment: str) -> bool:
    """Whether azure-containerregistry 1.2.0's `_parse_exp_time` can read this payload segment."""
    if not segment.isalnum() or not segment.isascii():
        return False
    try:
        json.loads(base64.b64decode(segment + "=" * (len(segment) % 4)).decode())
    except (binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Decision:
    subject: str | None  # who, when the credentials were valid
    allowed: bool
    insufficient: bool  # valid credentials without the right: the challenge adds error="insufficient_scope"


class AuthService:
    def __init__(
        self,
        *,
        anonymous_pull: bool,
        strict_identities: bool,
        access_token_lifetime: float,
        refresh_token_lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.anonymous_pull = anonymous_pull
        self.strict_identities = strict_identities
        # How the token endpoint treats `repository:*:<action>` scopes. "grant" as an RBAC registry;
        # ABAC registries do not support wildcard repository scopes (ops.md §1.3): "refuse" answers
        # the request 401, "drop" grants a token without them.
        self.wildcard_scopes: Literal["grant", "refuse", "drop"] = "grant"
        # Entra audiences accepted at the exchange; tokens without an `aud` claim always are.
        self.audiences: frozenset[str] = ACCEPTED_AUDIENCES
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._aad: dict[str, frozenset[str]] = {}  # AAD identity (entra_identity) -> roles
        self._aad_subjects: dict[str, str] = {}  # subject -> AAD identity
        self._basic: dict[str, tuple[str, frozenset[str]]] = {}  # user -> (password, roles)

    # --- identities --------------------------------------------------------------------------

    def add_identity(self, aad_token: str, roles: Iterable[str]) -> None:
        roles = frozenset(roles)
        if unknown := roles - ROLES:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
        identity = entra_identity(aad_token)
        with self._lock:
            self._aad[identity] = roles
            self._aad_subjects[self._aad_subject(identity)] = identity

    def add_basic_user(self, username: str, password: str, roles: Iterable[str]) -> None:
        roles = frozenset(roles)
        if unknown := roles - ROLES:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
        with self._lock:
            self._basic[username] = (password, roles)

    def reset_identities(self) -> None:
        with self._lock:
            self._aad.clear()
            self._aad_subjects.clear()
            self._basic.clear()

    @staticmethod
    def _aad_subject(aad_token: str) -> str:
        return "aad:" + hashlib.sha256(aad_token.encode()).hexdigest()[:16]

    def roles(self, subject: str) -> frozenset[str]:
        """Looked up when a token is issued, as ACR evaluates permissions at token time."""
        with self._lock:
            if subject == ANONYMOUS:
                return ANONYMOUS_ROLES if self.anonymous_pull else frozenset()
            if subject.startswith("basic:"):
                entry = self._basic.get(subject.removeprefix("basic:"))
                return entry[1] if entry else frozenset()
            token = self._aad_subjects.get(subject)
            if token is not None:
                return self._aad[token]
            return frozenset() if self.strict_identities else ROLES

    def aad_subject(self, aad_token: str) -> str | None:
        identity = entra_identity(aad_token)
        with self._lock:
            if self.strict_identities and identity not in self._aad:
                return None
            return self._aad_subject(identity)

    def refused_audience(self, aad_token: str) -> str | None:
        """The `aud` of an Entra token ACR would refuse at the exchange; None when it has no `aud`
        claim (opaque fakes) or one of `audiences`."""
        audience = entra_claims(aad_token).get("aud")
        if audience is None or audience in self.audiences:
            return None
        return str(audience)

    def basic_subject(self, header: str) -> str | None:
        """`Basic base64(user:password)` of a known user (admin user or a token password)."""
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.password_subject(user, password)

    def password_subject(self, user: str, password: str) -> str | None:
        with self._lock:
            entry = self._basic.get(user)
        if entry is None or not hmac.compare_digest(entry[0], password):
            return None
        return "basic:" + user

    # --- tokens ------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], *, sdk_readable: bool) -> str:
        header = _b64(b'{"alg":"HS256","typ":"JWT"}')
        while True:
            claims["jti"] = secrets.token_hex(8)
            payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
            if not sdk_readable or sdk_decodable(payload):
                break
        signature = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def _read(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header, payload, signature = parts
        expected = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        return claims if isinstance(claims, dict) else None

    def refresh_token(self, subject: str, service: str) -> str:
        now = int(self.clock())
        claims = {
            "sub": subject,
            "aud": service,
            "iat": now,
            "exp": now + int(self.refresh_token_lifetime),
            "grant_type": "refresh_token",
        }
        return self._sign(claims, sdk_readable=True)

    def refresh_subject(self, token: str) -> str | None:
        """The subject of a refresh token this emulator issued. Expiry is not checked: the SDK
        caches opaque or near-expiry refresh tokens forever (acr-wire.md §3.4)."""
        claims = self._read(token)
        if claims is None or claims.get("grant_type") != "refresh_token":
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) else None

    def access_token(self, subject: str, service: str, requested: Iterable[Scope]) -> str:
        now = self.clock()
        access = grant(self.roles(subject), requested)
        claims = {
            "sub": subject,
            "aud": service,
            "iat": int(now),
            "exp": now + self.access_token_lifetime,
            "grant_type": "access_token",
            "access": [{"type": s.kind, "name": s.name, "actions": list(s.actions)} for s in access],
        }
        return self._sign(claims, sdk_readable=False)

    def _access(self, token: str) -> tuple[str, list[Scope]] | None:
        claims = self._read(token)
        if claims is None or claims.get("grant_type") != "access_token":
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock():
            return None
        scopes = [
            Scope(str(a.get("type")), str(a.get("name")), tuple(str(x) for x in a.get("actions", ())))
            for a in claims.get("access", ())
            if isinstance(a, dict)
        ]
        return str(claims.get("sub")), scopes

    # --- per request -------------------------------------------------------------------------

    def subject_of(self, authorization: str) -> str:
        """Who a request claims to be, for per-identity throttling; never an auth decision."""
        if authorization.startswith("Bearer "):
            checked = self._access(authorization[7:].strip())
            if checked is not None:
                return checked[0]
        if authorization.startswith("Basic "):
            return self.basic_subject(authorization) or ANONYMOUS
        return ANONYMOUS

    def decide(self, authorization: str, needed: Scope | None) -> Decision:
        """`needed` None: any valid credentials do (the `/v2/` ping)."""
        if authorization.startswith("Bearer "):
            checked = self._access(authorization[7:].strip())
            if checked is None:
                return Decision(None, allowed=False, insufficient=False)
            subject, access = checked
            ok = needed is None or allows(access, needed)
            return Decision(subject, allowed=ok, insufficient=not ok)
        if authorization.startswith("Basic "):
            user = self.basic_subject(authorization)
            if user is None:
                return Decision(None, allowed=False, insufficient=False)
            ok = needed is None or allows(grant(self.roles(user), [needed]), needed)
            return Decision(user, allowed=ok, insufficient=not ok)
        return Decision(None, allowed=False, insufficient=False)
