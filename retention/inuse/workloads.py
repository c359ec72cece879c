"""The images Kubernetes objects run or will run, from their JSON (what `kubectl get -o json` prints
and what the API server answers). The loader boundary: raw dicts stop here.

A Pod counts with the images of its spec (every container, init container and ephemeral
container) and of its status: `imageID` is the digest the node pulled, which still names what runs
when the tag has moved since. Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and
CronJobs count with their pod template whatever their replicas or `suspend`: scaled to zero or
suspended, they pull again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

# Where each kind keeps its pod spec. CronJob is the same in batch/v1 and batch/v1beta1.
POD_SPEC_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")
_STATUS_LISTS: Final = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
# kubectl's `List` may nest (a List of Lists from several `-o json` outputs pasted together);
# deeper than this is not something kubectl writes.
_MAX_LIST_DEPTH: Final = 8


class WorkloadError(ValueError):
    """An object that is not what the Kubernetes API writes, with the JSON path to it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True, order=True)
class Usage:
    """One object that runs or will run an image: `Deployment prod/web in aks-prod`."""

    kind: str
    namespace: str
    name: str
    cluster: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} in {self.cluster}"


def image_references(document: Any, *, cluster: str) -> Iterator[tuple[str, Usage]]:
    """Every (image reference, usage) in a Kubernetes object or `List` of them. Kinds that run no
    pods (Services, ConfigMaps, ...) are passed over. Raises WorkloadError."""
    yield from _object(document, cluster, "$", 0)


def _object(document: Any, cluster: str, path: str, depth: int) -> Iterator[tuple[str, Usage]]:
    if not isinstance(document, dict):
        raise WorkloadError(path, "expected a Kubernetes object")
    kind = document.get("kind")
    if not isinstance(kind, str):
        raise WorkloadError(f"{path}.kind", "expected the object's kind")
    if kind == "List" or (kind.endswith("List") and "items" in document):
        if depth >= _MAX_LIST_DEPTH:
            raise WorkloadError(path, f"Lists nested deeper than {_MAX_LIST_DEPTH}")
        items = document.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise WorkloadError(f"{path}.items", "expected a list")
        for index, item in enumerate(items):
            # The API server leaves kind out of the items of a typed list (PodList): it is the list's.
            typed = item
            if isinstance(item, dict) and "kind" not in item and kind != "List":
                typed = {**item, "kind": kind.removesuffix("List")}
            yield from _object(typed, cluster, f"{path}.items[{index}]", depth + 1)
        return
    spec_path = POD_SPEC_PATHS.get(kind)
    if spec_path is None:
        return
    usage = Usage(kind, *_identity(document, path), cluster)
    spec, where = _walk(document, spec_path, path)
    if spec is not None:
        for key in _CONTAINER_LISTS:
            for container, at in _entries(spec, key, where):
                image = _string(container, "image", at)
                if image:
                    yield image, usage
    if kind == "Pod":
        status, where = _walk(document, ("status",), path)
        if status is not None:
            for key in _STATUS_LISTS:
                for state, at in _entries(status, key, where):
                    for field in ("imageID", "image"):
                        image = _string(state, field, at)
                        if image:
                            yield image, usage


def _identity(document: dict[str, Any], path: str) -> tuple[str, str]:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise WorkloadError(f"{path}.metadata", "expected the object's metadata")
    name = _string(metadata, "name", f"{path}.metadata")
    if not name:
        raise WorkloadError(f"{path}.metadata.name", "expected the object's name")
    return _string(metadata, "namespace", f"{path}.metadata") or "default", name


def _walk(document: dict[str, Any], keys: tuple[str, ...], path: str) -> tuple[dict[str, Any] | None, str]:
    node: Any = document
    for key in keys:
        path = f"{path}.{key}"
        node = node.get(key)
        if node is None:
            return None, path
        if not isinstance(node, dict):
            raise WorkloadError(path, "expected an object")
    return node, path


def _entries(parent: dict[str, Any], key: str, path: str) -> Iterator[tuple[dict[str, Any], str]]:
    value = parent.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise WorkloadError(f"{path}.{key}", "expected a list")
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise WorkloadError(f"{path}.{key}[{index}]", "expected an object")
        yield entry, f"{path}.{key}[{index}]"


def _string(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WorkloadError(f"{path}.{key}", "expected a string")
    return value
