"""The command line's commands: the parser, and the options only one command has. Parsing only.

Options several commands share, value types and help examples are in `retention.cli.options`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from retention import __version__
from retention.cli.options import (
    _EXAMPLES,
    PROG,
    _add_global_options,
    _add_in_use_options,
    _add_policy_argument,
    _add_pushgateway_options,
    _add_registry_options,
    _add_size_limits,
    _non_negative,
    _positive,
    _rfc3339,
    _size,
    duration,
)
from retention.inputfiles import DATA_LIMIT, format_size
from retention.planfile import PLAN_KEY_VARIABLE
from retention.redact import redact


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors name the program the way our other errors do (exit 2), never
    echo a credential from the command line (a mistyped option's `user:password@` URL), and never
    guess: `apply --y` is not `--yes` (no abbreviations), and examples keep their line breaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {redact(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Retention and cleanup policies for Azure Container Registry: validate, plan, apply.",
    )
    parser.epilog = _EXAMPLES["main"]
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_global_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    check = commands.add_parser(
        "validate",
        help="check policy files: every problem as file:line:col: $.path: message",
        description="Check policy files and directories against the schema and the semantic rules. "
        "Every problem is reported; exit 1 when there is any.",
    )
    check.add_argument("policies", nargs="+", metavar="POLICY", help="policy file or directory of *.yaml")
    check.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="text: file:line:col: $.path: message lines; github: also GitHub Actions annotations,"
        " which mark each problem on the pull request's diff (default text)",
    )
    _add_size_limits(check, inputs=False)

    plan = commands.add_parser(
        "plan",
        help="the dry run: what would be deleted, locked and kept, and why",
        description="Take an inventory (a live registry or a snapshot file), apply the policy and show the "
        "plan. Nothing is changed.",
    )
    _add_policy_argument(plan)
    _add_size_limits(plan, inputs=True)
    _add_inventory_source(plan)
    _add_registry_options(plan)
    add_soft_delete_options(plan)
    plan.add_argument(
        "--now",
        type=_rfc3339,
        metavar="TIME",
        help="RFC 3339 time that ages are measured from (default: the current UTC time)",
    )
    plan.add_argument(
        "--format",
        "-o",
        "--output",
        choices=("text", "json", "markdown"),
        default="text",
        help="text: the diff for a terminal; json: the plan document (interfaces.md §4); markdown: for"
        " a CI job summary or PR comment (default text; -o/--output as in kubectl)",
    )
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
    _add_in_use_options(plan)
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
    _add_size_limits(apply, inputs=True)
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
        type=duration,
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
        "--report",
        metavar="FILE",
        help="write the audit report (JSON lines) here; default: stdout when it is not a terminal, else a"
        " new file under $XDG_STATE_HOME/acr-retention/reports (its path is printed at the end)",
    )
    apply.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="color the plan shown before applying (auto: on a terminal, unless NO_COLOR is set)",
    )
    apply.add_argument(
        "--read-first",
        action="store_true",
        help="with --policy --yes: read and plan the whole registry before changing anything (default:"
        " each repository is acted on once read, while the next are read, unless max_deletes or two lock"
        " rules could refuse the whole plan)",
    )
    apply.add_argument("--max-deletes-per-minute", type=_positive, metavar="N", help="cap on deletes")
    apply.add_argument(
        "--max-writes-per-minute", type=_positive, metavar="N", help="cap on writes (PATCH: locks, unlocks)"
    )
    _add_registry_options(apply)
    add_soft_delete_options(apply)
    _add_in_use_options(apply)
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

    commands.add_parser(
        "version",
        help="print the version of acr-retention, its SDKs and Python",
        description="The versions a bug report needs: acr-retention, the Azure SDK packages, the"
        " kubernetes client and Python.",
    )
    commands.add_parser(
        "schema",
        help="print the policy JSON Schema (for editors and other validators)",
        description="Print the JSON Schema that policies are validated against. Point an editor at it"
        " with a first line `# yaml-language-server: $schema=<file or URL>`.",
    )
    _add_deleted_parser(commands)
    _add_restore_parser(commands)
    _add_diff_parser(commands)
    _add_explain_parser(commands)
    for name, command in commands.choices.items():
        # Global options also after the subcommand (`plan --log-format console`), as the README
        # writes them; given there, they override the ones before it.
        _add_global_options(command, defaults=False)
        command.epilog = _EXAMPLES.get(name)
    return parser


def add_soft_delete_options(parser: argparse.ArgumentParser) -> None:
    """Where to read whether the registry's soft delete is on (ARM; the data plane does not tell)."""
    parser.add_argument(
        "--registry-resource-id",
        default=os.environ.get("ACR_RETENTION_REGISTRY_RESOURCE_ID") or None,
        metavar="ID",
        help="the registry's ARM resource ID (/subscriptions/…/registries/NAME; default"
        " $ACR_RETENTION_REGISTRY_RESOURCE_ID): soft delete's setting is read from ARM (Reader suffices),"
        " to say until when deletions are recoverable; without it they are called permanent",
    )
    parser.add_argument(
        "--arm-endpoint",
        default=os.environ.get("ACR_RETENTION_ARM_ENDPOINT", "https://management.azure.com"),
        metavar="URL",
        help="Azure Resource Manager (default https://management.azure.com, or $ACR_RETENTION_ARM_ENDPOINT;"
        " sovereign clouds: https://management.chinacloudapi.cn, https://management.usgovcloudapi.net)",
    )


def _add_deleted_parser(commands: Any) -> None:
    deleted = commands.add_parser(
        "deleted",
        help="list soft-deleted manifests and tags, and when they expire",
        description="List what the registry's soft delete keeps: deleted repositories, manifests and tags,"
        " with when each was deleted and (with --registry-resource-id) when it expires. Read-only;"
        " needs the deleted/read permission.",
    )
    deleted.add_argument(
        "--registry", metavar="REGISTRY", help="login server or https URL; default: $ACR_RETENTION_REGISTRY"
    )
    deleted.add_argument(
        "--format",
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: a table for people; json: one document for tools (default text)",
    )
    _add_registry_options(deleted)
    add_soft_delete_options(deleted)


def _add_restore_parser(commands: Any) -> None:
    restore = commands.add_parser(
        "restore",
        help="bring back, through soft delete, what an apply run's report says it deleted",
        description="Restore what an apply run deleted, from its JSON-lines report: children before their"
        " index, subjects before their referrers, every tag the report recorded, the locks it opened."
        " On a terminal it asks for confirmation; elsewhere it refuses without --yes. Exit 0 when"
        " everything is back, 1 when anything is not (purged, conflict, failed).",
    )
    restore.add_argument("--report", required=True, metavar="FILE", help="the apply report (JSON lines)")
    restore.add_argument(
        "--registry", metavar="REGISTRY", help="login server or https URL; default: $ACR_RETENTION_REGISTRY"
    )
    restore.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="DIGEST",
        help="only this manifest (repeatable), with what it needs: an index's children, a referrer's subject",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="take back a tag that now names another digest (that tag is soft-deleted in turn)",
    )
    restore.add_argument("--yes", action="store_true", help="do not ask; needed when stdin is not a terminal")
    restore.add_argument(
        "--out", metavar="FILE", help="write restore's own report (JSON lines) here; default stdout"
    )
    restore.add_argument(
        "--max-writes-per-minute",
        type=_positive,
        metavar="N",
        help="cap on restores and locks (default: start at the --sku's write limit and adapt)",
    )
    restore.add_argument(
        "--max-input-size",
        type=_size,
        default=DATA_LIMIT,
        metavar="SIZE",
        help=f"refuse a report larger than SIZE (default {format_size(DATA_LIMIT)})",
    )
    _add_registry_options(restore)


def _add_inventory_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--snapshot", metavar="FILE", help="inventory from a snapshot file")
    source.add_argument(
        "--registry",
        metavar="REGISTRY",
        help="inventory from a live registry (login server or https URL); default: $ACR_RETENTION_REGISTRY,"
        " then the policy's registry",
    )


def _add_diff_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    diff = commands.add_parser(
        "diff",
        help="what a policy change does: plan the old and the new policy against one inventory, compare",
        description="Read the inventory once (a snapshot or a live registry, with what either policy"
        " needs), plan the base policy and the new one against it, and show what the change does:"
        " manifests newly deleted and no longer deleted, tags newly untagged and no longer untagged,"
        " property changes that differ, each with both plans' reasons. Nothing is changed.",
    )
    diff.add_argument(
        "--base",
        action="append",
        required=True,
        metavar="POLICY",
        help="the policy as it is (file or directory, repeatable): e.g. the base branch's policies/",
    )
    _add_policy_argument(diff)
    _add_size_limits(diff, inputs=True)
    _add_inventory_source(diff)
    _add_registry_options(diff)
    diff.add_argument(
        "--now", type=_rfc3339, metavar="TIME", help="RFC 3339 time that both plans measure ages from"
    )
    diff.add_argument(
        "--format",
        "-o",
        "--output",
        choices=("text", "json", "markdown"),
        default="text",
        help="text for a terminal, markdown for a pull request or job summary, json (interfaces.md §6)",
    )
    diff.add_argument("--out", metavar="FILE", help="write the rendered diff to FILE instead of stdout")
    diff.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when the plans do not differ, 2 when they do, 3 when the new plan is over"
        " max_deletes; every error is then 1",
    )
    diff.add_argument(
        "--max-deletes",
        type=_non_negative,
        metavar="N",
        help="a limit on the command line for both plans; the smaller of it and each policy's wins",
    )
    _add_in_use_options(diff)


def _add_explain_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    explain = commands.add_parser(
        "explain",
        help="why an image is deleted, kept, locked or untouched",
        description="For each REF (repository:tag, repository@digest, or repository@ a digest prefix"
        " that is unique there): the decision, every rule that matched and on which side, newest"
        " ranks, locks, the graph around it, and property changes planned for it. From a saved plan"
        " (--plan, no registry access) or by planning the policy against a snapshot or registry.",
    )
    explain.add_argument("refs", nargs="+", metavar="REF", help="repository:tag or repository@digest")
    explain.add_argument(
        "--plan", metavar="FILE", help="answer from this saved plan (plan --save-plan) alone"
    )
    explain.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help="plan this policy (file or directory, repeatable; default $ACR_RETENTION_POLICY) instead",
    )
    _add_size_limits(explain, inputs=True)
    _add_inventory_source(explain)
    _add_registry_options(explain)
    explain.add_argument(
        "--now", type=_rfc3339, metavar="TIME", help="RFC 3339 time that ages are measured from"
    )
    explain.add_argument(
        "--format",
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people, json for tools (default text)",
    )
    _add_in_use_options(explain)
