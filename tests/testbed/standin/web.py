"""HTTP for the stand-ins: requests, replies, a threaded server, a small client."""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = Any


@dataclass
class Reply:
    status: int
    body: Json | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:].strip() if value[:7].lower() == "bearer " else None

    def json(self) -> Json:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return None


def basic_auth_matches(request: Request, expected: str) -> bool:
    value = request.headers.get("authorization", "")
    if value[:6].lower() != "basic ":
        return False
    try:
        given = base64.b64decode(value[6:].strip()).decode()
    except ValueError:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def http_call(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    except OSError as exc:
        return 502, f"upstream unreachable: {exc}".encode(), {}
    finally:
        conn.close()


def serve(handle: Callable[[Request], Reply], port: int, name: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = Request(self.command, self.path, headers, self.rfile.read(length))
            try:
                reply = handle(request)
            except Exception as exc:
                reply = Reply(500, {"error": f"{type(exc).__name__}: {exc}"})
            if isinstance(reply.body, bytes):
                data, ctype = reply.body, "application/octet-stream"
            elif isinstance(reply.body, str):
                data, ctype = reply.body.encode(), "text/plain; charset=utf-8"
            else:
                data, ctype = json.dumps(reply.body).encode(), "application/json"
            self.send_response(reply.status)
            headers = dict(reply.headers)
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = ctype
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if os.environ.get("TESTBED_ACCESS_LOG"):
                super().log_message(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"standin {name} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()
