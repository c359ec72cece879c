"""In-use protection (policy.md §4, step 0): what a cluster runs or will run is kept before any
rule is looked at, and so is every index and subject above it. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from retention.inuse import Usage
    from retention.planner.graph import Node

# A base image can run in hundreds of pods; a plan names a few and counts the rest.
USES_SHOWN: Final = 3
# How the reasons of a manifest used itself start (`in-use via` marks one kept for what is below it).
IN_USE_PREFIX: Final = "in-use: "


def in_use_reasons(nodes: dict[str, Node], used: dict[str, tuple[Usage, ...]]) -> dict[str, list[str]]:
    """The manifests to keep because something uses them or a manifest below them, each with its
    reasons: `in-use: <kind> <namespace>/<name> in <cluster>` for a manifest used itself, and
    `in-use via <digest>: …` for the indexes and subjects above a used one (deleting an index
    leaves a pod that runs one of its platforms without the image its tag names)."""
    direct: dict[str, tuple[Usage, ...]] = {}
    via: dict[str, dict[str, Usage]] = {}  # ancestor -> used digest below it -> its first use
    for digest in sorted(used):
        if digest not in nodes:
            continue
        direct[digest] = used[digest]
        stack = [digest]
        seen = {digest}
        while stack:
            node = nodes[stack.pop()]
            for parent in (*node.index_parents, *node.subjects):
                if parent in seen:
                    continue
                seen.add(parent)
                via.setdefault(parent, {}).setdefault(digest, used[digest][0])
                stack.append(parent)
    reasons: dict[str, list[str]] = {}
    for digest in {*direct, *via}:
        own = direct.get(digest, ())
        found = [f"{IN_USE_PREFIX}{u}" for u in own]
        # A pod that runs an index by its tag also reports the platform it pulled: named once.
        found += [
            f"in-use via {below}: {usage}"
            for below, usage in sorted(via.get(digest, {}).items())
            if usage not in own
        ]
        shown = found[:USES_SHOWN]
        if len(found) > USES_SHOWN:
            shown.append(f"{IN_USE_PREFIX}{len(found) - USES_SHOWN} more")
        reasons[digest] = shown
    return reasons
