"""Serving the app: HTTP (`rotator bot --port N`, at /slack/events) or Socket Mode (`--socket`).

The lead wires these into the CLI: `serve_http(app_from_env(), port)` or
`serve_socket(app_from_env())`.
"""

from __future__ import annotations

import logging
import os
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

from redis import Redis
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.app import build_app
from workers.config import load_config

__all__ = ["app_from_env", "serve_http", "serve_socket"]

log = logging.getLogger("rotator.bot")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets most of a burst of slash commands
    # (bench/ack_latency.py: 160 of 250 connections at 50 concurrent).
    request_queue_size = 128


def app_from_env() -> App:
    """The app as configured by `ROTATOR_CONFIG`, `REDIS_URL`, `SLACK_BOT_TOKEN`,
    `SLACK_SIGNING_SECRET` and `SLACK_API_URL`."""
    settings = load_config()
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    base_url = os.environ.get("SLACK_API_URL") or WebClient.BASE_URL
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=base_url)
    return build_app(settings, client=client, redis=redis)


def serve_http(app: App, port: int, host: str = "127.0.0.1", path: str = "/slack/events") -> None:
    """Serve Slack's requests at `path` until interrupted (a thread per request).

    Listens on loopback by default: put a TLS-terminating reverse proxy in front, or
    pass `host` (rotator bot --host) to listen elsewhere."""
    server = make_server(
        host, port, SlackRequestHandler(app, path=path), server_class=_ThreadingWSGIServer
    )
    log.info("serving Slack requests on http://%s:%d%s", host, port, path)
    with server:
        server.serve_forever()


def serve_socket(app: App, app_token: str | None = None) -> None:
    """Connect to Slack over Socket Mode (`SLACK_APP_TOKEN`, an xapp- token); blocks."""
    handler = SocketModeHandler(app, app_token or os.environ["SLACK_APP_TOKEN"])
    handler.start()  # type: ignore[no-untyped-call]
