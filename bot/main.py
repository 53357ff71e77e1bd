"""Serving the app: HTTP (`rotator bot --port N`, at /slack/events) or Socket Mode (`--socket`).

HTTP is served by waitress, a production WSGI server: a burst of slash commands is accepted
at once (a deep listen backlog) and answered by a thread pool, while Bolt acks each request
in its own thread and leaves the work to its lazy listeners (see `bot.app`).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.app import build_app
from workers.config import load_config
from workers.connection import connect_redis, env_secret, make_slack_client

__all__ = ["HTTP_THREADS", "app_from_env", "http_server", "serve_http", "serve_socket"]

log = logging.getLogger("rotator.bot")

HTTP_THREADS = 8
"""waitress threads answering Slack's requests (each only verifies, parses and acks)."""
LISTEN_BACKLOG = 1024
GIL_SWITCH_INTERVAL_S = 0.001


def app_from_env() -> App:
    """The app as configured by `ROTATOR_CONFIG`, Redis and Slack (`workers.connection`)."""
    return build_app(load_config(), client=make_slack_client(), redis=connect_redis())


def http_server(app: App, port: int, host: str = "127.0.0.1", path: str = "/slack/events") -> Any:
    """A waitress server for `app` (not started): `.run()` serves, `.close()` stops."""
    handler: Callable[..., Any] = SlackRequestHandler(app, path=path)
    return create_server(
        handler,
        host=host,
        port=port,
        threads=HTTP_THREADS,
        backlog=LISTEN_BACKLOG,
        connection_limit=1000,
        ident="rotator",
        clear_untrusted_proxy_headers=True,
    )


def serve_http(app: App, port: int, host: str = "127.0.0.1", path: str = "/slack/events") -> None:
    """Serve Slack's requests at `path` until interrupted.

    Listens on loopback by default: put a TLS-terminating reverse proxy in front, or
    pass `host` (rotator bot --host) to listen elsewhere."""
    # Acks are a few hundred microseconds of Python each, queued behind lazy listeners that
    # hold the interpreter lock: hand it over every millisecond instead of every five.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    server = http_server(app, port, host, path)
    _exit_on_sigterm()
    log.info("serving Slack requests on http://%s:%d%s", host, port, path)
    server.run()  # returns on SystemExit, after up to 5 s for requests being answered
    log.info("stopped serving")


def serve_socket(app: App, app_token: str | None = None) -> None:
    """Connect to Slack over Socket Mode (`SLACK_APP_TOKEN(_FILE)`, an xapp- token); blocks."""
    handler = SocketModeHandler(app, app_token or env_secret("SLACK_APP_TOKEN"))
    _exit_on_sigterm()
    handler.start()  # type: ignore[no-untyped-call]


def _exit_on_sigterm() -> None:
    """Stop on SIGTERM as on Ctrl-C. As a container's PID 1 the interpreter otherwise
    ignores it: `docker stop` and every compose recreate of the bot would wait out the
    grace period (10 s by default), then kill it."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
