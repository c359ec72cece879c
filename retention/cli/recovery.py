"""The recovery commands: `deleted` lists what soft delete keeps, `restore` brings a run's deletions back.

Both need the registry's soft delete (preview); `restore` follows apply's conventions: the plan of
what it will do on stdout, confirmation (--yes off a terminal), a request budget, one JSON line
per call, a summary line on stderr, exit 0 only when everything asked for is back.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from retention import logs
from retention.cli.commands import _connection, _report_file
from retention.cli.options import PROG
from retention.errors import EXIT_ERROR, EXIT_OK, RetentionError, WriteFailedError
from retention.matchers import compile_globs
from retention.ratelimit import Budgets, OperationClass
from retention.recovery import recoverable_until
from retention.registry import RegistryError, RegistryWriter, close_credential
from retention.registry.arm import RESOURCE_ID, SoftDeletePolicy, read_soft_delete
from retention.registry.softdelete import SoftDelete
from retention.restore import describe, items_from_report, read_report, run_restore
from retention.timefmt import format_time

if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from typing import IO

    from retention.registry import Connection


def soft_delete_policy(args: argparse.Namespace, connection: Connection) -> SoftDeletePolicy:
    """The registry's soft-delete setting from ARM, or "unknown" (never a guess of "on")."""
    resource_id: str | None = args.registry_resource_id
    if resource_id and not RESOURCE_ID.fullmatch(resource_id.strip()):
        raise RetentionError(
            f"--registry-resource-id {resource_id!r} is not a registry's resource ID"
            " (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/NAME)"
        )
    policy = asyncio.run(
        read_soft_delete(
            connection.credential,
            resource_id.strip() if resource_id else None,
            arm_endpoint=args.arm_endpoint,
        )
    )
    logs.get_logger().info(
        "soft_delete_checked",
        state=policy.state,
        retention_days=policy.retention_days,
        why=policy.why_unknown,
    )
    return policy


def cmd_recovery(args: argparse.Namespace) -> int:
    return cmd_deleted(args) if args.command == "deleted" else cmd_restore(args)


# --- deleted ---------------------------------------------------------------------------------------


def cmd_deleted(args: argparse.Namespace) -> int:
    connection = _connection(args, fallback=None)
    policy = soft_delete_policy(args, connection)
    listing = asyncio.run(_list_deleted(connection, args.repository))
    document = _deleted_json(connection.target.login_server, policy, listing)
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(_deleted_text(document))
    return EXIT_OK


async def _list_deleted(connection: Connection, globs: list[str]) -> dict[str, Any]:
    pattern = compile_globs(tuple(globs)) if globs else None

    def wanted(name: str) -> bool:
        return pattern is None or bool(pattern.fullmatch(name))

    try:
        async with RegistryWriter(connection) as writer:
            soft = SoftDelete(writer.client, connection)
            gone = [r for r in await soft.repositories() if wanted(r.name)]
            # Deleted manifests and tags of repositories that still exist are listed under them.
            names = {r.name for r in gone}
            names.update([n async for n in writer.client.list_repository_names() if wanted(n)])
            manifests, tags = [], []
            for name in sorted(names):
                manifests += await soft.manifests(name)
                tags += await soft.tags(name)
    except WriteFailedError as exc:
        raise RegistryError(f"registry {connection.target.login_server}: {exc}") from None
    finally:
        await close_credential(connection)
    return {"repositories": gone, "manifests": manifests, "tags": tags}


def _expiry(policy: SoftDeletePolicy, deleted_at: datetime) -> str | None:
    until = recoverable_until(policy, deleted_at)
    return format_time(until) if until is not None else None


def _deleted_json(registry: str, policy: SoftDeletePolicy, listing: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "acr-retention/deleted",
        "format_version": 1,
        "registry": registry,
        "soft_delete": {"state": policy.state, "retention_days": policy.retention_days},
        "repositories": [
            {
                "name": r.name,
                "deleted_at": format_time(r.deleted_at),
                "expires_at": _expiry(policy, r.deleted_at),
            }
            for r in sorted(listing["repositories"])
        ],
        "manifests": [
            {
                "repository": m.repository,
                "digest": m.digest,
                "tags": sorted(
                    t.tag for t in listing["tags"] if (t.repository, t.digest) == (m.repository, m.digest)
                ),
                "deleted_at": format_time(m.deleted_at),
                "expires_at": _expiry(policy, m.deleted_at),
            }
            for m in sorted(listing["manifests"])
        ],
        "tags": [
            {
                "repository": t.repository,
                "tag": t.tag,
                "digest": t.digest,
                "deleted_at": format_time(t.deleted_at),
                "expires_at": _expiry(policy, t.deleted_at),
            }
            for t in sorted(listing["tags"])
        ],
    }


def _deleted_text(document: dict[str, Any]) -> str:
    lines = [
        f"repository {r['name']}  deleted {r['deleted_at']}{_until(r)}\n" for r in document["repositories"]
    ]
    for manifest in document["manifests"]:
        tags = f"  tags: {', '.join(manifest['tags'])}" if manifest["tags"] else ""
        where = f"{manifest['repository']}@{manifest['digest']}"
        lines.append(f"{where}{tags}  deleted {manifest['deleted_at']}{_until(manifest)}\n")
    manifests = {(m["repository"], m["digest"]) for m in document["manifests"]}
    # Tags removed from a manifest that is still there (untag rules).
    lines.extend(
        f"{t['repository']}:{t['tag']} -> {t['digest']}  deleted {t['deleted_at']}{_until(t)}\n"
        for t in document["tags"]
        if (t["repository"], t["digest"]) not in manifests
    )
    soft = document["soft_delete"]
    state = f"on, {soft['retention_days']} days" if soft["state"] == "on" else soft["state"]
    lines.append(
        f"{len(document['manifests'])} manifests, {len(document['tags'])} tags,"
        f" {len(document['repositories'])} repositories soft-deleted (soft delete: {state}).\n"
    )
    return "".join(lines)


def _until(item: dict[str, Any]) -> str:
    return f"  expires {item['expires_at']}" if item["expires_at"] else "  expires: unknown"


# --- restore ---------------------------------------------------------------------------------------


def cmd_restore(args: argparse.Namespace) -> int:
    records = read_report(args.report, limit=args.max_input_size)
    items = items_from_report(records, repositories=args.repository, digests=args.digest)
    found = {i.digest for i in items}
    missing = [d for d in args.digest if d not in found]
    if missing:
        raise RetentionError(f"--digest {missing[0]}: {args.report} does not record this run deleting it")
    connection = _connection(args, fallback=None)
    sys.stdout.write(describe(items))
    sys.stdout.flush()
    if not items:
        return EXIT_OK
    if not _confirm(len(items), connection.target.login_server, args):
        sys.stderr.write(f"{PROG}: not restored\n")
        return EXIT_ERROR
    budgets = Budgets.for_sku(args.sku, writes=args.max_writes_per_minute)

    def execute(report: IO[str]) -> int:
        result = run_restore(
            items,
            connection,
            per_minute=budgets.per_minute[OperationClass.WRITE],
            ceiling_per_minute=budgets.ceilings.get(OperationClass.WRITE),
            concurrency=args.concurrency,
            force=args.force,
            report=report,
            stderr=sys.stderr,
        )
        return result.exit_code

    if not args.out:
        return execute(sys.stdout)
    try:
        with _report_file(args.out) as report:
            return execute(report)
    except OSError as exc:
        raise RetentionError(f"cannot write {args.out}: {exc.strerror or exc}") from None


def _confirm(count: int, registry: str, args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise RetentionError("refusing to restore without --yes: standard input is not a terminal")
    sys.stderr.write(f"Restore {count} items to {registry}? Type 'yes' to continue: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() == "yes"
