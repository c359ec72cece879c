"""The commands: each wires the stages together for one subcommand and returns its exit code."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from retention import __version__, logs, registry
from retention.apply import PlanRefusedError, check_saved_plan, confirm, only_repositories, run_apply
from retention.cli.options import PROG
from retention.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_OVER_LIMIT,
    Problem,
    RetentionError,
    UsageError,
)
from retention.inuse import ImageUses, InUseError
from retention.inuse.files import read_file
from retention.inuse.references import registry_host
from retention.pipeline import PlanParts, plan_from_registry, plan_from_snapshot, snapshot_registry
from retention.plan import iter_plan_json
from retention.planfile import load_plan, plan_key
from retention.policy import InUseSetting, RuleAction
from retention.policyload import SCHEMA, load_policy, validate
from retention.progress import InventoryProgress
from retention.ratelimit import Budgets
from retention.recovery import plan_recovery, recovery_line
from retention.registry import Connection, RegistryTarget
from retention.registry.cache import default_cache_path
from retention.render import render_markdown, render_text

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Iterator
    from typing import IO

    from retention.apply import ApplyResult
    from retention.inuse import InUse
    from retention.metrics import Pushgateway
    from retention.plan import Plan
    from retention.policy import Policy
    from retention.registry.arm import SoftDeletePolicy


@dataclass
class Run:
    """How far a plan or apply run got, filled in as it goes, so that even a failed run has metrics."""

    started: float  # time.monotonic()
    gateway: Pushgateway | None = None
    registry: str | None = None
    plan: Plan | None = None
    applied: ApplyResult | None = None
    returned: bool = False  # the command ended with an exit code of its own, not an error


def cmd_version() -> int:
    """What a bug report needs: this tool, the SDK packages it drives, Python."""
    lines = [f"{PROG} {__version__}"]
    for package in ("azure-containerregistry", "azure-identity", "azure-core", "kubernetes"):
        try:
            lines.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{package} (not installed)")
    lines.append(f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.platform})")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def cmd_schema() -> int:
    sys.stdout.write(json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def cmd_validate(paths: list[str], *, limit: int, annotations: bool = False) -> int:
    result = validate(paths, limit=limit)
    if annotations:
        sys.stdout.writelines(github_annotation(problem) + "\n" for problem in result.problems)
    sys.stdout.write(result.report())
    return EXIT_ERROR if result.problems else EXIT_OK


def github_annotation(problem: Problem) -> str:
    """`::error file=…,line=…,col=…,title=…::message`: GitHub marks the line in the pull request.
    Values are escaped as the workflow-command format requires (`%`, CR, LF; also `:` and `,` in
    properties), so a hostile file name or message cannot end the command early."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    where = [f"file={prop(problem.file)}"]
    if problem.line is not None:
        where += [f"line={problem.line}", f"col={problem.column or 1}"]
    where.append(f"title={prop('acr-retention policy')}")
    message = f"{problem.json_path}: {problem.message}" if problem.json_path else problem.message
    return f"::error {','.join(where)}::{data(message)}"


def cmd_plan(args: argparse.Namespace, run: Run) -> int:
    log = logs.get_logger()
    started = time.perf_counter()
    policy_paths: list[str] = args.policy or [args.policy_default]
    policy = load_policy(policy_paths, limit=args.max_policy_size)
    now: datetime = args.now or datetime.now(UTC)
    # A saved plan carries what `explain --plan` shows beyond its reasons. `--format json` stays
    # the plan as make_plan gives it, which scripts compare with plans they make themselves.
    details = bool(args.save_plan)
    if args.snapshot:
        uses = image_uses(args, policy)
        plan = plan_from_snapshot(
            policy,
            args.snapshot,
            now=now,
            max_deletes=args.max_deletes,
            limit=args.max_input_size,
            uses=uses,
            details=details,
        )
    else:
        connection = _connection(args, fallback=policy.registry)
        run.registry = connection.target.login_server
        uses = image_uses(args, policy)
        taken_at = datetime.now(UTC)
        plan = plan_from_registry(
            policy,
            connection,
            now=now,
            taken_at=taken_at,
            max_deletes=args.max_deletes,
            repositories=args.repository,
            in_use=_in_registry(uses, connection, policy),
            details=details,
            progress=InventoryProgress.on(sys.stderr, connection),
        )
    if not args.snapshot:
        # A live plan says whether its deletions could be undone (header, summary, JSON); a plan of
        # a snapshot cannot know the registry's settings and says nothing.
        from retention.cli.recovery import soft_delete_policy  # noqa: PLC0415 - it imports this module

        # Read, never required here: require_soft_delete refuses apply, not a dry run.
        plan = replace(plan, recovery=plan_recovery(soft_delete_policy(args, connection), now))
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
            f"{PROG}: the plan deletes {plan.deletions()}, more than max_deletes"
            f" {plan.max_deletes}; apply would refuse it\n"
        )
        return EXIT_OVER_LIMIT
    if args.detailed_exitcode and not plan.is_empty:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace, run: Run) -> int:
    started = datetime.now(UTC)
    if args.plan:
        plan = load_plan(args.plan, key=plan_key(), limit=args.max_input_size)
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
            given = load_policy(args.policy, limit=args.max_policy_size)
            if given.sha256 != plan.policy_sha256:
                raise PlanRefusedError(
                    f"--policy is not the policy the plan was made with (the plan's"
                    f" {plan.policy_sha256[:12]}, --policy {given.sha256[:12]}); drop --policy to apply"
                    " the plan as it is, or make a new plan"
                )
        if plan.in_use_sources and not (args.in_use_cluster or args.in_use_file):
            # What runs now may not be what ran at plan time: apply looks again, or does not run.
            raise PlanRefusedError(
                f"the plan was made with in-use protection ({', '.join(plan.in_use_sources)}); give apply"
                " --in-use-cluster or --in-use-file too, so that it sees what runs now"
            )
        uses = image_uses(args, policy)
        in_use = _in_registry(uses, connection, policy, plan.registry)
    else:
        paths = args.policy or (
            [os.environ["ACR_RETENTION_POLICY"]] if "ACR_RETENTION_POLICY" in os.environ else []
        )
        if not paths:
            raise UsageError("apply needs --policy (or $ACR_RETENTION_POLICY) or --plan FILE")
        policy = load_policy(paths, limit=args.max_policy_size)
        connection = _connection(args, fallback=policy.registry)
        run.registry = connection.target.login_server
        uses = image_uses(args, policy)
        in_use = _in_registry(uses, connection, policy)
        if _reads_while_deleting(args, policy):
            return _apply_parts(args, run, policy, connection, in_use=in_use, started=started)
        plan = plan_from_registry(
            policy,
            connection,
            now=args.now or started,
            taken_at=started,
            max_deletes=args.max_deletes,
            repositories=args.repository,
            in_use=in_use,
            progress=InventoryProgress.on(sys.stderr, connection),
        )
    if args.max_deletes is not None:
        limits = [x for x in (plan.max_deletes, args.max_deletes) if x is not None]
        plan = replace(plan, max_deletes=min(limits))
    if not plan.over_limit:
        # Over the limit, the whole plan is refused: a filter must not let part of it through.
        plan = only_repositories(plan, args.repository)
    run.plan = plan
    soft_delete = _soft_delete(args, connection, policy)
    sys.stdout.write(render_text(plan, color=_color(args, sys.stdout.isatty())))
    sys.stdout.flush()
    if not plan.is_empty:  # on stderr: stdout's last line stays the plan's summary, which scripts read
        sys.stderr.write(recovery_line(soft_delete, started))
    if plan.is_empty:
        if args.report:  # an empty report, not the last run's: nothing was to be done
            _write_atomically(args.report, [])
        return EXIT_OK
    if not plan.over_limit and not confirm(plan, assume_yes=args.yes, stdin=sys.stdin, stderr=sys.stderr):
        sys.stderr.write(f"{PROG}: not applied\n")
        return EXIT_ERROR
    budgets = _budgets(args)
    execute = partial(
        run_apply,
        plan,
        connection,
        policy=policy,
        budgets=budgets,
        concurrency=args.concurrency,
        stderr=sys.stderr,
        in_use=in_use,
        soft_delete=soft_delete,
    )
    run.applied, announce = _with_report(args, connection, started, execute)
    if announce:
        sys.stderr.write(f"Report: {announce}\n")
    return run.applied.exit_code


def _with_report(
    args: argparse.Namespace, connection: Connection, started: datetime, execute: Callable[..., ApplyResult]
) -> tuple[ApplyResult, str | None]:
    """`execute(report=...)` with the report where it belongs: --report FILE; else stdout when it is
    not a terminal; else a file of its own, whose path is returned to be announced last."""
    if not args.report and not sys.stdout.isatty():
        return execute(report=sys.stdout), None
    # On a terminal, JSON lines would tear the progress line apart; the audit trail (and what
    # `restore` needs) goes to a file of its own instead.
    path = args.report or str(_default_report(connection.target.login_server, started))
    try:
        with _report_file(path) as report:
            result = execute(report=report)
    except OSError as exc:
        raise RetentionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return result, None if args.report else path


def _reads_while_deleting(args: argparse.Namespace, policy: Policy) -> bool:
    """Whether `apply --policy` may act on each repository as soon as it is read and planned.

    Only where nothing could refuse the whole plan once it is read: no confirmation to ask
    (--yes), no max_deletes (a plan over it executes nothing, interfaces.md §2), fewer than two
    lock rules (only two can conflict, which refuses the plan), and not --read-first.
    """
    locks = sum(rule.action is RuleAction.LOCK for rule in policy.rules)
    return bool(
        args.yes
        and not args.read_first
        and policy.settings.max_deletes is None
        and args.max_deletes is None
        and locks < 2  # noqa: PLR2004
    )


def _apply_parts(
    args: argparse.Namespace,
    run: Run,
    policy: Policy,
    connection: Connection,
    *,
    in_use: InUse | None,
    started: datetime,
) -> int:
    """`apply --policy --yes`, reading and deleting at once: each repository's actions run (with
    the drift guard's fresh look, as always) while the next repositories are read. The plan is
    shown at the end, whole, as `plan` would have shown it."""
    soft_delete = _soft_delete(args, connection, policy)
    parts = PlanParts(
        policy,
        connection,
        now=args.now or started,
        taken_at=started,
        repositories=args.repository,
        in_use=in_use,
    )
    logs.get_logger().info("apply_reads_while_deleting", registry=connection.target.login_server)
    execute = partial(
        run_apply,
        parts,
        connection,
        policy=policy,
        budgets=_budgets(args),
        concurrency=args.concurrency,
        stderr=sys.stderr,
        in_use=in_use,
        soft_delete=soft_delete,
    )
    result, announce = _with_report(args, connection, started, execute)
    run.applied = result
    try:
        run.plan = parts.whole()
    except RetentionError:
        pass  # the run's error was said already (a part that could not be planned)
    else:
        sys.stdout.write(render_text(run.plan, color=_color(args, sys.stdout.isatty())))
        sys.stdout.flush()
    if announce:
        sys.stderr.write(f"Report: {announce}\n")
    return result.exit_code


def _default_report(registry: str, started: datetime) -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    folder = Path(state) / "acr-retention" / "reports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RetentionError(
            f"cannot create {folder} for the report: {exc.strerror or exc}; give --report FILE"
        ) from None
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in registry)
    return folder / f"{safe}-{started.strftime('%Y%m%dT%H%M%SZ')}.jsonl"


def cmd_snapshot(args: argparse.Namespace) -> int:
    log = logs.get_logger()
    started = time.perf_counter()
    connection = _connection(args, fallback=None)
    taken_at = datetime.now(UTC)
    count = 0

    def write(handle: IO[str]) -> None:
        nonlocal count
        count = snapshot_registry(
            connection,
            handle,
            taken_at=taken_at,
            repositories=args.repository,
            progress=InventoryProgress.on(sys.stderr, connection),
        )

    _write_atomically_with(args.out, write)
    log.info(
        "snapshot_written",
        registry=connection.target.login_server,
        repositories=count,
        out=args.out,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return EXIT_OK


def _soft_delete(args: argparse.Namespace, connection: Connection, policy: Policy) -> SoftDeletePolicy:
    """The registry's soft-delete setting; `require_soft_delete` refuses to go on without it."""
    from retention.cli.recovery import soft_delete_policy  # noqa: PLC0415 - it imports this module

    found = soft_delete_policy(args, connection)
    if policy.settings.require_soft_delete and found.state != "on":
        why = "it is off" if found.state == "off" else f"it is not known to be on: {found.why_unknown}"
        raise RetentionError(
            f"the policy requires soft delete (settings.require_soft_delete), and {why}; nothing was changed"
        )
    return found


def image_uses(args: argparse.Namespace, policy: Policy) -> ImageUses | None:
    """Every in-use source the command line names, read whole; None when it names none.
    Raises InUseError (fail closed) and RetentionError when the policy requires a source."""
    files: list[str] = args.in_use_file
    clusters: list[str] = args.in_use_cluster
    if not files and not clusters:
        if policy.settings.in_use is InUseSetting.REQUIRED:
            raise InUseError(
                "the policy requires in-use protection (settings.in_use: required): give --in-use-cluster"
                " CONTEXT or --in-use-file FILE"
            )
        return None
    started = time.perf_counter()
    uses = ImageUses()
    for path in files:
        uses += read_file(path, limit=args.max_input_size)
    if clusters:
        from retention.inuse.cluster import read_cluster  # noqa: PLC0415 - imports the kubernetes client

        for context in clusters:
            uses += read_cluster(context, kubeconfig=args.kubeconfig)
    logs.get_logger().info(
        "in_use_read",
        sources=list(uses.sources),
        references=len(uses.references),
        unparsable=uses.unparsable,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return uses


def _in_registry(
    uses: ImageUses | None, connection: Connection, policy: Policy, *names: str | None
) -> InUse | None:
    if uses is None:
        return None
    return uses.in_registry([connection.target.login_server, policy.registry, *names])


def _connection(args: argparse.Namespace, *, fallback: str | None) -> Connection:
    name = args.registry or os.environ.get("ACR_RETENTION_REGISTRY") or fallback
    if not name:
        raise UsageError(
            "no registry: give --registry (or set ACR_RETENTION_REGISTRY, or registry: in the policy)"
            + (", or --snapshot FILE" if args.command == "plan" else "")
        )
    target = RegistryTarget.parse(name)
    log = logs.get_logger()
    if target.completed:
        # `az acr -n myreg` habit: a bare registry name is its azurecr.io login server; say so.
        log.info("registry_name_completed", given=name.strip(), registry=target.login_server)
    # The host part only: a policy's registry is compared as image references name it, and a
    # malformed one must not fail a run that names its registry on the command line.
    policy_registry = registry_host(fallback) if fallback else None
    if policy_registry and target.login_server.casefold() != policy_registry:
        # A policy written for one registry, run against another: legal (staging, a copy), but
        # worth a word, since the policy's authors may not have meant it.
        log.warning(
            "registry_differs_from_policy", registry=target.login_server, policy_registry=policy_registry
        )
    credential = None if args.anonymous else registry.default_credential()
    return Connection(
        target=target,
        credential=credential,
        audience=args.audience,
        concurrency=args.concurrency,
        processes=args.processes,
        cache_path=None if args.no_cache else (args.cache or str(default_cache_path())),
        budgets=_budgets(args).shared(),
    )


def _budgets(args: argparse.Namespace) -> Budgets:
    return Budgets.for_sku(
        args.sku,
        deletes=getattr(args, "max_deletes_per_minute", None),
        writes=getattr(args, "max_writes_per_minute", None),
        reads=args.max_reads_per_minute,
    )


def _render(plan: Plan, args: argparse.Namespace, *, key: bytes | None) -> Iterable[str]:
    if args.format == "json":
        return iter_plan_json(plan, key=key)
    if args.format == "markdown":
        return [render_markdown(plan)]
    return [render_text(plan, verbose=args.verbose, color=_color(args, not args.out and sys.stdout.isatty()))]


def _color(args: argparse.Namespace, terminal: bool) -> bool:
    return bool(
        args.color == "always" or (args.color == "auto" and terminal and "NO_COLOR" not in os.environ)
    )


def _write_atomically(path: str, chunks: Iterable[str]) -> None:
    """Readers of FILE see the old content or the whole new one, never half a plan."""
    _write_atomically_with(path, lambda handle: handle.writelines(chunks))


def _write_atomically_with(path: str, write: Callable[[IO[str]], None]) -> None:
    target = Path(path)
    temporary: Path | None = None
    try:
        if _written_in_place(target):
            with target.open("a", encoding="utf-8") as handle:
                write(handle)
            return
        with _fresh_file(target) as handle:
            temporary = Path(handle.name)
            write(handle)
        temporary.replace(target)
        temporary = None
    except OSError as exc:
        raise RetentionError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _report_file(path: str) -> Iterator[IO[str]]:
    """`--report FILE`, written line by line as actions finish, so FILE itself is where a run's
    report is, whole or, after a kill, as far as it got.

    A new file, made under a temporary name beside FILE, is renamed onto FILE before the first
    line: a symlink at FILE is replaced, never followed, and an old report is swapped out in one
    step, never truncated (a hard link to it keeps it whole). Raises OSError.
    """
    target = Path(path)
    if _written_in_place(target):
        with target.open("a", encoding="utf-8") as handle:
            yield handle
        return
    with _fresh_file(target) as handle:
        try:
            Path(handle.name).replace(target)
        except OSError:
            Path(handle.name).unlink(missing_ok=True)
            raise
        yield handle


def _fresh_file(target: Path) -> IO[str]:
    """A new, empty file beside `target` (same directory, so a rename onto it is atomic), named
    `.<name>.<random>`, created exclusively (O_EXCL: no symlink or file of anyone else's is
    opened), with the permissions the umask gives new files. Raises OSError."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the callers close it
        "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    # NamedTemporaryFile creates 0600; plans and reports are read by later CI steps: honour the umask.
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(handle.fileno(), 0o666 & ~umask)
    except OSError:
        handle.close()
        Path(handle.name).unlink(missing_ok=True)
        raise
    return handle


def _written_in_place(target: Path) -> bool:
    """Whether FILE is written where it is instead of replaced: a device, FIFO or socket
    (/dev/null, a named pipe), or one of this process's open files under another name (/dev/stdout,
    /dev/fd/3, /proc/self/fd/1, bash's >(…)). Replacing those would put a regular file where a
    device node or the process's own stdout link was (as root, in /dev)."""
    try:
        if not stat.S_ISREG(target.stat().st_mode):
            return True  # a directory too: opening it then says "Is a directory"
    except OSError:
        return False  # nothing there yet, or a dangling symlink: a new file
    if str(target.parent.resolve()).startswith("/proc/"):
        return True
    return target.is_symlink() and str(target.readlink()).startswith(("/proc/", "/dev/fd/"))
