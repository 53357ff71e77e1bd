"""What every stand-in does; each service module overrides what its real service does."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .db import Conninfo, db_error, db_login
from .seal import fingerprint
from .tokens import Claims, JwtError
from .web import Reply, Request

Env = Mapping[str, str]
Route = Callable[[Request], Reply]


class Service:
    health_paths: tuple[str, ...] = ("/health",)
    anonymous_role: str | None = None  # role of a request without a bearer token

    def __init__(self, env: Env) -> None:
        self.env = dict(env)  # read once, at start, like the real services

    def start(self) -> None:
        """Runs before the port opens; raise SystemExit to crash like the real service."""

    def open_listeners(self) -> None:
        """Opens the service's other ports (threads), once it is ready to answer."""

    def db_conninfo(self) -> Conninfo | None:
        return None

    def check(self) -> str | None:
        """None when healthy, else the reason."""
        conninfo = self.db_conninfo()
        if conninfo is None:
            return None
        try:
            db_login(conninfo)
        except Exception as exc:
            return f"database login refused: {db_error(exc)}"
        return None

    def verify(self, token: str) -> Claims:
        """The service's own token check (tokens.py); a service with none refuses."""
        raise JwtError("this service verifies no tokens")

    def routes(self) -> dict[str, Route]:
        return {}

    def health(self, _request: Request | None = None) -> Reply:
        reason = self.check()
        if reason:
            return Reply(503, {"status": "unhealthy", "reason": reason})
        return Reply(200, {"status": "ok"})

    def caller(self, request: Request) -> Claims | Reply:
        """The verified claims of the request's bearer token, or the refusal."""
        token = request.bearer()
        if token is None:
            if self.anonymous_role:
                return {"role": self.anonymous_role}
            return Reply(401, {"error": "no bearer token"})
        try:
            return self.verify(token)
        except JwtError as exc:
            return Reply(401, {"error": str(exc)})

    def whoami(self, request: Request) -> Reply:
        claims = self.caller(request)
        if isinstance(claims, Reply):
            return claims
        return Reply(200, {"role": claims.get("role")})

    def resource(self, request: Request) -> Reply:
        """Any other path: the service's API, which needs a valid token."""
        return self.whoami(request)

    def handle(self, request: Request) -> Reply:
        path = request.path
        if path in self.health_paths:
            return self.health(request)
        if path == "/fingerprints":
            return Reply(200, {name: fingerprint(value) for name, value in self.env.items()})
        if path == "/whoami":
            return self.whoami(request)
        handler = self.routes().get(path)
        return handler(request) if handler else self.resource(request)
