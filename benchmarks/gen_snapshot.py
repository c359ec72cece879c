"""Generate a synthetic, deterministic snapshot file for benchmarks.

    gen_snapshot.py --repositories 10000 --manifests-per-repo 100 --seed 1 --out FILE [--now T]

Every repository gets exactly M manifests (children, signatures and referrers
included), so a run's totals are N x M. The mix follows what CI-fed
registries hold: pull-request, branch and numbered builds, semver releases
(some promoted to production with `prod-<date>` tags, some of those already
locked), `latest`, multi-arch indexes with platform children (a child
sometimes shared with the previous index, sometimes a nested index), cosign
signatures tagged `sha256-<hex>.sig`, OCI referrers (SBOMs, attestations)
pointing at their subject, a few locked manifests and tags, untagged
leftovers, and an orphaned signature now and then. Ages spread over up to
two years before `--now`.

The same arguments always give the same bytes: each repository draws from
its own generator seeded by (seed, repository name), and digests are
SHA-256 of a per-repository counter. Repositories are generated and written
one at a time, so memory stays flat whatever N is.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from harness import positive

from retention.inventory import Manifest, Repository, Tag
from retention.snapshot import write_snapshot
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

DEFAULT_NOW = "2026-11-26T00:00:00Z"
REGISTRY = "bench.azurecr.io"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REFERRER_TYPES = (
    "application/spdx+json",
    "application/vnd.cyclonedx+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.in-toto+json",
)
PLATFORMS = (
    ("amd64", "linux"),
    ("arm64", "linux"),
    ("arm", "linux"),
    ("ppc64le", "linux"),
    ("s390x", "linux"),
)

MIB = 1024 * 1024
DAY = 86400
# Docker media types dominate pushes older than this; newer builders default to OCI.
DOCKER_ERA_SECONDS = 400 * DAY
NESTED_INDEX_SIZE = 6  # index -> 2 platforms + nested index -> 2 platforms

# Relative weights of what one push is; the budget check may downgrade a push to a single manifest.
UNIT_WEIGHTS = {
    "pr": 26,
    "build": 14,
    "main": 16,
    "main-multiarch": 9,
    "release": 7,
    "orphan": 20,
    "orphan-index": 4,
    "orphan-signature": 1,
}
# The weighted mean size of a push above (attachments and children included), so that a
# repository's pushes spread over its whole span instead of piling up just before `now`.
MANIFESTS_PER_PUSH = 1.66


@dataclass
class _RepositoryBuilder:
    """One repository's history, pushed in time order until exactly `budget` manifests exist."""

    name: str
    seed: int
    budget: int
    now: datetime
    rng: random.Random = field(init=False)
    manifests: list[Manifest] = field(default_factory=list)
    tags_used: set[str] = field(default_factory=set)
    counter: int = 0
    clock: float = 0.0  # seconds before `now` of the next push, counting down
    step: float = 0.0
    pr: int = 0
    build: int = 0
    version: list[int] = field(default_factory=list)
    latest: int | None = None  # position of the newest main/release image: it gets `latest`
    last_children: list[Manifest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}/{self.name}")
        rng = self.rng
        span = rng.uniform(60, 730) * DAY
        self.clock = span
        self.step = span / max(1.0, self.budget / MANIFESTS_PER_PUSH)
        self.pr = rng.randint(1, 3000)
        self.build = rng.randint(1000, 9000)
        self.version = [rng.randint(0, 3), rng.randint(0, 20), 0]

    @property
    def remaining(self) -> int:
        return self.budget - len(self.manifests)

    def build_repository(self) -> Repository:
        kinds = list(UNIT_WEIGHTS)
        weights = list(UNIT_WEIGHTS.values())
        while self.remaining > 0:
            self.clock = max(60.0, self.clock - self.step * self.rng.uniform(0.2, 1.8))
            self._push(self.rng.choices(kinds, weights)[0])
        if self.latest is not None:
            image = self.manifests[self.latest]
            self.manifests[self.latest] = replace(image, tags=(*image.tags, Tag("latest")))
        return Repository(name=self.name, manifests=tuple(self.manifests))

    def _push(self, kind: str) -> None:
        rng = self.rng
        if kind == "pr":
            self.pr += rng.randint(1, 4)
            self._image([f"pr-{self.pr}"])
        elif kind == "build":
            self.build += rng.randint(1, 9)
            self._image([f"build-{self.build}"])
        elif kind in ("main", "main-multiarch"):
            self.build += rng.randint(1, 9)
            tags = [f"main-{self._hex(7)}"]
            if rng.random() < 0.5:
                tags.append(f"build-{self.build}")
            image = self._multiarch(tags) if kind == "main-multiarch" else self._image(tags)
            self.latest = len(self.manifests) - 1
            self._attachments(image, signature=0.2, referrer=0.1)
        elif kind == "release":
            self._release()
        elif kind == "orphan":
            self._image([])
        elif kind == "orphan-index":
            self._multiarch([])
        else:
            # A signature whose image was deleted long ago: an attachment without a subject is an image.
            self._add(
                [f"sha256-{self._hex(64)}.sig"], OCI_MANIFEST, rng.randint(700, 4000), architecture=None
            )

    def _release(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            self.version = [self.version[0] + 1, 0, 0]
        elif roll < 0.3:
            self.version = [self.version[0], self.version[1] + 1, 0]
        else:
            self.version[2] += 1
        release = "v{}.{}.{}".format(*self.version)
        tags: list[str | Tag] = []
        if rng.random() < 0.15:
            # A release candidate: `tags` patterns are fullmatch, so `v1.2.3-rc.1` is not a release.
            tags.append(f"{release}-rc.{rng.randint(1, 3)}")
        else:
            tags.append(release)
            if rng.random() < 0.4:
                pushed = self.now - timedelta(seconds=int(self.clock))
                prod = f"prod-{pushed:%Y-%m-%d}"
                # Half the production tags were locked by an earlier run; the rest still need it.
                tags.append(Tag(prod, can_write=False, can_delete=False) if rng.random() < 0.5 else prod)
        image = self._multiarch(tags) if rng.random() < 0.5 else self._image(tags)
        self.latest = len(self.manifests) - 1
        self._attachments(image, signature=0.6, referrer=0.4)

    def _image(self, tags: Sequence[str | Tag]) -> Manifest:
        rng = self.rng
        size = min(500 * MIB, max(10 * MIB, int(rng.lognormvariate(math.log(120 * MIB), 0.7))))
        return self._add(tags, self._media(index=False), size, architecture=("amd64", "linux"))

    def _multiarch(self, tags: Sequence[str | Tag]) -> Manifest:
        """An index (added last) with 2-4 platform children, or a single image when that does not fit."""
        rng = self.rng
        if self.remaining >= NESTED_INDEX_SIZE and rng.random() < 0.05:
            first = [self._platform(p) for p in PLATFORMS[:2]]
            nested_children = [self._platform(p) for p in PLATFORMS[2:4]]
            nested = self._index([], nested_children)
            self.last_children = first + nested_children
            return self._index(tags, [*first, nested])
        platforms = list(PLATFORMS[: rng.randint(2, 4)])
        # Now and then the builder reuses an unchanged platform image of the previous build.
        shared = rng.choice(self.last_children) if self.last_children and rng.random() < 0.1 else None
        if shared is not None:
            platforms = [p for p in platforms if p[0] != shared.architecture][: len(platforms) - 1]
        if self.remaining < 1 + len(platforms):
            return self._image(tags)
        children = [self._platform(p) for p in platforms]
        if shared is not None:
            children.append(shared)
        self.last_children = children
        return self._index(tags, children)

    def _platform(self, platform: tuple[str, str]) -> Manifest:
        size = min(500 * MIB, max(10 * MIB, int(self.rng.lognormvariate(math.log(90 * MIB), 0.6))))
        locked = self.rng.random() < 0.002
        return self._add([], self._media(index=False), size, architecture=platform, locked=locked)

    def _index(self, tags: Sequence[str | Tag], children: list[Manifest]) -> Manifest:
        size = sum(child.size_bytes or 0 for child in children) + self.rng.randint(1500, 2600)
        references = tuple(child.digest for child in children)
        return self._add(tags, self._media(index=True), size, architecture=None, references=references)

    def _attachments(self, image: Manifest, *, signature: float, referrer: float) -> None:
        rng = self.rng
        if self.remaining > 0 and rng.random() < signature:
            # cosign's tag scheme: the subject is named by the tag, not by a `subject` field.
            tag = image.digest.replace(":", "-") + ".sig"
            self._add([tag], OCI_MANIFEST, rng.randint(700, 4000), architecture=None)
        if self.remaining > 0 and rng.random() < referrer:
            self._add(
                [],
                OCI_MANIFEST,
                rng.randint(20_000, 3 * MIB),
                architecture=None,
                subject=image.digest,
                artifact_type=rng.choice(REFERRER_TYPES),
            )

    def _media(self, *, index: bool) -> str:
        docker = self.clock > DOCKER_ERA_SECONDS and self.rng.random() < 0.6
        if index:
            return DOCKER_LIST if docker else OCI_INDEX
        return DOCKER_MANIFEST if docker else OCI_MANIFEST

    def _add(
        self,
        tags: Sequence[str | Tag],
        media_type: str,
        size: int,
        *,
        architecture: tuple[str, str] | None,
        references: tuple[str, ...] = (),
        subject: str | None = None,
        artifact_type: str | None = None,
        locked: bool = False,
    ) -> Manifest:
        rng = self.rng
        created = self.now - timedelta(seconds=int(self.clock))
        # Most manifests are never touched after the push; some had tags moved or attributes changed.
        touched = rng.random() < 0.1
        later = int(min(self.clock - 1, rng.uniform(0, 30 * DAY))) if touched else rng.randint(0, 120)
        updated = min(created + timedelta(seconds=max(0, later)), self.now)
        tag_values = tuple(self._tag(tag) for tag in tags)
        if not locked and rng.random() < 0.002:
            locked = True
        manifest = Manifest(
            digest=self._digest(),
            updated_at=updated,
            created_at=created,
            media_type=media_type,
            size_bytes=size,
            architecture=architecture[0] if architecture else None,
            os=architecture[1] if architecture else None,
            references=references,
            subject=subject,
            artifact_type=artifact_type,
            can_delete=not locked,
            can_write=not (locked and rng.random() < 0.5),
            tags=tuple(tag for tag in tag_values if tag is not None),
        )
        self.manifests.append(manifest)
        return manifest

    def _tag(self, tag: str | Tag) -> Tag | None:
        value = tag if isinstance(tag, Tag) else Tag(tag)
        if value.name in self.tags_used:
            return None  # a tag names one manifest: a repeated date or sha loses its tag
        self.tags_used.add(value.name)
        if value.locked or self.rng.random() >= 0.003:
            return value
        return replace(value, can_delete=False)

    def _digest(self) -> str:
        self.counter += 1
        return "sha256:" + hashlib.sha256(f"{self.seed}/{self.name}/{self.counter}".encode()).hexdigest()

    def _hex(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"


def repository_name(index: int) -> str:
    """`team-07/service-123` mostly; some nested and some sandbox names, so globs have work to do."""
    team = f"team-{index % 100:02d}"
    if index % 50 == 49:
        return f"sandbox/user-{index % 37:02d}/experiment-{index:03d}"
    if index % 20 == 19:
        return f"{team}/service-{index:03d}/buildcache"
    return f"{team}/service-{index:03d}"


def generate(repositories: int, manifests_per_repo: int, *, seed: int, now: datetime) -> Iterator[Repository]:
    for index in range(repositories):
        builder = _RepositoryBuilder(repository_name(index), seed, manifests_per_repo, now)
        yield builder.build_repository()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--repositories", type=positive, required=True, metavar="N")
    parser.add_argument("--manifests-per-repo", type=positive, required=True, metavar="M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, metavar="FILE", help="snapshot file to write ('-': stdout)")
    parser.add_argument("--now", type=parse_time, default=parse_time(DEFAULT_NOW), metavar="TIME")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    repositories = generate(args.repositories, args.manifests_per_repo, seed=args.seed, now=args.now)
    if args.out == "-":
        try:
            write_snapshot(sys.stdout, registry=REGISTRY, taken_at=args.now, repositories=repositories)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped early (`| head`): not an error, and nothing more to say.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    target = Path(args.out)
    # Written aside and renamed, so an interrupted run never leaves a half file that looks cached.
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        write_snapshot(handle, registry=REGISTRY, taken_at=args.now, repositories=repositories)
    partial.replace(target)
    total = args.repositories * args.manifests_per_repo
    print(
        f"wrote {target}: {args.repositories} repositories, {total} manifests,"
        f" {target.stat().st_size / MIB:.1f} MiB in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
