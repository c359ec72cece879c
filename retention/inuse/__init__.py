"""What clusters run or will run: the images that must stay (in-use protection). Data only.

Sources (live clusters, `kubectl get -o json` files) yield `ImageUses`: every image reference
found, with the object that uses it. `ImageUses.in_registry` keeps the references to this
registry and gives the planner an `InUse`, which it consults one repository at a time: a
reference by digest protects that manifest, a reference by tag the manifest the tag points to in
the inventory now.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retention.errors import RetentionError
from retention.inuse.references import ImageName, parse_reference, registry_host
from retention.inuse.workloads import Usage

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from retention.inventory import Repository

__all__ = ["ImageUses", "InUse", "InUseError", "RepositoryUse", "Usage"]


class InUseError(RetentionError):
    """A configured in-use source that could not be read whole: the run stops (fail closed)."""


@dataclass(frozen=True, slots=True)
class ImageUses:
    """Every image reference the in-use sources found, whatever registry it names."""

    sources: tuple[str, ...] = ()  # "cluster aks-prod", "file pods.json": what was read
    references: tuple[tuple[ImageName, Usage], ...] = ()
    unparsable: int = 0  # references no runtime could pull (they protect nothing)

    @staticmethod
    def of(source: str, found: Iterable[tuple[str, Usage]]) -> ImageUses:
        references: list[tuple[ImageName, Usage]] = []
        unparsable = 0
        for text, usage in found:
            name = parse_reference(text)
            if name is None:
                unparsable += 1
            else:
                references.append((name, usage))
        return ImageUses((source,), tuple(references), unparsable)

    def __add__(self, other: ImageUses) -> ImageUses:
        references = self.references + other.references
        return ImageUses(self.sources + other.sources, references, self.unparsable + other.unparsable)

    def in_registry(self, names: Iterable[str | None]) -> InUse:
        """The references to the registry known by any of `names` (its login server, and its
        `.azurecr.io` name when it is reached another way)."""
        hosts = tuple(sorted({registry_host(n) for n in names if n}))
        digests: dict[str, dict[str, set[Usage]]] = defaultdict(lambda: defaultdict(set))
        tags: dict[str, dict[str, set[Usage]]] = defaultdict(lambda: defaultdict(set))
        for name, usage in self.references:
            if name.host not in hosts:
                continue
            if name.digest is not None:
                digests[name.repository][name.digest].add(usage)
            if name.tag is not None:
                # With a digest the runtime ignores the tag; keeping what the tag names too costs an
                # image at most and covers the day someone drops the digest from the manifest.
                tags[name.repository][name.tag].add(usage)
            elif name.digest is None:
                tags[name.repository]["latest"].add(usage)
        repositories = {
            repository: RepositoryUse(
                digests={d: tuple(sorted(u)) for d, u in digests.get(repository, {}).items()},
                tags={t: tuple(sorted(u)) for t, u in tags.get(repository, {}).items()},
            )
            for repository in {*digests, *tags}
        }
        return InUse(hosts=hosts, sources=self.sources, repositories=repositories)


@dataclass(frozen=True, slots=True)
class RepositoryUse:
    """One repository's references: by digest, and by tag (resolved against the inventory)."""

    digests: Mapping[str, tuple[Usage, ...]]
    tags: Mapping[str, tuple[Usage, ...]]


@dataclass(frozen=True, slots=True)
class InUse:
    """The in-use references to one registry, by repository: the planner's input."""

    hosts: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    repositories: Mapping[str, RepositoryUse] = field(default_factory=dict)

    def used(self, repository: Repository) -> dict[str, tuple[Usage, ...]]:
        """The manifests of `repository` in use, each with what uses it (sorted, no repeats)."""
        uses = self.repositories.get(repository.name)
        if uses is None:
            return {}
        found: dict[str, set[Usage]] = defaultdict(set)
        digests = uses.digests
        tags = uses.tags
        for manifest in repository.manifests:
            if manifest.digest in digests:
                found[manifest.digest].update(digests[manifest.digest])
            for tag in manifest.tag_names:
                if tag in tags:
                    found[manifest.digest].update(tags[tag])
        return {digest: tuple(sorted(usages)) for digest, usages in found.items()}
