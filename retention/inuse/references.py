"""Image references as a container runtime reads them: `host/repository[:tag][@digest]`. Pure.

The grammar is the distribution project's (`reference.ParseNormalizedNamed`): the first path
component is a registry host only if it has a `.` or a `:` or is `localhost`; otherwise the image
is on Docker Hub, which is never this registry. A reference that does not parse is not one a
kubelet could pull either, so it protects nothing; the caller counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# distribution/reference: path components are lowercase alphanumerics joined by `.`, `_`, `__`,
# or runs of `-`; tags are 1-128 word characters, dots and dashes, not starting with either.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}))?",
    re.ASCII,
)
_IMAGE_ID = re.compile(r"[a-z0-9]+:[a-fA-F0-9]{32,}", re.ASCII)
# What kubelets put in containerStatuses[].imageID before the reference (dockershim, cri-dockerd).
_RUNTIME_PREFIXES = ("docker-pullable://", "docker://")
# A name is at most 255 characters, a tag 128, a digest about 140: anything longer is not a
# reference, and the bound keeps the (backtracking) match short on hostile input.
MAX_REFERENCE = 1024


@dataclass(frozen=True, slots=True)
class ImageName:
    """A parsed reference. `host` is lowercase (DNS names are not case-sensitive)."""

    host: str
    repository: str
    tag: str | None
    digest: str | None


def parse_reference(text: str) -> ImageName | None:
    """The reference `text` names, or None when it is not one a runtime could pull from a
    registry host (a bare image ID, Docker Hub shorthand is returned with host docker.io)."""
    if len(text) > MAX_REFERENCE:
        return None
    for prefix in _RUNTIME_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if _IMAGE_ID.fullmatch(text):
        return None  # `sha256:…` alone is an image ID (a config digest), which names no repository
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return None
    host, path = match["host"], match["path"]
    if host is not None and not _is_host(host):
        # `team/app`: the first component is a path, not a host (no dot, no port, not localhost).
        path = f"{host}/{path}"
        host = None
        if _REFERENCE.fullmatch(f"{path}{_suffix(match)}") is None:
            return None
    if host is None:
        path = path if "/" in path else f"library/{path}"
        return ImageName("docker.io", path, match["tag"], _digest(match))
    return ImageName(host.lower(), path, match["tag"], _digest(match))


def _is_host(candidate: str) -> bool:
    return "." in candidate or ":" in candidate or candidate == "localhost" or candidate.startswith("[")


def _digest(match: re.Match[str]) -> str | None:
    digest = match["digest"]
    if digest is None:
        return None
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part.lower()}"


def _suffix(match: re.Match[str]) -> str:
    return (f":{match['tag']}" if match["tag"] else "") + (f"@{match['digest']}" if match["digest"] else "")


def registry_host(name: str) -> str:
    """A registry as the tool is given it (`myreg.azurecr.io`, `https://myreg.azurecr.io/`,
    `127.0.0.1:5000`) as the host part image references use, lowercase."""
    host = name.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    return host.split("/", 1)[0].lower()
