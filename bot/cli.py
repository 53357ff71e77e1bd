"""The `rotator` command: core's commands (plan, rotate, recover, verify, history, ...) plus
the two that run the Slack side, `rotator bot` and `rotator worker`. core knows nothing of
Slack or RQ, so this entry point lives here and adds them to core's parser.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from core import cli as core_cli
from core.errors import EXIT_OK

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = core_cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = commands.add_parser(
        "bot", help="serve the Slack app (HTTP at /slack/events, or Socket Mode)"
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve Slack's HTTP requests on this port")
    mode.add_argument("--socket", action="store_true", help="connect over Socket Mode")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on in HTTP mode (default loopback)"
    )
    p.set_defaults(handler=cmd_bot)

    p = commands.add_parser("worker", help="run the RQ worker for these deployments' queues")
    p.add_argument("deployments", nargs="+", metavar="DEPLOYMENT")
    p.add_argument("--burst", action="store_true", help="stop once the queues are empty")
    p.set_defaults(handler=cmd_worker)
    return parser


def cmd_bot(args: argparse.Namespace) -> int:
    from bot.main import app_from_env, serve_http, serve_socket

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = app_from_env()
    if args.socket:
        serve_socket(app)
    else:
        serve_http(app, args.port, host=args.host)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_worker(args.deployments, burst=args.burst)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return core_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
