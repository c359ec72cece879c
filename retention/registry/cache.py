"""The content cache: what manifest content told us, kept by digest across runs (SQLite).

A manifest is immutable: the same digest names the same bytes forever, so what reading its
content learned (an index's children, a referrer's subject, its artifact type) never changes.
Issue 9 made the live inventory read the content of every manifest that can be a referrer; on
a scheduled run nearly all of them were read the night before. With the cache a second run reads
only what is new.

Only content the SDK has checked against its digest is stored (a manifest deleted meanwhile, or
one whose bytes did not match, never is). Each row carries a checksum of its digest and body, so
a damaged file reads as a miss, never as a wrong answer. SQLite's WAL mode and a busy timeout let
two runs (two reader processes, a CronJob and an operator) share the file. Anything wrong with the
file (unwritable, corrupt, locked for too long) is one warning and a run without the cache: never
a failed run, never a wrong plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Final

import structlog

log = structlog.get_logger("acr-retention")

CACHE_VARIABLE: Final = "ACR_RETENTION_CACHE"
_SCHEMA: Final = 1
_BUSY_TIMEOUT_S: Final = 10.0
_CHUNK: Final = 500  # digests per lookup query (SQLite's parameter limit is far higher)


def default_cache_path() -> Path:
    """$ACR_RETENTION_CACHE, else $XDG_CACHE_HOME/acr-retention/content.sqlite3 (~/.cache)."""
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "acr-retention" / "content.sqlite3"


def learned(content: dict[str, Any]) -> dict[str, Any]:
    """What the inventory uses from a manifest's content, in the content's own keys."""
    kept: dict[str, Any] = {}
    children = [m["digest"] for m in content.get("manifests", ()) if isinstance(m, dict) and m.get("digest")]
    if children:
        kept["manifests"] = [{"digest": str(d)} for d in children]
    subject = content.get("subject")
    if isinstance(subject, dict) and subject.get("digest"):
        kept["subject"] = {"digest": str(subject["digest"])}
    if isinstance(content.get("artifactType"), str):
        kept["artifactType"] = content["artifactType"]
    if isinstance(content.get("mediaType"), str):
        kept["mediaType"] = content["mediaType"]
    return kept


class ContentCache:
    """Digest -> what its content told. Thread-safe (reader threads share one connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._broken = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS content"
            " (digest TEXT PRIMARY KEY, body TEXT NOT NULL, checksum TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
        (schema,) = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if schema != str(_SCHEMA):
            raise sqlite3.DatabaseError(f"cache schema {schema}, this version uses {_SCHEMA}")

    def get_many(self, digests: list[str]) -> dict[str, dict[str, Any]]:
        """The cached content of those digests that are cached and intact."""
        found: dict[str, dict[str, Any]] = {}
        if self._broken or not digests:
            return found
        try:
            with self._lock:
                for start in range(0, len(digests), _CHUNK):
                    chunk = digests[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT digest, body, checksum FROM content WHERE digest IN ({marks})",  # noqa: S608 - only ? marks
                        chunk,
                    ).fetchall()
                    for digest, body, checksum in rows:
                        if checksum == _checksum(digest, body):
                            found[digest] = json.loads(body)
        except (sqlite3.Error, ValueError) as exc:
            self._give_up(exc)
            return {}
        self.hits += len(found)
        self.misses += len(digests) - len(found)
        return found

    def put_many(self, contents: dict[str, dict[str, Any]]) -> None:
        if self._broken or not contents:
            return
        rows = []
        for digest, content in contents.items():
            body = json.dumps(learned(content), sort_keys=True, separators=(",", ":"))
            rows.append((digest, body, _checksum(digest, body)))
        try:
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO content VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self._give_up(exc)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _give_up(self, exc: Exception) -> None:
        self._broken = True
        log.warning("content_cache_disabled", path=str(self.path), error=str(exc))


def open_cache(path: str | None) -> ContentCache | None:
    """The cache at `path` (None: no cache), or None with a warning when it cannot be used."""
    if path is None:
        return None
    try:
        return ContentCache(Path(path))
    except (OSError, sqlite3.Error) as exc:
        log.warning("content_cache_disabled", path=path, error=str(exc))
        return None


def _checksum(digest: str, body: str) -> str:
    return hashlib.sha256(f"{digest}\0{body}".encode()).hexdigest()
