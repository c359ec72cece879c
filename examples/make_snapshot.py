"""Write examples/snapshot.json: a small, hand-shaped registry for trying policies out.

    python examples/make_snapshot.py [--out FILE]

The registry `contoso.azurecr.io` is what a team's registry looks like after a
few months of CI, dated relative to 2026-11-26T00:00:00Z, so that

    acr-retention plan --policy policies/combined --snapshot examples/snapshot.json \\
        --now 2026-11-26T00:00:00Z

shows every kind of decision: deletions by rule and by cascade (platform
children, signatures, SBOMs), lock changes, and kept images with each kind of
reason (keep rule, lock rule, locked, child of, attachment of), all well under
the policy's `max_deletes`.

- shop/web: ~30 CI builds (pr-*, main-*), semver releases with `latest` and a
  `prod` tag (not locked yet), cosign signatures, an SBOM, a locked tag on an
  old pull-request build, a locked manifest, untagged leftovers.
- base/python: a multi-arch base image (OCI index + linux/amd64 + linux/arm64),
  including an old untagged index that shares its arm64 child with a release.
- shop/api: signed multi-arch releases with SBOMs; the production release's
  tag is already locked, its manifests are not; an SBOM whose image is gone.
- sandbox/alice/scratch: old experiments, one of them a release.
- tools/ci-runner: a small repository where nothing is due.

Digests are SHA-256 of a label, so rerunning this script gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retention.inventory import Manifest, Repository, Tag
from retention.snapshot import SNAPSHOT_FORMAT, SNAPSHOT_FORMAT_VERSION, manifest_to_json
from retention.timefmt import format_time

NOW = datetime(2026, 11, 26, tzinfo=UTC)
REGISTRY = "contoso.azurecr.io"
OUT = Path(__file__).resolve().parent / "snapshot.json"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SPDX = "application/spdx+json"
MIB = 1024 * 1024
WEB_LOCKED_PR = 81
WEB_LOCKED_MAIN = 3
WEB_MAIN_WITH_SBOM = 6
PYTHON_SIGNED_MAIN = 1
API_MAINS_WITH_SBOM = 2
# Keys a reader defaults the same way (interfaces.md §3): left out so the file stays readable.
_DEFAULTS: dict[str, Any] = {
    "references": [],
    "subject": None,
    "artifact_type": None,
    "architecture": None,
    "os": None,
    "tags": [],
    "can_delete": True,
    "can_write": True,
    "can_read": True,
    "can_list": True,
}


def ago(days: float) -> datetime:
    return NOW - timedelta(seconds=round(days * 86400))


def _size(label: str, low_mib: int, high_mib: int) -> int:
    """A stable, plausible size: the same label always weighs the same."""
    spread = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)
    return low_mib * MIB + spread % ((high_mib - low_mib) * MIB)


@dataclass
class _Repo:
    name: str
    manifests: list[Manifest] = field(default_factory=list)

    def digest(self, label: str) -> str:
        return "sha256:" + hashlib.sha256(f"{REGISTRY}/{self.name}/{label}".encode()).hexdigest()

    def add(self, label: str, days: float, **fields: Any) -> str:
        digest = self.digest(label)
        fields.setdefault("media_type", OCI_MANIFEST)
        self.manifests.append(Manifest(digest=digest, created_at=ago(days), updated_at=ago(days), **fields))
        return digest

    def image(self, label: str, days: float, *tags: str | Tag, arch: str = "amd64", **fields: Any) -> str:
        size = _size(label, 40, 320)
        parsed = tuple(Tag(t) if isinstance(t, str) else t for t in tags)
        return self.add(label, days, tags=parsed, size_bytes=size, architecture=arch, os="linux", **fields)

    def multiarch(self, label: str, days: float, *tags: str | Tag, share: str | None = None) -> str:
        """An index over linux/amd64 and linux/arm64; `share` reuses an existing arm64 child."""
        amd64 = self.image(f"{label}/amd64", days)
        arm64 = share or self.image(f"{label}/arm64", days, arch="arm64")
        children = [m for m in self.manifests if m.digest in (amd64, arm64)]
        size = sum(m.size_bytes or 0 for m in children) + 1874
        parsed = tuple(Tag(t) if isinstance(t, str) else t for t in tags)
        return self.add(
            label, days, media_type=OCI_INDEX, references=(amd64, arm64), size_bytes=size, tags=parsed
        )

    def signature(self, subject: str, days: float) -> str:
        # cosign's tag scheme: the signature names its image in its tag.
        tag = subject.replace(":", "-") + ".sig"
        return self.add(f"sig/{subject}", days, tags=(Tag(tag),), size_bytes=_size(tag, 0, 1) // 300 + 700)

    def sbom(self, subject: str, days: float) -> str:
        size = _size(f"sbom/{subject}", 0, 2) + 20_000
        return self.add(f"sbom/{subject}", days, subject=subject, artifact_type=SPDX, size_bytes=size)

    def repository(self) -> Repository:
        return Repository(name=self.name, manifests=tuple(self.manifests))


def web() -> Repository:
    repo = _Repo("shop/web")
    # (version, age in days, signed): signing started in the summer.
    releases: list[tuple[str, float, bool]] = [
        ("v1.0.0", 210, False),
        ("v1.1.0", 160, False),
        ("v1.2.0", 118, True),
        ("v1.3.0", 74, True),
        ("v1.4.0", 41, True),
        ("v1.4.1", 19, True),
    ]
    for version, days, signed in releases:
        tags: list[str] = [version]
        if version == "v1.4.1":
            tags.append("prod")  # promoted last week; lock-prod has not run since
        release = repo.image(f"release/{version}", days, *tags)
        if signed:
            repo.signature(release, days)
    newest = repo.image("release/v1.5.0", 2.3, "v1.5.0", "latest")
    repo.signature(newest, 2.3)
    repo.sbom(newest, 2.3)
    # Pull-request builds every few days; those past two weeks go.
    pr_ages: list[float] = [88, 81, 73, 66, 58, 51, 44, 37, 29, 22, 16, 12, 8, 5, 1.5]
    for number, days in enumerate(pr_ages, start=80):
        # Someone locked pr-81's tag to keep a reproduction of a bug around: it stays.
        tag = Tag(f"pr-{number}", can_write=False) if number == WEB_LOCKED_PR else f"pr-{number}"
        repo.image(f"pr/{number}", days, tag)
    # Builds of main, every other one signed; one with an SBOM.
    main_ages: list[float] = [95, 86, 77, 63, 55, 47, 39, 33, 27, 20, 13, 9, 6, 3, 0.5]
    for number, days in enumerate(main_ages):
        sha = hashlib.sha256(f"web-main-{number}".encode()).hexdigest()[:7]
        # One was locked by hand during an incident and never unlocked: delete rules leave it alone.
        locked = number == WEB_LOCKED_MAIN
        build = repo.image(f"main/{number}", days, f"main-{sha}", can_delete=not locked)
        if number % 2 == 0:
            repo.signature(build, days)
        if number == WEB_MAIN_WITH_SBOM:
            repo.sbom(build, days)
    # What moved tags left behind; the oldest from before the builders switched to OCI.
    leftover_ages: list[float] = [140, 96, 61, 34, 0.3]
    for number, days in enumerate(leftover_ages):
        media_type = DOCKER_MANIFEST if number == 0 else OCI_MANIFEST
        repo.image(f"untagged/{number}", days, media_type=media_type)
    return repo.repository()


def base_python() -> Repository:
    repo = _Repo("base/python")
    # An old build of `latest`, untagged when the next one was pushed; its arm64 child was
    # rebuilt bit for bit later and is shared with v3.12.7, which must keep it.
    v3127 = repo.multiarch("v3.12.7", 58, "v3.12.7")
    shared_arm64 = next(m.references[1] for m in repo.manifests if m.digest == v3127)
    repo.multiarch("old-latest", 70, share=shared_arm64)
    repo.multiarch("v3.13.0", 6, "v3.13.0", "latest")
    for number, days in enumerate([150, 118, 46, 12, 4]):
        sha = hashlib.sha256(f"python-main-{number}".encode()).hexdigest()[:7]
        build = repo.multiarch(f"main/{number}", days, f"main-{sha}")
        if number == PYTHON_SIGNED_MAIN:
            repo.signature(build, days)
    return repo.repository()


def api() -> Repository:
    repo = _Repo("shop/api")
    for version, days in [("v2.1.0", 130), ("v2.2.0", 64), ("v2.3.0", 25)]:
        tags: list[str | Tag] = [version]
        if version == "v2.3.0":
            # The tag was locked by the release pipeline; the manifests were not.
            tags.append(Tag("prod-2026-11-01", can_write=False, can_delete=False))
        release = repo.multiarch(f"release/{version}", days, *tags)
        repo.signature(release, days)
        repo.sbom(release, days)
    for number, days in enumerate([100, 72, 45, 31, 17, 10, 3]):
        sha = hashlib.sha256(f"api-main-{number}".encode()).hexdigest()[:7]
        build = repo.image(f"main/{number}", days, f"main-{sha}")
        repo.signature(build, days)
        if number < API_MAINS_WITH_SBOM:
            repo.sbom(build, days)
    # An SBOM whose image was deleted by hand: with its subject gone it is an untagged leftover.
    repo.add("sbom/orphan", 90, subject=repo.digest("deleted-by-hand"), artifact_type=SPDX, size_bytes=48_213)
    return repo.repository()


def sandbox() -> Repository:
    repo = _Repo("sandbox/alice/scratch")
    repo.image("try-1", 300, "try-1")
    repo.image("wip", 200, "wip", "test")
    repo.image("demo", 95, "v0.1.0")  # a release line, even in the sandbox: keep-releases wins
    repo.image("leftover", 120)
    repo.image("spike", 45, "spike-grpc")
    repo.image("fresh", 9, "wip-2")  # younger than the sandbox's 30 days
    return repo.repository()


def ci_runner() -> Repository:
    repo = _Repo("tools/ci-runner")
    repo.image("v0.9.0", 80, "v0.9.0")
    repo.image("v0.9.1", 30, "v0.9.1", "latest")
    repo.image("nightly", 0.4)
    return repo.repository()


def compact(manifest: Manifest) -> dict[str, Any]:
    """Tags first (what a reader looks for), then the rest without the keys a reader defaults anyway."""
    full = manifest_to_json(manifest)
    ordered = {"digest": full.pop("digest"), "tags": full.pop("tags"), **full}
    return {key: value for key, value in ordered.items() if _DEFAULTS.get(key, ...) != value}


def render(repositories: list[Repository]) -> str:
    snapshot = {
        "format": SNAPSHOT_FORMAT,
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "registry": REGISTRY,
        "taken_at": format_time(NOW),
        "repositories": [
            {
                "name": repository.name,
                # Newest first, as `az acr manifest list-metadata --orderby time_desc` lists them.
                "manifests": [
                    compact(m)
                    for m in sorted(
                        repository.manifests, key=lambda m: (m.updated_at, m.digest), reverse=True
                    )
                ],
            }
            for repository in repositories
        ],
    }
    return json.dumps(snapshot, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the example snapshot of contoso.azurecr.io.")
    parser.add_argument(
        "--out", default=str(OUT), metavar="FILE", help="default: snapshot.json next to this script"
    )
    args = parser.parse_args(argv)
    repositories = [web(), base_python(), api(), sandbox(), ci_runner()]
    Path(args.out).write_text(render(repositories), encoding="utf-8")
    total = sum(len(r.manifests) for r in repositories)
    sys.stderr.write(f"wrote {args.out}: {len(repositories)} repositories, {total} manifests\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
