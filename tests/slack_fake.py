"""A local Slack Web API server for tests, and correctly signed requests to send the bot.

`FakeSlack` listens on 127.0.0.1 (port 0), records every call (path, parsed body, headers) and
answers the methods the bot uses the way Slack does. Tests point a `WebClient(base_url=...)`
at `fake.url` and give payloads `fake.response_url` so `respond()` lands here too.

It refuses what Slack refuses: every message (posted, updated, ephemeral, or sent to a
response_url) and every view is checked against Block Kit's documented limits
(`block_kit_errors`), and a refused call is answered as Slack answers it (`invalid_blocks`,
`msg_too_long`, `invalid_arguments`) and kept in `refused`, which the fixtures check is empty
at the end of every test. `rate_limit(method, times)` makes the next calls answer HTTP 429
with a Retry-After header, as Slack does under load.
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
    at: float = 0.0
    """time.monotonic() when it arrived."""
    response: dict[str, Any] = field(default_factory=dict)
    """What the stand-in answered (e.g. the `ts` it gave a message)."""


# Block Kit's documented limits (docs.slack.dev, "Blocks", "Block elements", "Composition
# objects", "Views"): characters unless named otherwise.
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MESSAGE_TEXT = 40_000
MESSAGE_BLOCKS_TEXT = 12_000
"""Not documented: Slack answers msg_blocks_too_long above ~13,000 characters of blocks."""
TEXT_OBJECT = 3000
SECTION_FIELDS, SECTION_FIELD = 10, 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT, BUTTON_VALUE, BUTTON_URL = 75, 2000, 3000
ACTION_ID = BLOCK_ID = CALLBACK_ID = 255
CONFIRM_TITLE, CONFIRM_TEXT, CONFIRM_BUTTON = 100, 300, 30
INPUT_LABEL, INPUT_HINT, PLACEHOLDER, INPUT_MAX_LENGTH = 2000, 2000, 150, 3000
VIEW_TITLE = VIEW_BUTTON = 24
PRIVATE_METADATA = 3000
BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "input", "image", "rich_text"}


def _text_errors(obj: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: must be a text object of type {' or '.join(kinds)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}/text: must be more than 0 characters"]
    if len(text) > limit:
        return [f"{where}/text: must be less than {limit + 1} characters"]
    return []


def _element_errors(element: Any, where: str) -> list[str]:
    errors: list[str] = []
    if not isinstance(element, dict):
        return [f"{where}: must be an object"]
    if len(str(element.get("action_id", ""))) > ACTION_ID:
        errors.append(f"{where}/action_id: must be less than {ACTION_ID + 1} characters")
    if element.get("type") == "button":
        errors += _text_errors(element.get("text"), f"{where}/text", BUTTON_TEXT, ("plain_text",))
        if len(str(element.get("value", ""))) > BUTTON_VALUE:
            errors.append(f"{where}/value: must be less than {BUTTON_VALUE + 1} characters")
        if len(str(element.get("url", ""))) > BUTTON_URL:
            errors.append(f"{where}/url: must be less than {BUTTON_URL + 1} characters")
        if element.get("style") not in (None, "primary", "danger"):
            errors.append(f"{where}/style: must be primary or danger")
        confirm = element.get("confirm")
        if confirm is not None:
            errors += _text_errors(
                confirm.get("title"), f"{where}/confirm/title", CONFIRM_TITLE, ("plain_text",)
            )
            errors += _text_errors(
                confirm.get("text"), f"{where}/confirm/text", CONFIRM_TEXT, ("plain_text", "mrkdwn")
            )
            for key in ("confirm", "deny"):
                errors += _text_errors(
                    confirm.get(key), f"{where}/confirm/{key}", CONFIRM_BUTTON, ("plain_text",)
                )
    elif element.get("type") == "plain_text_input":
        if int(element.get("max_length", 0)) > INPUT_MAX_LENGTH:
            errors.append(f"{where}/max_length: must be at most {INPUT_MAX_LENGTH}")
        if "placeholder" in element:
            errors += _text_errors(
                element["placeholder"], f"{where}/placeholder", PLACEHOLDER, ("plain_text",)
            )
    return errors


def _block_errors(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        return [f"{where}: unknown block type"]
    kind, errors = block["type"], []
    if len(str(block.get("block_id", ""))) > BLOCK_ID:
        errors.append(f"{where}/block_id: must be less than {BLOCK_ID + 1} characters")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"{where}: a section needs text or fields")
        if "text" in block:
            errors += _text_errors(
                block["text"], f"{where}/text", TEXT_OBJECT, ("plain_text", "mrkdwn")
            )
        fields = block.get("fields") or []
        if len(fields) > SECTION_FIELDS:
            errors.append(f"{where}/fields: must be at most {SECTION_FIELDS} items")
        for i, f in enumerate(fields):
            errors += _text_errors(
                f, f"{where}/fields/{i}", SECTION_FIELD, ("plain_text", "mrkdwn")
            )
        if "accessory" in block:
            errors += _element_errors(block["accessory"], f"{where}/accessory")
    elif kind == "header":
        errors += _text_errors(block.get("text"), f"{where}/text", HEADER_TEXT, ("plain_text",))
    elif kind == "context":
        elements = block.get("elements") or []
        if not elements or len(elements) > CONTEXT_ELEMENTS:
            errors.append(f"{where}/elements: must be 1 to {CONTEXT_ELEMENTS} items")
        for i, e in enumerate(elements):
            if isinstance(e, dict) and e.get("type") in ("plain_text", "mrkdwn"):
                errors += _text_errors(
                    e, f"{where}/elements/{i}", TEXT_OBJECT, ("plain_text", "mrkdwn")
                )
    elif kind == "actions":
        elements = block.get("elements") or []
        if not elements or len(elements) > ACTIONS_ELEMENTS:
            errors.append(f"{where}/elements: must be 1 to {ACTIONS_ELEMENTS} items")
        for i, e in enumerate(elements):
            errors += _element_errors(e, f"{where}/elements/{i}")
    elif kind == "input":
        errors += _text_errors(block.get("label"), f"{where}/label", INPUT_LABEL, ("plain_text",))
        if "hint" in block:
            errors += _text_errors(block["hint"], f"{where}/hint", INPUT_HINT, ("plain_text",))
        errors += _element_errors(block.get("element"), f"{where}/element")
    return errors


def _blocks_errors(blocks: Any, limit: int) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks: must be a list"]
    errors = [f"blocks: must be at most {limit} items"] if len(blocks) > limit else []
    ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("block_id")]
    if len(ids) != len(set(ids)):
        errors.append("blocks: block_id values must be unique")
    for i, block in enumerate(blocks):
        errors += _block_errors(block, f"blocks/{i}")
    return errors


def block_kit_errors(method: str, body: dict[str, Any]) -> tuple[str, list[str]] | None:
    """What Slack would refuse in this call: (error code, details), or None."""
    if method in ("views.open", "views.publish", "views.update", "views.push"):
        view = body.get("view") or {}
        errors = _blocks_errors(view.get("blocks"), VIEW_BLOCKS)
        if view.get("type") == "modal":
            errors += _text_errors(view.get("title"), "view/title", VIEW_TITLE, ("plain_text",))
            for key in ("submit", "close"):
                if key in view:
                    errors += _text_errors(view[key], f"view/{key}", VIEW_BUTTON, ("plain_text",))
        if len(str(view.get("private_metadata", ""))) > PRIVATE_METADATA:
            errors.append(f"view/private_metadata: must be at most {PRIVATE_METADATA} characters")
        if len(str(view.get("callback_id", ""))) > CALLBACK_ID:
            errors.append(f"view/callback_id: must be at most {CALLBACK_ID} characters")
        return ("invalid_arguments", errors) if errors else None
    if method not in ("chat.postMessage", "chat.update", "chat.postEphemeral", "respond"):
        return None
    text, blocks = body.get("text"), body.get("blocks")
    if not text and not blocks and not body.get("delete_original"):
        return ("no_text", ["text or blocks is required"])
    if isinstance(text, str) and len(text) > MESSAGE_TEXT:
        return ("msg_too_long", [f"text: must be at most {MESSAGE_TEXT} characters"])
    if blocks is None:
        return None
    errors = _blocks_errors(blocks, MESSAGE_BLOCKS)
    if errors:
        return ("invalid_blocks", errors)
    if len(json.dumps(blocks)) > MESSAGE_BLOCKS_TEXT + 2000:
        return ("msg_blocks_too_long", ["blocks: too long"])
    return None


@dataclass
class FakeSlack:
    user_tz: dict[str, str] = field(default_factory=dict)
    """users.info: user id -> tz (default "UTC")."""
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    """usergroups.users.list: group id -> member ids."""
    calls: list[Call] = field(default_factory=list)
    refused: list[tuple[str, str, list[str]]] = field(default_factory=list)
    """(method, error, details) of every call refused for breaking a Block Kit limit."""
    _rate_limited: dict[str, list[int]] = field(default_factory=dict)
    _failing: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        arrived = time.monotonic()
        with self._lock:
            limited = self._rate_limited.get(method)
            retry_after = limited.pop(0) if limited else None
        status, answer = 200, self.answer(method, body)
        if retry_after is not None:
            status, answer = 429, {"ok": False, "error": "ratelimited"}
        else:
            refused = block_kit_errors(method, body)
            if refused is not None:
                error, details = refused
                with self._lock:
                    self.refused.append((method, error, details))
                answer = {"ok": False, "error": error, "errors": details}
                if error == "invalid_arguments":
                    answer["response_metadata"] = {"messages": details}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.calls.append(Call(method, body, headers, arrived, answer))
        data = json.dumps(answer).encode()
        handler.send_response(status)
        if retry_after is not None:
            handler.send_header("Retry-After", str(retry_after))
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method in self._failing:
            return dict(self._failing[method])
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
        if method in ("views.open", "views.publish"):
            return ok | {"view": {"id": "V1"} | dict(body.get("view") or {})}
        if method == "chat.delete":
            return ok | {"channel": body.get("channel"), "ts": body.get("ts")}
        return ok

    def fail(self, method: str, error: str, **extra: Any) -> None:
        """Answer every later call to `method` with `{"ok": false, "error": error, ...}`."""
        with self._lock:
            self._failing[method] = {"ok": False, "error": error, **extra}

    def rate_limit(self, method: str, times: int = 1, retry_after_s: int = 1) -> None:
        """The next `times` calls to `method` get HTTP 429 with `Retry-After`."""
        with self._lock:
            self._rate_limited[method] = [retry_after_s] * times

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
    channel: str = "C0CHAN1",
) -> str:
    return urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "channel_id": channel,
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
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    """(headers, raw body) of each delivery, to check signatures."""
    fail_next: int = 0
    """Answer this many of the next deliveries with HTTP 503 (a status page down)."""

    def start(self) -> Hooks:
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if hooks.fail_next > 0:
                    hooks.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                hooks.received.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                hooks.bodies.append(json.loads(raw))
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
