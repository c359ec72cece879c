"""Snapshot files (interfaces.md §3): read into inventory values, and written back.

Reading streams: the top-level object is scanned by hand and each
repository is decoded, checked and converted on its own, so a snapshot of a
million manifests never exists as one tree of dicts. Every problem is one
`SnapshotError` naming the file and the JSON path (or line and column for
JSON syntax). Raw dicts stop here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn

from retention.errors import SnapshotError
from retention.inputfiles import DATA_LIMIT, MAX_INTEGER, InputFileError, read_bounded
from retention.inventory import Inventory, Manifest, Repository, Tag
from retention.timefmt import format_time, parse_time

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator
    from datetime import datetime
    from pathlib import Path

SNAPSHOT_FORMAT = "acr-retention/snapshot"
SNAPSHOT_FORMAT_VERSION = 1

# OCI image-spec digest grammar: algorithm ":" encoded.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# OCI distribution-spec tag grammar.
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_FLAGS = ("can_delete", "can_write", "can_read", "can_list")
_OPTIONAL_TEXT = ("media_type", "architecture", "os", "artifact_type")


class _Invalid(Exception):  # noqa: N818 - internal signal, turned into SnapshotError with the file name
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class SnapshotReader:
    """One snapshot file, read lazily: iterate `repositories()`, then the header fields are final.

    `registry` and `taken_at` are known once iteration ends (JSON key order is
    free, so they may follow the repositories). Iteration raises
    SnapshotError on the first problem.
    """

    path: str
    text: str
    require_created: bool = False
    registry: str | None = None
    taken_at: datetime | None = None
    _header: dict[str, Any] = field(default_factory=dict)

    def repositories(self) -> Iterator[Repository]:
        try:
            yield from self._scan()
        except _Invalid as exc:
            raise SnapshotError(f"{self.path}: {exc.path}: {exc.message}") from None
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{self.path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
        except RecursionError:
            # The JSON decoder's own depth guard, even under a key nothing reads.
            raise SnapshotError(f"{self.path}: JSON nested deeper than about 1,000 levels") from None
        finally:
            # The file's text is as large as the file; nothing needs it once the scan is over.
            self.text = ""

    def header_registry(self) -> str | None:
        """`registry` as far as the scan has read (before the repositories, in files this tool writes)."""
        registry = self._header.get("registry")
        return registry if isinstance(registry, str) else None

    def _scan(self) -> Iterator[Repository]:
        text = self.text
        decoder = json.JSONDecoder(object_pairs_hook=unique_keys)
        at = self._expect(text, _skip(text, 0), "{", "a JSON object")
        seen_repositories = False
        at = _skip(text, at)
        if text[at : at + 1] == "}":
            at += 1
        else:
            while True:
                if text[at : at + 1] != '"':
                    self._syntax(at, "expected a key in double quotes")
                key, at = decoder.raw_decode(text, at)
                at = self._expect(text, _skip(text, at), ":", "':'")
                at = _skip(text, at)
                if key in self._header or (key == "repositories" and seen_repositories):
                    raise _Invalid(f"$.{key}", "appears twice")
                if key == "repositories":
                    seen_repositories = True
                    at = yield from self._repositories(text, at, decoder)
                else:
                    self._header[key], at = _decoded(decoder, text, at, f"$.{key}")
                    if key in ("format", "format_version"):
                        self._check_format()
                at = _skip(text, at)
                if text[at : at + 1] == ",":
                    at = _skip(text, at + 1)
                    continue
                at = self._expect(text, at, "}", "',' or '}'")
                break
        if _skip(text, at) != len(text):
            self._syntax(_skip(text, at), "unexpected data after the snapshot object")
        self._check_header()
        if not seen_repositories:
            raise _Invalid("$", "'repositories' is missing")

    def _repositories(
        self, text: str, at: int, decoder: json.JSONDecoder
    ) -> Generator[Repository, None, int]:
        if text[at : at + 1] != "[":
            raise _Invalid("$.repositories", "expected a list of repositories")
        at = _skip(text, at + 1)
        names: set[str] = set()
        index = 0
        if text[at : at + 1] == "]":
            return at + 1
        while True:
            raw, at = _decoded(decoder, text, at, f"$.repositories[{index}]")
            repository = _repository(raw, index, require_created=self.require_created)
            if repository.name in names:
                raise _Invalid(
                    f"$.repositories[{index}].name", f"repository {repository.name!r} appears twice"
                )
            names.add(repository.name)
            yield repository
            index += 1
            at = _skip(text, at)
            if text[at : at + 1] == ",":
                at = _skip(text, at + 1)
                continue
            return self._expect(text, at, "]", "',' or ']'")

    def _check_format(self) -> None:
        fmt = self._header.get("format", SNAPSHOT_FORMAT)
        if fmt != SNAPSHOT_FORMAT:
            hint = " (this is a plan, not a snapshot)" if fmt == "acr-retention/plan" else ""
            raise _Invalid("$.format", f"expected {SNAPSHOT_FORMAT!r}, found {fmt!r}{hint}")
        version = self._header.get("format_version", SNAPSHOT_FORMAT_VERSION)
        if version != SNAPSHOT_FORMAT_VERSION or isinstance(version, bool):
            raise _Invalid(
                "$.format_version",
                f"unsupported snapshot format version {version!r}; this acr-retention reads version"
                f" {SNAPSHOT_FORMAT_VERSION}",
            )

    def _check_header(self) -> None:
        self._check_format()
        for key in ("format", "format_version"):
            if key not in self._header:
                raise _Invalid("$", f"{key!r} is missing: is this an acr-retention snapshot?")
        registry = self._header.get("registry")
        if registry is not None and not isinstance(registry, str):
            raise _Invalid("$.registry", "expected a string")
        self.registry = registry
        self.taken_at = _optional_time(self._header.get("taken_at"), "$.taken_at")

    def _expect(self, text: str, at: int, char: str, what: str) -> int:
        if text[at : at + 1] != char:
            self._syntax(at, f"expected {what}")
        return at + 1

    def _syntax(self, at: int, message: str) -> NoReturn:
        line = self.text.count("\n", 0, at) + 1
        column = at - self.text.rfind("\n", 0, at)
        raise SnapshotError(f"{self.path}:{line}:{column}: not valid JSON: {message}")


TOO_MANY_DIGITS = "a number has more digits than this tool reads (4,300)"


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice; `json` would keep the last one without a word."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` refusing duplicate keys (a snapshot's YAML twin, the policy, does too)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return result


def _decoded(decoder: json.JSONDecoder, text: str, at: int, where: str) -> tuple[Any, int]:
    try:
        return decoder.raw_decode(text, at)
    except DuplicateKeyError as exc:
        raise _Invalid(where, f"an object names {exc.key!r} twice") from None
    except json.JSONDecodeError:
        raise
    except ValueError:
        # Python's int() refuses more than 4,300 digits (a guard against quadratic parsing).
        raise _Invalid(where, TOO_MANY_DIGITS) from None


def _skip(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def open_snapshot(
    path: Path | str, *, require_created: bool = False, limit: int = DATA_LIMIT
) -> SnapshotReader:
    """Read a snapshot file's text (at most `limit` bytes); decoding happens while iterating
    `repositories()`."""
    name = str(path)
    try:
        data = read_bounded(name, limit=limit, raise_with="--max-input-size")
    except InputFileError as exc:
        raise SnapshotError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise SnapshotError(f"{name}:{line}:{column}: not UTF-8 (byte 0x{data[exc.start]:02x})") from None
    del data
    if not text.strip():
        raise SnapshotError(f"{name}: file is empty")
    return SnapshotReader(path=name, text=text.removeprefix("\ufeff"), require_created=require_created)


def load_snapshot(path: Path | str, *, require_created: bool = False, limit: int = DATA_LIMIT) -> Inventory:
    """Read a whole snapshot into memory (tests and small registries; the CLI streams)."""
    reader = open_snapshot(path, require_created=require_created, limit=limit)
    repositories = tuple(reader.repositories())
    return Inventory(registry=reader.registry, taken_at=reader.taken_at, repositories=repositories)


def _repository(raw: Any, index: int, *, require_created: bool) -> Repository:
    where = f"$.repositories[{index}]"
    if type(raw) is not dict:
        raise _Invalid(where, "expected an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _Invalid(f"{where}.name", "expected a non-empty string")
    manifests_raw = raw.get("manifests", [])
    if type(manifests_raw) is not list:
        raise _Invalid(f"{where}.manifests", "expected a list")
    manifests: list[Manifest] = []
    digests: set[str] = set()
    tags: dict[str, int] = {}
    for position, item in enumerate(manifests_raw):
        manifest = _manifest(item, f"{where}.manifests[{position}]", require_created=require_created)
        if manifest.digest in digests:
            raise _Invalid(f"{where}.manifests[{position}].digest", f"{manifest.digest} appears twice")
        digests.add(manifest.digest)
        for tag in manifest.tags:
            if tag.name in tags:
                raise _Invalid(
                    f"{where}.manifests[{position}].tags",
                    f"tag {tag.name!r} is also on manifests[{tags[tag.name]}]; a tag names one manifest",
                )
            tags[tag.name] = position
        manifests.append(manifest)
    unreadable = raw.get("unreadable")
    if unreadable is not None and (not isinstance(unreadable, str) or not unreadable):
        raise _Invalid(f"{where}.unreadable", "expected a non-empty string or null")
    return Repository(name=name, manifests=tuple(manifests), unreadable=unreadable)


def _manifest(raw: Any, where: str, *, require_created: bool) -> Manifest:
    if type(raw) is not dict:
        raise _Invalid(where, "expected an object")
    digest = _digest(raw.get("digest"), f"{where}.digest", required=True)
    assert digest is not None  # noqa: S101 - required=True never returns None
    if "updated_at" not in raw:
        raise _Invalid(f"{where}.updated_at", "is required")
    updated_at = _time(raw["updated_at"], f"{where}.updated_at")
    created_raw = raw.get("created_at")
    if created_raw is None and require_created:
        raise _Invalid(f"{where}.created_at", "is required because the policy orders by created")
    created_at = _optional_time(created_raw, f"{where}.created_at")
    size = raw.get("size_bytes")
    if size is not None and (type(size) is not int or not 0 <= size <= MAX_INTEGER):
        raise _Invalid(f"{where}.size_bytes", "expected an integer from 0 to 2^63-1, or null")
    references_raw = raw.get("references", [])
    if type(references_raw) is not list:
        raise _Invalid(f"{where}.references", "expected a list of digests")
    references = tuple(
        _digest(ref, f"{where}.references[{i}]", required=True) or "" for i, ref in enumerate(references_raw)
    )
    texts: dict[str, str | None] = {}
    for key in _OPTIONAL_TEXT:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise _Invalid(f"{where}.{key}", "expected a string or null")
        texts[key] = value
    flags = _flags(raw, where)
    tags_raw = raw.get("tags", [])
    if type(tags_raw) is not list:
        raise _Invalid(f"{where}.tags", "expected a list")
    return Manifest(
        digest=digest,
        updated_at=updated_at,
        created_at=created_at,
        media_type=texts["media_type"],
        size_bytes=size,
        architecture=texts["architecture"],
        os=texts["os"],
        references=references,
        subject=_digest(raw.get("subject"), f"{where}.subject", required=False),
        artifact_type=texts["artifact_type"],
        can_delete=flags[0],
        can_write=flags[1],
        can_read=flags[2],
        can_list=flags[3],
        tags=tuple(_tag(item, f"{where}.tags[{i}]") for i, item in enumerate(tags_raw)),
    )


def _tag(raw: Any, where: str) -> Tag:
    if isinstance(raw, str):
        if not _TAG.fullmatch(raw):
            raise _Invalid(where, f"{raw!r} is not a valid tag name")
        return Tag(raw)
    if type(raw) is not dict:
        raise _Invalid(where, "expected a tag name or an object with 'name'")
    name = raw.get("name")
    if not isinstance(name, str) or not _TAG.fullmatch(name):
        raise _Invalid(f"{where}.name", f"{name!r} is not a valid tag name")
    flags = _flags(raw, where)
    return Tag(
        name=name,
        created_at=_optional_time(raw.get("created_at"), f"{where}.created_at"),
        updated_at=_optional_time(raw.get("updated_at"), f"{where}.updated_at"),
        can_delete=flags[0],
        can_write=flags[1],
        can_read=flags[2],
        can_list=flags[3],
    )


def _flags(raw: dict[str, Any], where: str) -> tuple[bool, bool, bool, bool]:
    values = []
    for key in _FLAGS:
        value = raw.get(key, True)
        if type(value) is not bool:
            raise _Invalid(f"{where}.{key}", f"expected true or false, found {value!r}")
        values.append(value)
    return (values[0], values[1], values[2], values[3])


def _digest(raw: Any, where: str, *, required: bool) -> str | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or not _DIGEST.fullmatch(raw):
        raise _Invalid(where, f"{raw!r} is not a digest such as sha256:4f0c…")
    return raw


def _time(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str):
        raise _Invalid(where, f"expected an RFC 3339 time such as 2026-11-26T00:00:00Z, found {raw!r}")
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise _Invalid(where, str(exc)) from None


def _optional_time(raw: Any, where: str) -> datetime | None:
    return None if raw is None else _time(raw, where)


def write_snapshot(
    handle: IO[str],
    *,
    registry: str | None,
    taken_at: datetime | None,
    repositories: Iterable[Repository],
) -> None:
    """Write a snapshot one repository at a time (the header first, so readers can stream it)."""
    header = {
        "format": SNAPSHOT_FORMAT,
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "registry": registry,
        "taken_at": format_time(taken_at) if taken_at else None,
    }
    handle.write(json.dumps(header, indent=1)[:-2] + ',\n "repositories": [')
    for index, repository in enumerate(repositories):
        handle.write("," if index else "")
        handle.write("\n  " + json.dumps(repository_to_json(repository), separators=(",", ":")))
    handle.write("\n ]\n}\n")


def repository_to_json(repository: Repository) -> dict[str, Any]:
    out: dict[str, Any] = {"name": repository.name}
    if repository.unreadable is not None:
        out["unreadable"] = repository.unreadable
    out["manifests"] = [manifest_to_json(m) for m in repository.manifests]
    return out


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "digest": manifest.digest,
        "media_type": manifest.media_type,
        "created_at": format_time(manifest.created_at) if manifest.created_at else None,
        "updated_at": format_time(manifest.updated_at),
        "size_bytes": manifest.size_bytes,
        "architecture": manifest.architecture,
        "os": manifest.os,
        "references": list(manifest.references),
        "subject": manifest.subject,
        "artifact_type": manifest.artifact_type,
        "can_delete": manifest.can_delete,
        "can_write": manifest.can_write,
        "can_read": manifest.can_read,
        "can_list": manifest.can_list,
        "tags": [_tag_to_json(tag) for tag in manifest.tags],
    }
    return out


def _tag_to_json(tag: Tag) -> str | dict[str, Any]:
    if tag == Tag(tag.name):
        return tag.name
    out: dict[str, Any] = {"name": tag.name}
    if tag.created_at:
        out["created_at"] = format_time(tag.created_at)
    if tag.updated_at:
        out["updated_at"] = format_time(tag.updated_at)
    for key in _FLAGS:
        out[key] = getattr(tag, key)
    return out
