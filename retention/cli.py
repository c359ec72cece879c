"""Command line: argument parsing, wiring of the stages, exit codes. No decisions here.

`plan` stops after rendering; that is the whole of the dry run. With
`--pushgateway`, `plan` and `apply` push their run metrics as they end (see
`retention.metrics`); a push never changes the exit code. Exit codes
(interfaces.md §2): 0 success, 1 error, 2 usage error (or, with
`plan --detailed-exitcode`, a non-empty plan), 3 plan over `max_deletes`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from retention import __version__, logs, registry
from retention.apply import Budgets, PlanRefusedError, check_saved_plan, confirm, only_repositories, run_apply
from retention.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_OVER_LIMIT,
    EXIT_USAGE,
    PolicyError,
    RetentionError,
    UsageError,
)
from retention.matchers import GrammarError, parse_duration
from retention.metrics import DEFAULT_JOB, PushError, Pushgateway, RunMetrics, push
from retention.pipeline import plan_from_registry, plan_from_snapshot, snapshot_registry
from retention.plan import iter_plan_json
from retention.planfile import PLAN_KEY_VARIABLE, load_plan, plan_key
from retention.policyload import format_report, load_policy, validate
from retention.ratelimit import SKU_LIMITS
from retention.registry import DEFAULT_AUDIENCE, Connection, RegistryTarget
from retention.render import render_markdown, render_text
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import IO

    from retention.apply import ApplyResult
    from retention.plan import Plan

PROG = "acr-retention"
PUSHGATEWAY_VARIABLE = "ACR_RETENTION_PUSHGATEWAY"
PUSHGATEWAY_JOB_VARIABLE = "ACR_RETENTION_PUSHGATEWAY_JOB"


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors name the program the way our other errors do (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Retention and cleanup policies for Azure Container Registry: validate, plan, apply.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=os.environ.get("ACR_RETENTION_LOG_FORMAT", "auto"),
        help="structured logs on stderr: JSON off a terminal, console on one (default: auto)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=os.environ.get("ACR_RETENTION_LOG_LEVEL", "info"),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    check = commands.add_parser(
        "validate",
        help="check policy files: every problem as file:line:col: $.path: message",
        description="Check policy files and directories against the schema and the semantic rules. "
        "Every problem is reported; exit 1 when there is any.",
    )
    check.add_argument("policies", nargs="+", metavar="POLICY", help="policy file or directory of *.yaml")

    plan = commands.add_parser(
        "plan",
        help="the dry run: what would be deleted, locked and kept, and why",
        description="Take an inventory (a live registry or a snapshot file), apply the policy and show the "
        "plan. Nothing is changed.",
    )
    _add_policy_argument(plan)
    source = plan.add_mutually_exclusive_group()
    source.add_argument("--snapshot", metavar="FILE", help="inventory from a snapshot file")
    source.add_argument(
        "--registry",
        metavar="REGISTRY",
        help="inventory from a live registry (login server or https URL); default: $ACR_RETENTION_REGISTRY,"
        " then the policy's registry",
    )
    _add_registry_options(plan)
    plan.add_argument(
        "--now",
        type=_rfc3339,
        metavar="TIME",
        help="RFC 3339 time that ages are measured from (default: the current UTC time)",
    )
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan.add_argument("--out", metavar="FILE", help="write the rendered plan to FILE instead of stdout")
    plan.add_argument(
        "--save-plan", metavar="FILE", help="also write the plan as JSON to FILE (for review or apply --plan)"
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when the plan is not empty, 0 when there is nothing to do",
    )
    plan.add_argument(
        "--max-deletes",
        type=_non_negative,
        metavar="N",
        help="refuse (exit 3) a plan deleting more than N manifests; the smaller of this and the "
        "policy's settings.max_deletes wins",
    )
    plan.add_argument(
        "--verbose", "-v", action="store_true", help="text format: also list kept and untouched"
    )
    plan.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="color the text format (auto: on a terminal, unless NO_COLOR is set)",
    )
    _add_pushgateway_options(plan)

    apply = commands.add_parser(
        "apply",
        help="plan (or load a saved plan) and execute it: deletes and property changes",
        description="Execute a plan against a live registry: the same plan `plan` shows. On a terminal "
        "it asks for confirmation; elsewhere it refuses without --yes. A plan over max_deletes executes "
        "nothing.",
    )
    apply.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help="policy file or directory (repeatable; default $ACR_RETENTION_POLICY); not needed with --plan",
    )
    apply.add_argument(
        "--registry",
        metavar="REGISTRY",
        help="login server or https URL; default: $ACR_RETENTION_REGISTRY, then the policy's registry",
    )
    apply.add_argument(
        "--plan",
        metavar="FILE",
        help="execute this saved plan (from plan --save-plan): no action it does not contain, and only"
        " those a fresh look at each repository agrees with; --policy beside it must be its own policy;"
        f" with ${PLAN_KEY_VARIABLE} set, only a plan signed with that key",
    )
    apply.add_argument(
        "--allow-snapshot-plan",
        action="store_true",
        help="accept a saved plan made from a snapshot file (plan --snapshot); its taken_at is only"
        " what the file says, so --max-plan-age cannot vouch for it",
    )
    apply.add_argument(
        "--max-plan-age",
        type=_duration,
        default="1h",
        metavar="DURATION",
        help="refuse a saved plan whose inventory is older than this (default 1h)",
    )
    apply.add_argument("--yes", action="store_true", help="do not ask; needed when stdin is not a terminal")
    apply.add_argument(
        "--now", type=_rfc3339, metavar="TIME", help="as for plan: ages are measured from TIME"
    )
    apply.add_argument(
        "--max-deletes",
        type=_non_negative,
        metavar="N",
        help="refuse (exit 3, nothing executed) a plan deleting more than N manifests",
    )
    apply.add_argument(
        "--report", metavar="FILE", help="write the audit report (JSON lines) here; default stdout"
    )
    apply.add_argument(
        "--sku",
        choices=sorted(SKU_LIMITS),
        default="standard",
        help="request budgets start at half this SKU's documented per-identity limits (default standard)",
    )
    apply.add_argument("--max-deletes-per-minute", type=_positive, metavar="N", help="DELETE budget")
    apply.add_argument("--max-writes-per-minute", type=_positive, metavar="N", help="PATCH budget (locks)")
    apply.add_argument("--max-reads-per-minute", type=_positive, metavar="N", help="GET budget (listings)")
    _add_registry_options(apply)
    _add_pushgateway_options(apply)

    snap = commands.add_parser(
        "snapshot",
        help="record a live registry's inventory as a snapshot file",
        description="Read a live registry (read-only) and write its inventory as a snapshot file, "
        "for planning offline, reviewing, or tests.",
    )
    snap.add_argument(
        "--registry",
        metavar="REGISTRY",
        help="login server or https URL; default: $ACR_RETENTION_REGISTRY",
    )
    snap.add_argument("--out", required=True, metavar="FILE", help="where to write the snapshot (atomically)")
    _add_registry_options(snap)
    return parser


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
        default=os.environ.get("ACR_RETENTION_AUDIENCE", DEFAULT_AUDIENCE),
        metavar="URL",
        help=f"Entra ID audience for registry tokens (default {DEFAULT_AUDIENCE}; sovereign clouds:"
        " https://containerregistry.azure.cn, https://containerregistry.azure.us; ARM audience:"
        " https://management.azure.com)",
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


@dataclass
class _Run:
    """How far a plan or apply run got, filled in as it goes, so that even a failed run has metrics."""

    started: float  # time.monotonic()
    gateway: Pushgateway | None = None
    registry: str | None = None
    plan: Plan | None = None
    applied: ApplyResult | None = None
    returned: bool = False  # the command ended with an exit code of its own, not an error


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_format, args.log_level)
    run = _Run(started=time.monotonic())
    code = _dispatch(args, run)
    if run.gateway is not None:
        _push_metrics(args, run, code, run.gateway)
    return code


def _dispatch(args: argparse.Namespace, run: _Run) -> int:
    try:
        if args.command == "validate":
            return _cmd_validate(args.policies)
        if args.command == "snapshot":
            return _cmd_snapshot(args)
        run.gateway = _pushgateway(args)
        code = _cmd_apply(args, run) if args.command == "apply" else _cmd_plan(args, run)
        run.returned = True
    except PolicyError as exc:
        sys.stderr.write(format_report(list(exc.problems)))
        return exc.exit_code
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except RetentionError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); nothing useful can be written any more.
        sys.stderr.close()
        return EXIT_ERROR
    return code


def _pushgateway(args: argparse.Namespace) -> Pushgateway | None:
    """--pushgateway, else $ACR_RETENTION_PUSHGATEWAY; empty means no push."""
    text: str = os.environ.get(PUSHGATEWAY_VARIABLE, "") if args.pushgateway is None else args.pushgateway
    if not text.strip():
        return None
    try:
        return Pushgateway.parse(text, job=args.pushgateway_job)
    except ValueError as exc:  # only the variable's: argparse has checked the option's
        raise UsageError(f"${PUSHGATEWAY_VARIABLE}: {exc}") from None


def _push_metrics(args: argparse.Namespace, run: _Run, code: int, gateway: Pushgateway) -> None:
    """Push the run's metrics; a failure is one warning and never changes the exit code."""
    log = logs.get_logger()
    # After a broken pipe stderr is closed: push all the same, but say nothing.
    quiet = sys.stderr.closed
    name = run.registry or _registry_named(args)
    if name is None:
        if not quiet:
            log.warning("metrics_not_pushed", reason="the run ended before the registry was known")
        return
    succeeded = run.returned and (code == EXIT_OK or (args.command == "plan" and code == EXIT_CHANGES))
    metrics = RunMetrics.of_run(
        args.command,
        name,
        exit_code=code,
        succeeded=succeeded,
        finished_at=time.time(),
        duration_s=round(time.monotonic() - run.started, 3),
        plan=run.plan,
        applied=run.applied,
    )
    try:
        url = push(gateway, metrics)
    except PushError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        # Ctrl-C while a slow gateway holds the push: the run itself is over, its exit code stands.
        error = "interrupted"
    else:
        if not quiet:
            log.info("metrics_pushed", url=url, exit_code=code, succeeded=succeeded)
        return
    if not quiet:
        log.warning("metrics_push_failed", pushgateway=gateway.url, error=error)


def _registry_named(args: argparse.Namespace) -> str | None:
    """The registry the command line or environment names, for a run that failed before connecting."""
    name = getattr(args, "registry", None) or os.environ.get("ACR_RETENTION_REGISTRY")
    if not name:
        return None
    try:
        return RegistryTarget.parse(name).login_server
    except RetentionError:
        return None


def _cmd_validate(paths: list[str]) -> int:
    result = validate(paths)
    sys.stdout.write(result.report())
    return EXIT_ERROR if result.problems else EXIT_OK


def _cmd_plan(args: argparse.Namespace, run: _Run) -> int:
    log = logs.get_logger()
    started = time.perf_counter()
    policy_paths: list[str] = args.policy or [args.policy_default]
    policy = load_policy(policy_paths)
    now: datetime = args.now or datetime.now(UTC)
    if args.snapshot:
        plan = plan_from_snapshot(policy, args.snapshot, now=now, max_deletes=args.max_deletes)
    else:
        connection = _connection(args, fallback=policy.registry)
        run.registry = connection.target.login_server
        plan = plan_from_registry(
            policy,
            connection,
            now=now,
            taken_at=datetime.now(UTC),
            max_deletes=args.max_deletes,
            repositories=args.repository,
        )
    run.registry = run.registry or plan.registry
    run.plan = plan
    summary = plan.summary()
    log.info(
        "plan_made",
        registry=plan.registry,
        **summary,
        over_limit=plan.over_limit,
        max_deletes=plan.max_deletes,
        duration_s=round(time.perf_counter() - started, 3),
    )
    key = plan_key()
    if args.save_plan:
        _write_atomically(args.save_plan, iter_plan_json(plan, key=key))
    rendered = _render(plan, args, key=key)
    if args.out:
        _write_atomically(args.out, rendered)
    else:
        sys.stdout.writelines(rendered)
        sys.stdout.flush()
    if plan.over_limit:
        sys.stderr.write(
            f"{PROG}: the plan deletes {plan.delete_count} manifests, more than max_deletes"
            f" {plan.max_deletes}; apply would refuse it\n"
        )
        return EXIT_OVER_LIMIT
    if args.detailed_exitcode and not plan.is_empty:
        return EXIT_CHANGES
    return EXIT_OK


def _cmd_apply(args: argparse.Namespace, run: _Run) -> int:
    started = datetime.now(UTC)
    if args.plan:
        plan = load_plan(args.plan, key=plan_key())
        connection = _connection(args, fallback=plan.registry)
        run.registry = connection.target.login_server
        policy = check_saved_plan(
            plan,
            login_server=connection.target.login_server,
            max_age=args.max_plan_age,
            now=started,
            allow_snapshot=args.allow_snapshot_plan,
        )
        if args.policy:
            given = load_policy(args.policy)
            if given.sha256 != plan.policy_sha256:
                raise PlanRefusedError(
                    f"--policy is not the policy the plan was made with (the plan's"
                    f" {plan.policy_sha256[:12]}, --policy {given.sha256[:12]}); drop --policy to apply"
                    " the plan as it is, or make a new plan"
                )
    else:
        paths = args.policy or (
            [os.environ["ACR_RETENTION_POLICY"]] if "ACR_RETENTION_POLICY" in os.environ else []
        )
        if not paths:
            raise UsageError("apply needs --policy (or $ACR_RETENTION_POLICY) or --plan FILE")
        policy = load_policy(paths)
        connection = _connection(args, fallback=policy.registry)
        run.registry = connection.target.login_server
        plan = plan_from_registry(
            policy,
            connection,
            now=args.now or started,
            taken_at=started,
            max_deletes=args.max_deletes,
            repositories=args.repository,
        )
    if args.max_deletes is not None:
        limits = [x for x in (plan.max_deletes, args.max_deletes) if x is not None]
        plan = replace(plan, max_deletes=min(limits))
    if not plan.over_limit:
        # Over the limit, the whole plan is refused: a filter must not let part of it through.
        plan = only_repositories(plan, args.repository)
    run.plan = plan
    sys.stdout.write(render_text(plan))
    sys.stdout.flush()
    if plan.is_empty:
        return EXIT_OK
    if not plan.over_limit and not confirm(plan, assume_yes=args.yes, stdin=sys.stdin, stderr=sys.stderr):
        sys.stderr.write(f"{PROG}: not applied\n")
        return EXIT_ERROR
    budgets = Budgets.for_sku(
        args.sku,
        deletes=args.max_deletes_per_minute,
        writes=args.max_writes_per_minute,
        reads=args.max_reads_per_minute,
    )
    execute = partial(
        run_apply,
        plan,
        connection,
        policy=policy,
        budgets=budgets,
        concurrency=args.concurrency,
        stderr=sys.stderr,
    )
    if not args.report:
        run.applied = execute(report=sys.stdout)
        return run.applied.exit_code
    try:
        with Path(args.report).open("w", encoding="utf-8") as report:
            run.applied = execute(report=report)
    except OSError as exc:
        raise RetentionError(f"cannot write {args.report}: {exc.strerror or exc}") from None
    return run.applied.exit_code


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except GrammarError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_snapshot(args: argparse.Namespace) -> int:
    log = logs.get_logger()
    started = time.perf_counter()
    connection = _connection(args, fallback=None)
    taken_at = datetime.now(UTC)
    count = 0

    def write(handle: IO[str]) -> None:
        nonlocal count
        count = snapshot_registry(connection, handle, taken_at=taken_at, repositories=args.repository)

    _write_atomically_with(args.out, write)
    log.info(
        "snapshot_written",
        registry=connection.target.login_server,
        repositories=count,
        out=args.out,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return EXIT_OK


def _connection(args: argparse.Namespace, *, fallback: str | None) -> Connection:
    name = args.registry or os.environ.get("ACR_RETENTION_REGISTRY") or fallback
    if not name:
        raise UsageError(
            "no registry: give --registry (or set ACR_RETENTION_REGISTRY, or registry: in the policy)"
            + (", or --snapshot FILE" if args.command == "plan" else "")
        )
    target = RegistryTarget.parse(name)
    credential = None if args.anonymous else registry.default_credential()
    return Connection(
        target=target,
        credential=credential,
        audience=args.audience,
        concurrency=args.concurrency,
        processes=args.processes,
    )


def _render(plan: Plan, args: argparse.Namespace, *, key: bytes | None) -> Iterable[str]:
    if args.format == "json":
        return iter_plan_json(plan, key=key)
    if args.format == "markdown":
        return [render_markdown(plan)]
    stream_is_tty = not args.out and sys.stdout.isatty()
    color = args.color == "always" or (
        args.color == "auto" and stream_is_tty and "NO_COLOR" not in os.environ
    )
    return [render_text(plan, verbose=args.verbose, color=color)]


def _write_atomically(path: str, chunks: Iterable[str]) -> None:
    """Readers of FILE see the old content or the whole new one, never half a plan."""
    _write_atomically_with(path, lambda handle: handle.writelines(chunks))


def _write_atomically_with(path: str, write: Callable[[IO[str]], None]) -> None:
    target = Path(path)
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as handle:
            temporary = Path(handle.name)
            write(handle)
        # NamedTemporaryFile creates 0600; a plan is read by later CI steps, so honour the umask.
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        temporary.replace(target)
        temporary = None
    except OSError as exc:
        raise RetentionError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
