"""A local Slack Web API server for tests, and correctly signed requests to send the bot.

`FakeSlack` listens on 127.0.0.1 (port 0), records every call (path, parsed body, headers) and
answers the methods the bot uses the way Slack does. Tests point a `WebClient(base_url=...)`
at `fake.url` and give payloads `fake.response_url` so `respond()` lands here too.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"


@dataclass(frozen=True)
class Call:
    method: str
    """The Web API method, e.g. `chat.postMessage` (or `respond` for response_url posts)."""
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeSlack:
    user_tz: dict[str, str] = field(default_factory=dict)
    """users.info: user id -> tz (default "UTC")."""
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    """usergroups.users.list: group id -> member ids."""
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, self.rfile.read(length).decode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    @property
    def response_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/respond"

    def _handle(self, handler: BaseHTTPRequestHandler, raw: str) -> None:
        if raw.startswith("{"):
            body: dict[str, Any] = json.loads(raw)
        else:
            body = {k: v[0] for k, v in parse_qs(raw).items()}
        for key in ("blocks", "view"):
            if isinstance(body.get(key), str):
                body[key] = json.loads(body[key])
        method = handler.path.rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append(
                Call(method, body, {k.lower(): v for k, v in handler.headers.items()})
            )
        data = json.dumps(self.answer(method, body)).encode()
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        ok: dict[str, Any] = {"ok": True}
        if method == "auth.test":
            return ok | {"team_id": "T1", "user_id": "UBOT", "bot_id": "BBOT", "user": "rotator"}
        if method in ("chat.postMessage", "chat.update"):
            ts = body.get("ts") or f"{1700000000 + next(self._ts)}.000100"
            return ok | {
                "channel": body.get("channel"),
                "ts": ts,
                "message": {"text": body.get("text")},
            }
        if method == "chat.postEphemeral":
            return ok | {"message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method == "users.info":
            user = body.get("user", "")
            return ok | {"user": {"id": user, "tz": self.user_tz.get(user, "UTC")}}
        if method == "usergroups.users.list":
            return ok | {"users": self.usergroups.get(body.get("usergroup", ""), [])}
        if method == "conversations.info":
            return ok | {"channel": {"id": body.get("channel"), "name": "rotations"}}
        if method == "views.open":
            return ok | {"view": {"id": "V1"} | dict(body.get("view") or {})}
        return ok

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """The calls to `method` once there are `count` of them; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls_to(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        seen = [c.method for c in self.calls]
        raise AssertionError(f"expected {count} call(s) to {method}; saw {seen}")


def signed_request(
    body: str, secret: str = SIGNING_SECRET, *, timestamp: int | None = None
) -> BoltRequest:
    """A BoltRequest signed the way Slack signs (v0 HMAC-SHA256 over `v0:ts:body`)."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""
    headers: dict[str, str | Sequence[str]] = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature,
    }
    return BoltRequest(body=body, headers=headers)


def slash_command_body(
    text: str,
    *,
    user: str,
    response_url: str,
    command: str = "/rotate",
    trigger_id: str | None = None,
) -> str:
    return urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "channel_id": "C0CHAN1",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "response_url": response_url,
            "trigger_id": trigger_id or f"trig-{time.monotonic_ns()}",
        }
    )


def _interactive(payload: dict[str, Any]) -> str:
    return "payload=" + quote(json.dumps(payload))


def block_actions_body(
    action_id: str, value: str, *, user: str, channel: str, message_ts: str, response_url: str
) -> str:
    return _interactive(
        {
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": user},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": f"trig-{time.monotonic_ns()}",
            "channel": {"id": channel},
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "message": {"ts": message_ts, "text": "approval"},
            "response_url": response_url,
            "actions": [
                {"type": "button", "action_id": action_id, "block_id": "decision", "value": value}
            ],
        }
    )


def view_submission_body(
    callback_id: str, values: dict[str, dict[str, Any]], *, user: str, private_metadata: str
) -> str:
    return _interactive(
        {
            "type": "view_submission",
            "team": {"id": "T1"},
            "user": {"id": user},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": f"trig-{time.monotonic_ns()}",
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": values},
            },
        }
    )


@dataclass
class Hooks:
    """A loopback webhook receiver: the status page that notices are posted to."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> Hooks:
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hooks.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
