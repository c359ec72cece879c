"""The review commands: `diff` (what a policy change does) and `explain` (why one image is
deleted, kept, locked or untouched). Read-only: wiring and exit codes, no decisions."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from retention import logs
from retention.cli.commands import _connection, _in_registry, _write_atomically, image_uses
from retention.cli.options import PROG
from retention.diff import Kind, diff_plans
from retention.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_OVER_LIMIT, PolicyError, UsageError
from retention.explain import (
    ExplainError,
    Ref,
    explain,
    explanations_to_json,
    parse_ref,
    render_explanations,
)
from retention.planfile import load_plan
from retention.policyload import load_policy, policy_from_canonical
from retention.progress import InventoryProgress
from retention.render_diff import render_diff_json, render_diff_markdown, render_diff_text
from retention.review import (
    diff_from_registry,
    diff_from_snapshot,
    explain_inventory_from_registry,
    explain_inventory_from_snapshot,
)

if TYPE_CHECKING:
    import argparse

    from retention.cli.commands import Run
    from retention.plan import Plan
    from retention.policy import Rule


def cmd_diff(args: argparse.Namespace, run: Run) -> int:
    log = logs.get_logger()
    started = time.perf_counter()
    base = load_policy(args.base, limit=args.max_policy_size)
    new = load_policy(args.policy or [args.policy_default], limit=args.max_policy_size)
    now: datetime = args.now or datetime.now(UTC)
    if args.snapshot:
        pair = diff_from_snapshot(
            base,
            new,
            args.snapshot,
            now=now,
            max_deletes=args.max_deletes,
            limit=args.max_input_size,
            uses=image_uses(args, new),
        )
    else:
        connection = _connection(args, fallback=new.registry or base.registry)
        run.registry = connection.target.login_server
        # Both plans see the same in-use input, read once.
        uses = image_uses(args, new)
        pair = diff_from_registry(
            base,
            new,
            connection,
            now=now,
            taken_at=datetime.now(UTC),
            max_deletes=args.max_deletes,
            repositories=args.repository,
            in_use=_in_registry(uses, connection, new, base.registry),
            progress=InventoryProgress.on(sys.stderr, connection),
        )
    diff = diff_plans(pair.base, pair.new)
    log.info(
        "diff_made",
        registry=diff.registry,
        **{str(kind): diff.count(kind) for kind in Kind},
        bytes_newly_deleted_upper_bound=diff.bytes_newly_deleted,
        over_limit=diff.over_limit,
        duration_s=round(time.perf_counter() - started, 3),
    )
    if args.format == "json":
        rendered = render_diff_json(diff)
    elif args.format == "markdown":
        rendered = render_diff_markdown(diff)
    else:
        rendered = render_diff_text(diff)
    if args.out:
        _write_atomically(args.out, [rendered])
    else:
        sys.stdout.write(rendered)
        sys.stdout.flush()
    if diff.over_limit:
        sys.stderr.write(
            f"{PROG}: the new policy's plan deletes {diff.deletions}, more than max_deletes"
            f" {diff.max_deletes}; apply would refuse it\n"
        )
        return EXIT_OVER_LIMIT
    if args.detailed_exitcode and not diff.is_empty:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    refs: list[Ref] = []
    problems: list[str] = []
    for text in args.refs:
        try:
            refs.append(parse_ref(text))
        except ExplainError as exc:
            problems.append(str(exc))
    if args.plan:
        if args.policy or args.snapshot or args.registry:
            raise UsageError("explain takes --plan FILE, or --policy with --snapshot or --registry; not both")
        # Reading, not applying: the seal is checked, a signature is not required.
        plan = load_plan(args.plan, limit=args.max_input_size)
        found, missing = explain(plan, refs, rules=_rules_of(plan))
        source = "plan"
    else:
        paths = args.policy or (
            [os.environ["ACR_RETENTION_POLICY"]] if "ACR_RETENTION_POLICY" in os.environ else []
        )
        if not paths:
            raise UsageError(
                "explain needs --plan FILE, or --policy (or $ACR_RETENTION_POLICY) with --snapshot or"
                " --registry"
            )
        policy = load_policy(paths, limit=args.max_policy_size)
        now: datetime = args.now or datetime.now(UTC)
        names = {ref.repository for ref in refs}
        if args.snapshot:
            inventory = explain_inventory_from_snapshot(
                policy,
                args.snapshot,
                names,
                now=now,
                limit=args.max_input_size,
                uses=image_uses(args, policy),
            )
            source = "snapshot"
        else:
            connection = _connection(args, fallback=policy.registry)
            uses = image_uses(args, policy)
            inventory = explain_inventory_from_registry(
                policy,
                connection,
                names,
                now=now,
                taken_at=datetime.now(UTC),
                in_use=_in_registry(uses, connection, policy),
            )
            source = "registry"
        plan = inventory.plan
        found, missing = explain(
            plan, refs, inventory=inventory.repositories, rules={r.name: r for r in policy.rules}
        )
    problems += missing
    if found:
        if args.format == "json":
            sys.stdout.write(
                json.dumps(explanations_to_json(plan, found, source=source), indent=2, ensure_ascii=False)
                + "\n"
            )
        else:
            sys.stdout.write(render_explanations(plan, found, source=source))
        sys.stdout.flush()
    for problem in problems:
        sys.stderr.write(f"{PROG}: error: {logs.scrub(problem)}\n")
    return EXIT_ERROR if problems else EXIT_OK


def _rules_of(plan: Plan) -> dict[str, Rule]:
    """The saved plan's own policy, for the `newest` limits its ranks are read against."""
    if plan.policy_document is None:
        return {}
    try:
        policy = policy_from_canonical(json.loads(plan.policy_document), "$.policy")
    except PolicyError:
        return {}  # a policy this version cannot read: ranks are shown without their limits
    return {rule.name: rule for rule in policy.rules}
