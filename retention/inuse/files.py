"""A file as an in-use source: the JSON `kubectl get pods,deployments,statefulsets,daemonsets,
replicasets,jobs,cronjobs -A -o json` prints, so CI jobs and clusters the tool cannot reach can
feed it. The file's path is the "cluster" its uses are reported in."""

from __future__ import annotations

import json

from retention.inputfiles import read_bounded
from retention.inuse import ImageUses, InUseError
from retention.inuse.workloads import WorkloadError, image_references
from retention.snapshot import DuplicateKeyError, unique_keys


def read_file(path: str, *, limit: int) -> ImageUses:
    """The images the objects in `path` run or will run. Raises InUseError or InputFileError."""
    data = read_bounded(path, limit=limit, raise_with="--max-input-size")
    try:
        document = json.loads(data, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise InUseError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except DuplicateKeyError as exc:
        raise InUseError(f"{path}: not valid JSON: the key {exc.key!r} appears twice in one object") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise InUseError(f"{path}: not valid JSON: {exc}") from None
    try:
        found = list(image_references(document, cluster=path))
    except WorkloadError as exc:
        raise InUseError(f"{path}: {exc}") from None
    return ImageUses.of(f"file {path}", found)
