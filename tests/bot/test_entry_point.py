"""The `rotator` command lives in bot/: core's commands plus `bot` and `worker`; core itself
imports neither bot nor workers (the one arrow that used to point up)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bot import cli


def test_core_imports_neither_bot_nor_workers() -> None:
    probe = (
        "import sys, core.cli, core.engine, core.service; "
        "tops = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(tops & {'bot', 'workers', 'slack_bolt', 'rq'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_rotator_has_core_commands_and_the_slack_side() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["worker", "prod", "staging"]).handler is cli.cmd_worker
    bot = parser.parse_args(["bot", "--port", "3000"])
    assert (bot.handler, bot.port, bot.host) == (cli.cmd_bot, 3000, "127.0.0.1")
    assert parser.parse_args(["plan", "jwt-secret"]).handler.__name__ == "cmd_plan"


def test_the_bot_stops_serving_on_sigterm() -> None:
    """As a container's PID 1 an interpreter ignores SIGTERM unless it handles it, and
    `docker stop` waits out the grace period: the bot handles it, exiting 0 (unhandled,
    outside a container, SIGTERM would end it with -15)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    program = (
        "import logging, sys; from slack_bolt import App; from bot.main import serve_http; "
        "logging.basicConfig(level=logging.INFO); "
        "app = App(token='xoxb-test', signing_secret='test', token_verification_enabled=False); "
        f"serve_http(app, {port})"
    )
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", program], cwd=root, stderr=subprocess.PIPE, text=True
    ) as bot:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and bot.poll() is None, "never listened"
                    time.sleep(0.05)
            os.kill(bot.pid, signal.SIGTERM)
            _, err = bot.communicate(timeout=10)
        finally:
            if bot.poll() is None:
                bot.kill()
    assert bot.returncode == 0, err
    assert "stopped serving" in err
