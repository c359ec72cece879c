"""Run the emulator by hand: `python -m tests.emulator --port 8443 --seed examples/snapshot.json`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from tests.emulator.faults import CLASSES, PRESETS, OperationClass
from tests.emulator.server import Emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", metavar="SNAPSHOT", help="an acr-retention snapshot file to serve")
    parser.add_argument(
        "--seed-digests",
        choices=["content", "snapshot"],
        default="content",
        help="content (default): rename digests to hash their synthesized content, so the SDK's "
        "digest check passes; snapshot: keep the file's digests (content reads then fail that check)",
    )
    parser.add_argument("--registry", default="emulator.azurecr.io", help="the name in response bodies")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--throttle", choices=[*sorted(PRESETS), "off"], default="off")
    parser.add_argument("--time-scale", type=float, default=1.0, help="60: a minute's budget per second")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        type=_per_class,
        metavar="CLASS=N",
        help="requests per minute for one class (read, write, delete, oauth), over --throttle's; repeatable",
    )
    parser.add_argument(
        "--burst",
        action="append",
        default=[],
        type=_per_class,
        metavar="CLASS=N",
        help="bucket size for one class (default: a minute's budget; ACR's is undocumented); repeatable",
    )
    parser.add_argument(
        "--fractional-retry-after",
        action="store_true",
        help="Retry-After in milliseconds (for --time-scale); default whole seconds, as ACR and RFC 9110",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 503/500 answers")
    parser.add_argument("--reset-rate", type=float, default=0.0, help="share of dropped connections")
    parser.add_argument(
        "--soft-delete-days",
        type=int,
        default=0,
        metavar="N",
        help="soft delete on, deleted items restorable for N days (time-scaled); 0 (default): off",
    )
    parser.add_argument("--anonymous-pull", action="store_true")
    parser.add_argument("--no-list-references", action="store_true", help="as real ACR: none in listings")
    parser.add_argument(
        "--basic-user",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="an admin user (all rights)",
    )
    return parser


def _per_class(text: str) -> tuple[OperationClass, float]:
    name, _, value = text.partition("=")
    if name not in CLASSES:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(CLASSES)}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CLASS=N, N a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be positive")
    return name, number


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    emulator = Emulator(
        registry=args.registry,
        host=args.host,
        port=args.port,
        anonymous_pull=args.anonymous_pull,
        list_references=not args.no_list_references,
        time_scale=args.time_scale,
        soft_delete_days=args.soft_delete_days,
    )
    emulator.start()
    try:
        if args.seed:
            emulator.seed_file(args.seed, content_addressed=args.seed_digests == "content")
        for entry in args.basic_user:
            user, _, password = entry.partition(":")
            emulator.add_basic_user(
                user,
                password,
                roles={
                    "metadata_read",
                    "metadata_write",
                    "delete",
                    "pull",
                    "push",
                    "catalog",
                    "deleted_read",
                    "deleted_restore",
                },
            )
        faults = emulator.faults
        faults.latency_ms, faults.jitter_ms = args.latency_ms, args.jitter_ms
        faults.error_rate, faults.reset_rate = args.error_rate, args.reset_rate
        faults.throttle(
            args.throttle,
            time_scale=args.time_scale,
            burst=dict(args.burst),
            fractional_retry_after=args.fractional_retry_after,
            **dict(args.limit),
        )
        sys.stdout.write(
            f"endpoint  {emulator.endpoint}\n"
            f"ca file   {emulator.ca_file}\n"
            f"cert dir  {emulator.cert_dir}   (skopeo --cert-dir)\n"
            f"export SSL_CERT_FILE={emulator.ca_file} REQUESTS_CA_BUNDLE={emulator.ca_file}\n"
            "serving until Ctrl-C\n"
        )
        sys.stdout.flush()
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
