"""The `rotator` command lives in bot/: core's commands plus `bot` and `worker`; core itself
imports neither bot nor workers (the one arrow that used to point up)."""

from __future__ import annotations

import subprocess
import sys

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
