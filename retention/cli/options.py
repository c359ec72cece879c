"""The options several commands share, their value types, and every command's help examples."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from retention.inputfiles import DATA_LIMIT, POLICY_LIMIT, format_size, parse_size
from retention.matchers import GrammarError, parse_duration
from retention.metrics import DEFAULT_JOB, Pushgateway
from retention.ratelimit import SKU_LIMITS
from retention.registry import DEFAULT_AUDIENCE
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from datetime import datetime, timedelta

PROG = "acr-retention"
PUSHGATEWAY_VARIABLE = "ACR_RETENTION_PUSHGATEWAY"
PUSHGATEWAY_JOB_VARIABLE = "ACR_RETENTION_PUSHGATEWAY_JOB"


def _rfc3339(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # After the subcommand an option left out must not reset what was given before it.
    log_format = os.environ.get("ACR_RETENTION_LOG_FORMAT", "auto") if defaults else argparse.SUPPRESS
    log_level = os.environ.get("ACR_RETENTION_LOG_LEVEL", "info") if defaults else argparse.SUPPRESS
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=log_format,
        help="structured logs on stderr: JSON off a terminal, console on one (default: auto, or"
        " $ACR_RETENTION_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=log_level,
        help="the least severe log events shown (default: info, or $ACR_RETENTION_LOG_LEVEL)",
    )


_EXAMPLES: dict[str, str] = {
    "main": """examples:
  acr-retention validate policies/
  acr-retention plan --policy policies/ --registry myreg.azurecr.io
  acr-retention apply --policy policies/ --registry myreg.azurecr.io --report run.jsonl

Exit codes: 0 success, 1 error, 2 usage error, 3 over max_deletes, 130/143 interrupted.
With --detailed-exitcode every error is 1 and 2 means "the plan is not empty".""",
    "validate": """examples:
  acr-retention validate policies/
  acr-retention validate policies/base.yaml policies/ci.yaml
  acr-retention validate --format github policies/    # in a GitHub Actions step""",
    "plan": """examples:
  acr-retention plan --policy policies/ --registry myreg.azurecr.io
  acr-retention plan --policy policies/ --snapshot snapshot.json --now 2026-11-26T00:00:00Z -v
  acr-retention plan --policy policies/ -o markdown --out plan.md --save-plan plan.json --detailed-exitcode
  acr-retention plan --policy policies/ --registry myreg.azurecr.io --in-use-cluster aks-prod""",
    "apply": """examples:
  acr-retention apply --policy policies/ --registry myreg.azurecr.io --report run.jsonl
  acr-retention apply --plan plan.json --yes --report run.jsonl --in-use-cluster in-cluster""",
    "snapshot": """examples:
  acr-retention snapshot --registry myreg.azurecr.io --out snapshot.json
  acr-retention snapshot --registry myreg.azurecr.io --repository 'team-a/**' --out team-a.json""",
    "deleted": """examples:
  acr-retention deleted --registry myreg.azurecr.io
  acr-retention deleted --registry myreg.azurecr.io --repository 'team-a/**' --format json""",
    "restore": """examples:
  acr-retention restore --report run.jsonl --registry myreg.azurecr.io
  acr-retention restore --report run.jsonl --registry myreg.azurecr.io --digest sha256:1a2b --yes""",
    "diff": """examples:
  acr-retention diff --base base/policies --policy policies --snapshot snapshot.json
  acr-retention diff --base base/policies --policy policies --registry myreg.azurecr.io \\
      -o markdown --detailed-exitcode""",
    "explain": """examples:
  acr-retention explain shop/api:v1.2.0 shop/api@sha256:1a2b3c --plan plan.json
  acr-retention explain shop/api:main-1a2b3c4 --policy policies --snapshot snapshot.json""",
    "version": "example:\n  acr-retention version",
    "schema": "example:\n  acr-retention schema > policy.schema.json",
}


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repository",
        action="append",
        default=[],
        metavar="GLOB",
        help="only repositories matching GLOB (repeatable; same globs as policies)",
    )
    parser.add_argument(
        "--anonymous",
        action="store_true",
        help="no credentials: for registries with anonymous pull enabled",
    )
    parser.add_argument(
        "--audience",
        type=_audience,
        default=os.environ.get("ACR_RETENTION_AUDIENCE", DEFAULT_AUDIENCE),
        metavar="URL",
        help=f"Entra ID audience for registry tokens (default {DEFAULT_AUDIENCE}; sovereign clouds:"
        " https://containerregistry.azure.cn, https://containerregistry.azure.us; ARM audience:"
        " https://management.azure.com)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        metavar="PATH",
        help="the content cache, an SQLite file (default: $ACR_RETENTION_CACHE, else"
        " $XDG_CACHE_HOME/acr-retention/content.sqlite3): manifests are immutable, so content read once"
        " is not read again",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="read every manifest's content from the registry"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="repositories read at once, per reader process (default 8)",
    )
    parser.add_argument(
        "--processes",
        type=_positive,
        default=os.environ.get("ACR_RETENTION_PROCESSES", "1"),  # argparse applies type= to it
        metavar="N",
        help="reader processes for the inventory (default 1, or $ACR_RETENTION_PROCESSES): the SDK's"
        " listing is CPU-bound, so a registry of millions of manifests reads faster with one per core",
    )
    budget = parser.add_argument_group(
        "request budgets",
        "ACR throttles each identity per minute and operation class (reads, writes, deletes). Every"
        " request of the run, inventory included and however many reader processes, paces through one"
        " budget per class: it starts at the --sku's documented limit, is cut by 30% on a 429 (everyone"
        " waits out Retry-After), climbs back to just under the throttled rate and keeps probing"
        " upward; --max-*-per-minute starts it there and caps it.",
    )
    budget.add_argument(
        "--sku",
        choices=sorted(SKU_LIMITS),
        default="standard",
        help="the registry's SKU, whose documented per-identity limits the budgets start from"
        " (default standard; standard: 5,000 reads, 1,000 writes, 500 deletes"
        " a minute; premium: 10,000, 2,000, 2,000)",
    )
    budget.add_argument(
        "--max-reads-per-minute",
        type=_positive,
        metavar="N",
        help="cap on reads (GET: listings, content): the inventory and apply's checks",
    )


def _add_in_use_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "in-use protection",
        "Images that clusters run or will run (pods, and the pod templates of deployments, statefulsets,"
        " daemonsets, replicasets, jobs and cronjobs) are never deleted. Every source is read whole before"
        " planning; one that cannot be read stops the run (exit 1).",
    )
    group.add_argument(
        "--in-use-cluster",
        action="append",
        default=[],
        metavar="CONTEXT",
        help="protect what this kubeconfig context's cluster uses (repeatable); 'in-cluster' is the"
        " cluster this runs in, through its service account",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig for --in-use-cluster (default: $KUBECONFIG, then ~/.kube/config)",
    )
    group.add_argument(
        "--in-use-file",
        action="append",
        default=[],
        metavar="FILE",
        help="protect what the objects in FILE use: the JSON of `kubectl get pods,deployments,statefulsets,"
        "daemonsets,replicasets,jobs,cronjobs -A -o json` (repeatable)",
    )


def _add_pushgateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pushgateway",
        type=_pushgateway_url,
        metavar="URL",
        help=f"at the end of the run, push its metrics to this Prometheus Pushgateway (http(s)://host:port);"
        f" default: ${PUSHGATEWAY_VARIABLE}; '' pushes nothing. A failed push only logs a warning",
    )
    parser.add_argument(
        "--pushgateway-job",
        type=_job_name,
        default=os.environ.get(PUSHGATEWAY_JOB_VARIABLE) or DEFAULT_JOB,
        metavar="NAME",
        help=f"job label of the pushed metrics (default: ${PUSHGATEWAY_JOB_VARIABLE}, then {DEFAULT_JOB})",
    )


def _audience(text: str) -> str:
    """An Entra ID audience is an https URL; `containerregistry.azure.net` alone gets tokens no
    registry accepts, and the refusal would not say why."""
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        hint = f"; did you mean https://{value}?" if "://" not in value and value else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not an https URL{hint}")
    return value


def _pushgateway_url(text: str) -> str:
    if text.strip():
        try:
            Pushgateway.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _job_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the job name must not be empty")
    return text.strip()


def _add_size_limits(parser: argparse.ArgumentParser, *, inputs: bool) -> None:
    parser.add_argument(
        "--max-policy-size",
        type=_size,
        default=POLICY_LIMIT,
        metavar="SIZE",
        help=f"refuse a policy file larger than SIZE, such as 4MiB (default {format_size(POLICY_LIMIT)})",
    )
    if inputs:
        parser.add_argument(
            "--max-input-size",
            type=_size,
            default=DATA_LIMIT,
            metavar="SIZE",
            help=f"refuse a snapshot or plan file larger than SIZE (default {format_size(DATA_LIMIT)})",
        )


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_policy_argument(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("ACR_RETENTION_POLICY")
    parser.add_argument(
        "--policy",
        action="append",
        required=default is None,
        metavar="POLICY",
        help="policy file or directory (repeatable); default: $ACR_RETENTION_POLICY",
    )
    parser.set_defaults(policy_default=default)


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except GrammarError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
