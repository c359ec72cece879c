"""Redaction: credentials taken out of any text before it reaches a message, a log event or a report.

One function, `redact`, for every place where text that may carry a secret is shown: an
option's value echoed in a usage error, an SDK or registry error message, a URL in a log
event. It is pure: the same text (and the same `known` secrets) always gives the same result.

What goes (each replaced by `***`):

- a URL's userinfo: `https://user:secret@host` → `https://user:***@host`, and a lone
  `https://token@host` → `https://***@host`;
- query and form values whose key looks like a credential (`sig=`, `token=`, `access_token=`,
  `client_secret=`, `api-key=`, `password=`, `code=`, …), and the same keys as JSON members
  (`"refresh_token": "…"`);
- `Authorization:` header values, and whatever follows `Bearer` or `Basic`;
- JWT-shaped strings (`eyJ….….…`): Entra ID and ACR tokens;
- any of the `known` secret values (at least 8 characters), wherever they appear.

Redaction errs towards hiding too much: a false positive costs a less helpful message, a miss
leaks a credential into CI logs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

MASK = "***"
_MIN_KNOWN = 8  # shorter "secrets" would mask ordinary words

# Keys of query, form or JSON members that carry credentials. Matched whole, case-insensitively,
# with `-` read as `_`; also any key ending in one of _SUFFIXES (`client_secret`, `x_api_key`).
_KEYS = frozenset(
    {
        "sig",
        "signature",
        "code",
        "key",
        "apikey",
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "assertion",
        "client_assertion",
        "sas",
    }
)
_SUFFIXES = ("token", "secret", "password", "_key", "apikey", "_sig", "signature", "credential")

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
_PARAMETER = re.compile(r"(?P<lead>(?:^|[?&;\s,(\[{'\"]))(?P<key>[A-Za-z][\w.-]*)=(?P<value>[^&;#\s'\"<>]*)")
_JSON_MEMBER = re.compile(r"(?P<lead>[\"'](?P<key>[A-Za-z][\w.-]*)[\"']\s*:\s*[\"'])(?P<value>[^\"']*)")
_AUTHORIZATION = re.compile(
    r"(?P<lead>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?!bearer|basic)[A-Za-z-]+\s+)?)"
    r"(?P<value>(?!bearer\b|basic\b)[^\s\"',;]+)",
    re.IGNORECASE,
)
# A scheme's credentials, but not a challenge's parameters (`Bearer realm="…",service="…"`), nor a
# word: a credential has a digit, punctuation or an inner capital, or is long ("Basic authentication").
_SCHEME = re.compile(
    r"(?P<lead>\b(?i:bearer|basic)\s+)(?![A-Za-z_]+=\")(?=[A-Za-z]*[0-9._~+/=-]|[A-Za-z][a-z]*[A-Z]|[A-Za-z]{24})"
    r"(?P<value>[A-Za-z0-9._~+/=-]+)"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def is_credential_key(key: str) -> bool:
    """Whether a query, form or JSON key names a credential (`sig`, `access_token`, `Api-Key`)."""
    name = key.lower().replace("-", "_")
    return name in _KEYS or name.endswith(_SUFFIXES)


def redact(text: str, *, known: Iterable[str] = ()) -> str:
    """`text` with every credential it carries replaced by `***` (see the module's docstring)."""
    for secret in sorted({s for s in known if len(s) >= _MIN_KNOWN}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _JWT.sub(MASK, text)
    text = _USERINFO.sub(_userinfo, text)
    text = _AUTHORIZATION.sub(lambda m: m["lead"] + MASK, text)
    text = _PARAMETER.sub(_member, text)
    text = _JSON_MEMBER.sub(_member, text)
    return _SCHEME.sub(lambda m: m["lead"] + MASK, text)


def redact_url(url: str) -> str:
    """A URL given by the user, shown safely: as `redact`, but its authority is split the way
    `urllib.parse.urlsplit` splits it (up to the last `@` before the path), so that a password
    holding spaces, quotes or `@` is masked whole even when the URL is malformed."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        authority = _masked_userinfo(userinfo) + "@" + host
    return redact(scheme + separator + authority + tail)


def _masked_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon and user else MASK


def _userinfo(match: re.Match[str]) -> str:
    return match["scheme"] + _masked_userinfo(match["userinfo"]) + "@"


def _member(match: re.Match[str]) -> str:
    if not is_credential_key(match["key"]) or not match["value"] or match["value"] == MASK:
        return match[0]
    if match["key"].lower().endswith("authorization"):
        return match[0]  # `Authorization=<scheme> <credentials>`: the header rule keeps the scheme
    return match[0][: match.start("value") - match.start()] + MASK
