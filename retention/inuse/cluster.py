"""A live cluster as an in-use source, through the official `kubernetes` client: its kubeconfig
and in-cluster loading, authentication (tokens, client certificates, exec plugins such as
kubelogin) and TLS. The only module that imports `kubernetes`.

Every kind that runs pods is listed whole, page by page, across all namespaces. Anything short of
a whole list (unreachable, forbidden, a page that expired, an answer that is not a list) raises
InUseError: a plan that silently ignored a cluster would delete what it runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from retention.inuse import ImageUses, InUseError
from retention.inuse.workloads import WorkloadError, image_references

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kubernetes.client import ApiClient

    from retention.inuse.workloads import Usage

IN_CLUSTER: Final = "in-cluster"  # the context name for the pod's own service account
PAGE_SIZE: Final = 500
# (connect, read) seconds for one page: an API server that stops answering fails the run, not hangs it.
TIMEOUT: Final = (10.0, 60.0)
# Each kind, with the paths it is served at, newest first: batch/v1 CronJob arrived in Kubernetes
# 1.21; older servers have only batch/v1beta1 (removed in 1.25).
RESOURCES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("Pod", "pods", ("/api/v1/pods",)),
    ("Deployment", "deployments", ("/apis/apps/v1/deployments",)),
    ("StatefulSet", "statefulsets", ("/apis/apps/v1/statefulsets",)),
    ("DaemonSet", "daemonsets", ("/apis/apps/v1/daemonsets",)),
    ("ReplicaSet", "replicasets", ("/apis/apps/v1/replicasets",)),
    ("Job", "jobs", ("/apis/batch/v1/jobs",)),
    ("CronJob", "cronjobs", ("/apis/batch/v1/cronjobs", "/apis/batch/v1beta1/cronjobs")),
)
_NOT_FOUND: Final = 404


def read_cluster(context: str, *, kubeconfig: str | None = None) -> ImageUses:
    """The images one cluster runs or will run. `context` names a kubeconfig context, or is
    `in-cluster` for the service account of the pod this runs in. Raises InUseError."""
    api = _client(context, kubeconfig)
    try:
        found = list(_all_references(api, context))
    finally:
        api.close()
    return ImageUses.of(f"cluster {context}", found)


def _client(context: str, kubeconfig: str | None) -> ApiClient:
    # Imported here: the client's generated models take a second to import, and most runs
    # (snapshots, plans without clusters) never need them.
    from kubernetes import client, config  # noqa: PLC0415

    configuration = client.Configuration()
    try:
        if context == IN_CLUSTER:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        where = "in-cluster service account" if context == IN_CLUSTER else f"kubeconfig context {context!r}"
        raise InUseError(f"in-use cluster {context!r}: cannot load the {where}: {_one_line(exc)}") from None
    return client.ApiClient(configuration)


def _all_references(api: ApiClient, cluster: str) -> Iterator[tuple[str, Usage]]:
    for kind, plural, paths in RESOURCES:
        for position, path in enumerate(paths):
            try:
                yield from _pages(api, kind, path, cluster)
            except _NotServedError:
                if position + 1 < len(paths):
                    continue
                raise InUseError(
                    f"in-use cluster {cluster!r}: cannot list {plural}: the API server serves none of"
                    f" {', '.join(paths)}"
                ) from None
            break


class _NotServedError(Exception):
    pass


def _pages(api: ApiClient, kind: str, path: str, cluster: str) -> Iterator[tuple[str, Usage]]:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError, MaxRetryError  # noqa: PLC0415

    plural = path.rsplit("/", 1)[1]
    token: str | None = None
    page = 0
    while True:
        query: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
        if token:
            query.append(("continue", token))
        method, url, headers, _, _ = api.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            response = api.call_api(method, url, header_params=headers, _request_timeout=TIMEOUT)
            body = response.read()
        except (ApiException, HTTPError, OSError) as exc:
            # urllib3 wraps the cause (refused, timed out, TLS) in a retry summary: the cause is the news.
            cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
            raise InUseError(
                f"in-use cluster {cluster!r}: cannot list {plural}: {_one_line(cause)}"
            ) from None
        if response.status == _NOT_FOUND and page == 0:
            raise _NotServedError
        if response.status != 200:  # noqa: PLR2004
            raise InUseError(
                f"in-use cluster {cluster!r}: cannot list {plural}: HTTP {response.status}"
                f" {response.reason or ''}{_status_message(body)}".rstrip()
            )
        document = _list_document(body, cluster, plural, kind)
        try:
            yield from image_references(document, cluster=cluster)
        except WorkloadError as exc:
            raise InUseError(f"in-use cluster {cluster!r}: {plural}: {exc}") from None
        metadata = document.get("metadata")
        token = metadata.get("continue") if isinstance(metadata, dict) else None
        if not token:
            return
        page += 1


def _list_document(body: bytes, cluster: str, plural: str, kind: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("items", []), list):
        raise InUseError(f"in-use cluster {cluster!r}: cannot list {plural}: the answer is not a list")
    # The items of a typed list (PodList) leave out their kind: it is the list's.
    document["kind"] = f"{kind}List"
    return document


def _status_message(body: bytes) -> str:
    """The API server's own words from a `Status` answer (`pods is forbidden: User … cannot list`)."""
    try:
        status = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return f": {_one_line(message)}" if isinstance(message, str) and message else ""


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text[:500] + ("…" if len(text) > 500 else "")  # noqa: PLR2004
