"""``vdevperf server``: serve the server half of tests to authenticated remote clients."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vdevperf.cli.argtypes import port, seconds, seconds_or_zero, whole
from vdevperf.cli.common import Subparsers
from vdevperf.errors import refused
from vdevperf.remote.server import DEFAULT_PORT, Server, ServerConfig
from vdevperf.remote.token import read_token


def add_parser(sub: Subparsers) -> None:
    """Add ``server`` to the subcommands."""
    server = sub.add_parser("server", help="serve tests to vdevperf clients on other hosts (run --remote)")
    server.add_argument(
        "--bind", default="::", metavar="ADDR", help="address to listen on (default ::, every IPv6 and IPv4 address)"
    )
    server.add_argument(
        "--port",
        type=port,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0: any free port, printed at start)",
    )
    server.add_argument(
        "--token-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="the shared secret, at least 128 bits (32 hex digits), in a file of yours of mode 600",
    )
    server.add_argument(
        "--max-duration",
        type=seconds,
        default=120.0,
        metavar="S",
        help="longest test accepted, warm-up included; longer ones are refused and a test "
        "still running past its length is killed (default 120)",
    )
    server.add_argument(
        "--max-clients",
        type=whole(),
        default=4,
        metavar="N",
        help="authenticated clients served at once; one more is told the server is busy (default 4)",
    )
    server.add_argument(
        "--idle-timeout",
        type=seconds,
        default=60.0,
        metavar="S",
        help="end a session that sends nothing for this long between tests (default 60)",
    )
    server.add_argument(
        "--max-session-time",
        type=seconds,
        metavar="S",
        help="end a session this long after it authenticated, and refuse a test that would end "
        "later, so that no client keeps its slot (default 600, or --max-duration if longer)",
    )
    server.add_argument(
        "--max-endpoints",
        type=whole(),
        default=64,
        metavar="N",
        help="endpoint processes of all sessions together; a test that would pass it is told the "
        "server is busy (default 64)",
    )
    server.add_argument(
        "--max-pending",
        type=whole(),
        default=64,
        metavar="N",
        help="connections authenticating at once; a new one takes the slot of the oldest (default 64)",
    )
    server.add_argument(
        "--max-pending-per-address",
        type=whole(),
        default=8,
        metavar="N",
        help="connections authenticating at once from one address (IPv6: one /64); a new one "
        "takes the slot of that address's oldest (default 8)",
    )
    server.add_argument(
        "--auth-backoff",
        type=seconds_or_zero,
        default=1.0,
        metavar="S",
        help="after a failed authentication, turn away that address for S seconds, doubled "
        "with each further failure up to 64 S; 0: never (default 1)",
    )


def _log_line(line: str) -> None:
    # One write per line, with no lock: sessions log from their threads while others fork
    # endpoints, and a child must never inherit a held lock on sys.stderr.
    os.write(sys.stderr.fileno(), f"vdevperf server: {line}\n".encode(errors="replace"))


def cmd_server(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve the server half of tests to authenticated remote clients until SIGINT/SIGTERM."""
    token = read_token(args.token_file)
    try:
        config = ServerConfig(
            token=token,
            bind=args.bind,
            port=args.port,
            max_duration_s=args.max_duration,
            max_clients=args.max_clients,
            idle_timeout_s=args.idle_timeout,
            max_pending=args.max_pending,
            max_pending_per_address=args.max_pending_per_address,
            auth_backoff_s=args.auth_backoff,
            max_endpoints=args.max_endpoints,
            max_session_s=args.max_session_time or max(600.0, args.max_duration),
        )
    except ValueError as exc:
        raise refused(exc) from None
    server = Server(config, log=_log_line)
    try:
        address = server.bind()
        _log_line(
            f"listening on {address} (at most {config.max_clients} client(s) for "
            f"{config.max_session_s:g} s each, tests up to {config.max_duration_s:g} s, "
            f"{config.max_endpoints} endpoint processes, idle timeout {config.idle_timeout_s:g} s; "
            f"{config.max_pending} handshakes, {config.max_pending_per_address} per address)"
        )
        server.serve_forever()
    finally:
        server.close()
    return 0
