"""Command line: argument parsing, wiring of the stages, exit codes. No decisions here.

`plan` stops after rendering; that is the whole of the dry run. With
`--pushgateway`, `plan` and `apply` push their run metrics as they end (see
`retention.metrics`); a push never changes the exit code. Exit codes
(interfaces.md §2): 0 success, 1 error, 2 usage error (or, with
`plan --detailed-exitcode`, a non-empty plan), 3 plan over `max_deletes`.

- `arguments`: the parser and each command's own options;
- `options`: options several commands share, value types, help examples;
- `commands`: what each command does with them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING

import argcomplete

from retention import logs
from retention.cli.arguments import build_parser
from retention.cli.commands import (
    Run,
    cmd_apply,
    cmd_plan,
    cmd_schema,
    cmd_snapshot,
    cmd_validate,
    cmd_version,
)
from retention.cli.options import PROG, PUSHGATEWAY_VARIABLE
from retention.cli.recovery import cmd_recovery
from retention.cli.review import cmd_diff, cmd_explain
from retention.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    PolicyError,
    RetentionError,
    UsageError,
)
from retention.metrics import PushError, Pushgateway, RunMetrics, push
from retention.planfile import PLAN_KEY_VARIABLE
from retention.policyload import format_report
from retention.registry import ACCESS_TOKEN_VARIABLE, RegistryTarget

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# Exit codes that --detailed-exitcode leaves alone: success, and interruption (SIGINT, SIGTERM).
_NOT_ERRORS = frozenset({EXIT_OK, 130, 143})


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # As in terraform (interfaces.md §2): with --detailed-exitcode, 2 means only "succeeded, and
    # there are changes", so every error, a usage error included, exits 1. A CI step must never
    # read a typo as "changes".
    detailed = "--detailed-exitcode" in arguments
    parser = build_parser()
    # Shell completion (README, "Shell completion"): a no-op unless the shell's completion hook
    # set _ARGCOMPLETE; then it prints the candidates and exits before anything runs.
    argcomplete.autocomplete(parser)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        if detailed and exc.code not in (0, None):
            return EXIT_ERROR
        raise
    logs.configure(args.log_format, args.log_level, secrets=_known_secrets(args))
    run = Run(started=time.monotonic())
    code = _dispatch(args, run)
    if detailed and not run.returned and code not in _NOT_ERRORS:
        code = EXIT_ERROR  # 2 then means only "succeeded, and there are changes"
    if run.gateway is not None:
        _push_metrics(args, run, code, run.gateway)
    return code


def _dispatch(args: argparse.Namespace, run: Run) -> int:
    try:
        if args.command == "version":
            return cmd_version()
        if args.command == "schema":
            return cmd_schema()
        if args.command == "validate":
            return cmd_validate(
                args.policies, limit=args.max_policy_size, annotations=args.format == "github"
            )
        if args.command == "snapshot":
            return cmd_snapshot(args)
        if args.command in ("deleted", "restore"):
            return cmd_recovery(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "diff":
            code = cmd_diff(args, run)
            run.returned = True
            return code
        run.gateway = _pushgateway(args)
        code = cmd_apply(args, run) if args.command == "apply" else cmd_plan(args, run)
        run.returned = True
    except PolicyError as exc:
        sys.stderr.write(format_report(list(exc.problems)))
        return exc.exit_code
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {logs.scrub(str(exc))}\n")
        return EXIT_USAGE
    except RetentionError as exc:
        # Registry and credential errors quote what the SDK and the registry said: redacted.
        sys.stderr.write(f"{PROG}: error: {logs.scrub(str(exc))}\n")
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


def _push_metrics(args: argparse.Namespace, run: Run, code: int, gateway: Pushgateway) -> None:
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


def _known_secrets(args: argparse.Namespace) -> list[str]:
    """Credentials this run was handed, masked wherever they would show, whatever their shape."""
    names = (
        ACCESS_TOKEN_VARIABLE,
        PLAN_KEY_VARIABLE,
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_PASSWORD",
    )
    found = [os.environ.get(name, "") for name in names]
    for url in (getattr(args, "pushgateway", None), os.environ.get(PUSHGATEWAY_VARIABLE)):
        if url and url.strip():
            with contextlib.suppress(ValueError):  # a malformed URL is echoed redacted anyway
                found.append(Pushgateway.parse(url).password or "")
    return [value for value in found if value]


def _registry_named(args: argparse.Namespace) -> str | None:
    """The registry the command line or environment names, for a run that failed before connecting."""
    name = getattr(args, "registry", None) or os.environ.get("ACR_RETENTION_REGISTRY")
    if not name:
        return None
    try:
        return RegistryTarget.parse(name).login_server
    except RetentionError:
        return None
