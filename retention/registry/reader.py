"""Reading: repositories listed through the SDK's aio client, as inventory values.

Repositories are read concurrently and handed to the caller one at a time,
in catalog order, so the planner's memory follows the largest repository,
not the registry.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import structlog
from azure.containerregistry import ArtifactManifestOrder, DigestValidationError
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from retention.inventory import INDEX_MEDIA_TYPES, Listing, Manifest, Repository, Tag
from retention.matchers import compile_globs
from retention.redact import redact
from retention.registry.auth import open_client
from retention.registry.cache import ContentCache, open_cache
from retention.registry.connection import close_credential, registry_errors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from azure.containerregistry.aio import ContainerRegistryClient

    from retention.needs import Needs
    from retention.registry.connection import Connection


log = structlog.get_logger("acr-retention")
PAGE_SIZE = 1000  # the largest page ACR serves (Azure/acr#749); fewer pages, fewer requests


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _flag(value: bool | None) -> bool:
    # The SDK leaves attributes it was not sent as None; ACR's default for all of them is true.
    return True if value is None else bool(value)


@dataclass
class _Listed:
    """One entry of a manifest listing, before tags and content are known."""

    manifest: Manifest
    references_listed: bool


def _from_listing(item: Any) -> _Listed:
    extra = getattr(item, "additional_properties", None) or {}
    attributes = item.changeable_attributes
    related = item.related_artifacts
    updated = _utc(item.last_updated_on) or datetime.fromtimestamp(0, UTC)
    media_type = extra.get("mediaType")
    return _Listed(
        manifest=Manifest(
            digest=item.digest,
            updated_at=updated,
            created_at=_utc(item.created_on),
            media_type=media_type if isinstance(media_type, str) else None,
            size_bytes=item.size,
            architecture=item.architecture,
            os=item.operating_system,
            references=tuple(r.digest for r in related or () if r.digest),
            can_delete=_flag(attributes.can_delete if attributes else None),
            can_write=_flag(attributes.can_write if attributes else None),
            can_read=_flag(attributes.can_read if attributes else None),
            can_list=_flag(attributes.can_list if attributes else None),
            tags=tuple(Tag(name) for name in item.tags or ()),
        ),
        references_listed=related is not None,
    )


class RepositoryGone(Exception):  # noqa: N818 - a signal, not an error for the user
    pass


async def read_repository(
    client: ContainerRegistryClient, name: str, needs: Needs, cache: ContentCache | None = None
) -> Repository:
    """One repository's manifests, newest first, with the details and content the policy needs."""
    return await complete_repository(client, await list_repository(client, name, needs), needs, cache)


async def list_repository(client: ContainerRegistryClient, name: str, needs: Needs) -> Listing:
    """The manifest listing (one request per 1,000 manifests) and, when `needs` asks, the tag listing."""
    try:
        pages = client.list_manifest_properties(
            name,
            order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING,
            results_per_page=PAGE_SIZE,
            cls=lambda items: [_from_listing(item) for item in items],
        )
        # The `cls` hook turned each page into _Listed values; the SDK's annotations cannot know.
        listed = [cast("_Listed", entry) async for entry in pages]
    except ResourceNotFoundError:
        raise RepositoryGone from None
    manifests = {entry.manifest.digest: entry.manifest for entry in listed}
    if any(needs.tag_details(name, m) for m in manifests.values()):
        await _add_tag_details(client, name, manifests)
    unlisted = tuple(
        entry.manifest.digest
        for entry in listed
        if entry.manifest.media_type in INDEX_MEDIA_TYPES and not entry.references_listed
    )
    return Listing(Repository(name=name, manifests=tuple(manifests.values())), unlisted)


async def complete_repository(
    client: ContainerRegistryClient, listing: Listing, needs: Needs, cache: ContentCache | None = None
) -> Repository:
    """The listing with what only manifest content tells: the children of indexes whose listing
    left them out, and the `subject` of every manifest that can be a referrer (index children
    included).

    When some of that content cannot be read or trusted, the repository comes back marked
    `unreadable` (it then deletes nothing, policy.md §4) instead of guessed at. Content the
    `cache` knows is not read again (manifests are immutable).
    """
    repository = listing.repository
    name = repository.name
    manifests = {m.digest: m for m in repository.manifests}
    contents: dict[str, dict[str, Any]] = {}
    try:
        unlisted = list(listing.unlisted_references)
        for digest, content in zip(
            unlisted, await _cached_contents(client, name, unlisted, cache), strict=True
        ):
            contents[digest] = content
            references = tuple(
                str(m["digest"])
                for m in content.get("manifests", ())
                if isinstance(m, dict) and m.get("digest")
            )
            manifests[digest] = replace(manifests[digest], references=references)
        # Index children too: a manifest an index lists can carry a subject as well, and then the
        # registry deletes it with that subject, whatever the index says.
        wanted = [d for d, m in manifests.items() if d not in contents and needs.content(name, m)]
        contents.update(zip(wanted, await _cached_contents(client, name, wanted, cache), strict=True))
    except _Unreadable as exc:
        return replace(repository, unreadable=str(exc))
    for digest, content in contents.items():
        manifest = manifests[digest]
        if not needs.content(name, manifest):
            continue
        subject = content.get("subject")
        artifact_type = content.get("artifactType")
        manifests[digest] = replace(
            manifest,
            subject=str(subject["digest"]) if isinstance(subject, dict) and subject.get("digest") else None,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        )
    return replace(repository, manifests=tuple(manifests.values()))


async def _add_tag_details(
    client: ContainerRegistryClient, name: str, manifests: dict[str, Manifest]
) -> None:
    tags: dict[str, list[Tag]] = {}
    try:
        async for tag in client.list_tag_properties(name, results_per_page=PAGE_SIZE):
            tags.setdefault(tag.digest, []).append(
                Tag(
                    name=tag.name,
                    created_at=_utc(tag.created_on),
                    updated_at=_utc(tag.last_updated_on),
                    can_delete=_flag(tag.can_delete),
                    can_write=_flag(tag.can_write),
                    can_read=_flag(tag.can_read),
                    can_list=_flag(tag.can_list),
                )
            )
    except ResourceNotFoundError:
        raise RepositoryGone from None
    for digest, manifest in manifests.items():
        detailed = {t.name: t for t in tags.get(digest, ())}
        # A tag listed on the manifest but missing from the tag listing moved meanwhile;
        # keep the bare name (all attributes true) rather than drop it.
        merged = tuple(detailed.get(t.name, t) for t in manifest.tags)
        manifests[digest] = replace(manifest, tags=merged)


# Repositories read ahead of the one the consumer waits for, per reader.
READ_AHEAD = 4

# Content reads of one repository in flight at once. Each is one small GET; reading them one
# after another made a repository with many referrers cost a round trip per referrer.
CONTENT_READS_IN_FLIGHT = 8


async def _cached_contents(
    client: ContainerRegistryClient, name: str, digests: Sequence[str], cache: ContentCache | None
) -> list[dict[str, Any]]:
    """`_contents`, reading only what `cache` does not know, and teaching it what was read."""
    if cache is None:
        return await _contents(client, name, digests)
    known = cache.get_many(list(digests))
    missing = [d for d in digests if d not in known]
    read = dict(zip(missing, await _contents(client, name, missing), strict=True))
    # {} is a manifest deleted since the listing: nothing to remember.
    cache.put_many({d: content for d, content in read.items() if content})
    return [known[d] if d in known else read[d] for d in digests]


async def _contents(
    client: ContainerRegistryClient, name: str, digests: Sequence[str]
) -> list[dict[str, Any]]:
    """The content of each digest, in order, a few requests at a time; the first failure cancels the rest."""
    if not digests:
        return []
    gate = asyncio.Semaphore(CONTENT_READS_IN_FLIGHT)

    async def read(digest: str) -> dict[str, Any]:
        async with gate:
            return await _content(client, name, digest)

    tasks = [asyncio.create_task(read(digest)) for digest in digests]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _content(client: ContainerRegistryClient, name: str, digest: str) -> dict[str, Any]:
    try:
        result = await client.get_manifest(name, digest)
    except DigestValidationError:
        # Content that does not hash to its digest cannot be trusted to name a subject or
        # children; fail closed: the repository deletes nothing in this plan.
        raise _Unreadable(f"manifest {digest} in {name}: content does not match its digest") from None
    except ValueError as exc:
        # The SDK refuses manifests without a Content-Length or over 4 MiB (its threat model).
        raise _Unreadable(f"manifest {digest} in {name}: {redact(str(exc))}") from None
    except ResourceNotFoundError:
        # Deleted since the listing: whatever it named goes with it.
        return {}
    except ClientAuthenticationError:
        raise _Unreadable(_refused(name, digest, "401")) from None
    except HttpResponseError as exc:
        if exc.status_code == 403:  # noqa: PLR2004
            raise _Unreadable(_refused(name, digest, "403")) from None
        raise
    manifest = result.manifest
    return manifest if isinstance(manifest, dict) else {}


def _refused(name: str, digest: str, status: str) -> str:
    # Listing needs metadata_read, content needs pull: an identity can have the one without the other.
    return f"manifest {digest} in {name}: reading its content was refused ({status}); the identity needs pull"


class _Unreadable(Exception):  # noqa: N818 - marks the repository unreadable: it then deletes nothing
    pass


async def _repository_names(client: ContainerRegistryClient, needs: Needs, only: Sequence[str]) -> list[str]:
    """The catalog, in the registry's order, narrowed to what `--repository` and `needs` select."""
    pattern = compile_globs(tuple(only)) if only else None
    names = [name async for name in client.list_repository_names(results_per_page=PAGE_SIZE)]
    return [n for n in names if (pattern is None or pattern.fullmatch(n)) and needs.lists(n)]


@dataclass(frozen=True)
class Skipped:
    """A repository left out of the inventory, and why (logged as a warning by whoever yields)."""

    name: str
    reason: str


async def list_names(connection: Connection, needs: Needs, repositories: Sequence[str] = ()) -> list[str]:
    """`_repository_names` with a client of its own, for the process that hands out the catalog."""
    client, _ = open_client(connection, budgeted=True)
    try:
        async with client, registry_errors(connection):
            return await _repository_names(client, needs, repositories)
    finally:
        await close_credential(connection)


async def read_shard(
    connection: Connection, needs: Needs, names: Sequence[str]
) -> AsyncIterator[Repository | Skipped]:
    """These repositories, in this order, each read or skipped; for a reader process."""
    client, tokens = open_client(connection, budgeted=True)
    contents = open_cache(connection.cache_path)
    try:
        async with client, registry_errors(connection):
            async for item in _read_names(client, names, needs, connection.concurrency, contents):
                yield item
            log.debug("token_requests", count=tokens.requests_for_tokens)
    finally:
        _log_cache(contents)
        await close_credential(connection)


async def read_registry(
    connection: Connection,
    needs: Needs,
    *,
    repositories: Sequence[str] = (),
    listed: Callable[[int], None] | None = None,
    first_alone: bool = False,
) -> AsyncIterator[Repository]:
    """Every selected repository, in catalog order, `concurrency` of them read at once; `listed`
    is told how many once the catalog is read. `first_alone`: the first repository is read before
    the others start (see `_read_names`)."""
    client, tokens = open_client(connection, budgeted=True)
    contents = open_cache(connection.cache_path)
    async with client, registry_errors(connection):
        names = await _repository_names(client, needs, repositories)
        log.info("repositories_listed", registry=connection.target.login_server, repositories=len(names))
        if listed is not None:
            listed(len(names))
        async for item in _read_names(
            client, names, needs, connection.concurrency, contents, first_alone=first_alone
        ):
            if isinstance(item, Skipped):
                log.warning("repository_skipped", repository=item.name, reason=item.reason)
            else:
                warn_if_unreadable(item)
                yield item
        log.debug("token_requests", count=tokens.requests_for_tokens)
    _log_cache(contents)


def _log_cache(contents: ContentCache | None) -> None:
    if contents is not None:
        log.info("content_cache", path=str(contents.path), hits=contents.hits, reads=contents.misses)
        contents.close()


def warn_if_unreadable(repository: Repository) -> None:
    if repository.unreadable is not None:
        log.warning("repository_deletes_nothing", repository=repository.name, reason=repository.unreadable)


async def _read_names(
    client: ContainerRegistryClient,
    names: Sequence[str],
    needs: Needs,
    concurrency: int,
    cache: ContentCache | None = None,
    *,
    first_alone: bool = False,
) -> AsyncIterator[Repository | Skipped]:
    """Each name read or skipped, in order, `concurrency` at once.

    A repository that finishes early waits (at most `READ_AHEAD` per reader) for the ones
    before it, and its reader moves on meanwhile: one big repository does not idle the others.

    `first_alone`, for a consumer that acts on each repository as it comes (apply --policy): the
    first is read on its own. Read together, the others' listings and content reads take their
    turns in the read budget ahead of its last ones, and its first delete waited for all of them
    (0.8 s of a 200-delete run at the Standard budget); the others start a moment later, while
    it is acted on, long before the deletes need them.
    """
    tasks: dict[int, asyncio.Task[Repository | Skipped]] = {}
    try:
        started = yielded = 0
        ahead = concurrency * READ_AHEAD
        while yielded < len(names):
            running = [t for t in tasks.values() if not t.done()]
            width = 1 if first_alone and yielded == 0 else concurrency
            while started < len(names) and len(running) < width and started - yielded < ahead:
                task = asyncio.create_task(_read_or_skip(client, names[started], needs, cache))
                tasks[started] = task
                running.append(task)
                started += 1
            if not tasks[yielded].done():
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            while yielded in tasks and tasks[yielded].done():
                item = tasks.pop(yielded).result()
                yielded += 1
                yield item
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _read_or_skip(
    client: ContainerRegistryClient, name: str, needs: Needs, cache: ContentCache | None = None
) -> Repository | Skipped:
    """A repository (marked `unreadable` when its content cannot be trusted), or why it is left
    out: it vanished while being listed."""
    try:
        return await read_repository(client, name, needs, cache)
    except RepositoryGone:
        return Skipped(name, "deleted while being listed")


def iter_registry(
    connection: Connection,
    needs: Needs,
    *,
    repositories: Sequence[str] = (),
    buffer: int = 4,
    listed: Callable[[int], None] | None = None,
    first_alone: bool = False,
) -> Iterator[Repository]:
    """`read_registry` for synchronous callers (the planner): an event loop in a worker thread.

    At most `buffer` read repositories wait for the consumer, so a slow
    consumer slows the reading instead of filling memory.
    """
    handoff: queue.Queue[Repository | BaseException | None] = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    async def produce() -> None:
        try:
            async for repository in read_registry(
                connection, needs, repositories=repositories, listed=listed, first_alone=first_alone
            ):
                while not stop.is_set():
                    try:
                        handoff.put_nowait(repository)
                        break
                    except queue.Full:
                        # Wait without blocking the loop: the other readers keep going meanwhile.
                        await asyncio.sleep(0.01)
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            handoff.put(exc)
        finally:
            await close_credential(connection)

    worker = threading.Thread(target=asyncio.run, args=(produce(),), name="acr-inventory", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
