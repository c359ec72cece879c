"""The manifest graph of one repository: indexes and their children, subjects and their attachments.

policy.md §2. Pure. Built in digest order, so plans never depend on how a
registry happened to list its manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retention.inventory import Manifest

# cosign and the OCI referrers fallback tag a manifest `<alg>-<hex>` or `<alg>-<hex>.<suffix>`;
# its subject is `<alg>:<hex>` in the same repository (policy.md §2). Only digest algorithms
# count, so CI tags such as `main-abc1234` or `build-42` are never read as attachments.
_ATTACHMENT_TAG = re.compile(r"(sha256|sha384|sha512|blake3)-([0-9a-f]+)(?:\.[A-Za-z0-9_.-]+)?")


@dataclass(slots=True)
class Node:
    manifest: Manifest
    index_parents: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)  # children and attachments present here
    children: list[str] = field(default_factory=list)  # index references present here
    referrers: list[str] = field(default_factory=list)  # manifests whose OCI `subject` this is
    self_referencing: bool = False

    @property
    def is_dependent(self) -> bool:
        return bool(self.subjects) or (not self.manifest.tags and bool(self.index_parents))

    @property
    def parents(self) -> list[str]:
        """What a dependent follows; an image follows only the indexes that list it (a tagged child)."""
        if self.is_dependent:
            return list(dict.fromkeys(self.index_parents + self.subjects))
        return self.index_parents


def build_graph(manifests: Sequence[Manifest]) -> dict[str, Node]:
    # Digest order, not input order, everywhere below: plans must not depend on how a registry
    # happened to list its manifests.
    nodes = {m.digest: Node(m) for m in sorted(manifests, key=lambda m: m.digest)}
    for node in nodes.values():
        manifest = node.manifest
        for ref in dict.fromkeys(manifest.references):
            child = nodes.get(ref)
            if ref == manifest.digest:
                node.self_referencing = True
            elif child is not None:
                node.children.append(ref)
                child.index_parents.append(manifest.digest)
        for subject in subjects_of(manifest):
            if subject == manifest.digest:
                node.self_referencing = True
            elif subject in nodes:
                node.subjects.append(subject)
        if manifest.subject is not None and manifest.subject != manifest.digest:
            subject_node = nodes.get(manifest.subject)
            if subject_node is not None:
                subject_node.referrers.append(manifest.digest)
    for digest, node in nodes.items():
        for parent in node.parents:
            nodes[parent].dependents.append(digest)
    return nodes


def on_cycles(nodes: dict[str, Node]) -> set[str]:
    """Manifests on a reference cycle (index references and subjects alike), self-references included.

    Content addressing rules cycles out; only hand-made data has them, and there they fail closed
    (policy.md §4). Tarjan's algorithm, iterative: a repository can hold a long chain.
    """
    found = {d for d, n in nodes.items() if n.self_referencing}
    # A manifest on a longer cycle has both a parent and a dependent on it; in real registries
    # only nested indexes and signed attachments do, so the search below sees a handful.
    candidates = {d for d, n in nodes.items() if n.dependents and n.parents}
    if not candidates:
        return found

    def edges(digest: str) -> list[str]:
        node = nodes[digest]
        return [p for p in (*node.index_parents, *node.subjects) if p in candidates]

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in sorted(candidates):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            digest, position = work.pop()
            if position == 0:
                index[digest] = low[digest] = counter
                counter += 1
                stack.append(digest)
                on_stack.add(digest)
            targets = edges(digest)
            if position < len(targets):
                work.append((digest, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[digest] = min(low[digest], index[target])
                continue
            if low[digest] == index[digest]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == digest:
                        break
                if len(component) > 1:
                    found.update(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[digest])
    return found


def subjects_of(manifest: Manifest) -> list[str]:
    """The subjects a manifest may be attached to: its OCI `subject`, else what its tag scheme names."""
    if manifest.subject is not None:
        return [manifest.subject]
    if not manifest.tags:
        return []
    found: dict[str, None] = {}
    for tag in manifest.tags:
        match = _ATTACHMENT_TAG.fullmatch(tag.name)
        if match is None:
            return []  # only when *all* tags have the form (policy.md §2)
        found[f"{match.group(1)}:{match.group(2)}"] = None
    return list(found)
