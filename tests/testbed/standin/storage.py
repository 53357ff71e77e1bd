"""storage: the Storage API's token check and S3 credentials.

Tokens by `tokens.verify_storage` (AUTH_JWT_SECRET, and JWT_JWKS when the compose passes
it); S3 protocol requests by S3_PROTOCOL_ACCESS_KEY_ID/SECRET (basic auth here; the real
one checks SigV4 signatures made with them).
"""

from __future__ import annotations

from .db import Conninfo
from .service import Route, Service
from .tokens import Claims, Jwk, KeyConfigError, parse_key_set, verify_storage
from .web import Reply, Request, basic_auth_matches


class Storage(Service):
    health_paths = ("/health", "/status")

    def start(self) -> None:
        spec = self.env.get("JWT_JWKS", "").strip()
        try:
            self.jwks: list[Jwk] = parse_key_set(spec) if spec else []
        except KeyConfigError as exc:
            raise SystemExit(f"storage: JWT_JWKS: {exc}") from exc

    def db_conninfo(self) -> Conninfo:
        return self.env["DATABASE_URL"]

    def verify(self, token: str) -> Claims:
        return verify_storage(token, self.env.get("AUTH_JWT_SECRET", ""), self.jwks)

    def routes(self) -> dict[str, Route]:
        return {"/s3/check": self.s3_check}

    def s3_check(self, request: Request) -> Reply:
        expected = (
            f"{self.env['S3_PROTOCOL_ACCESS_KEY_ID']}:{self.env['S3_PROTOCOL_ACCESS_KEY_SECRET']}"
        )
        if basic_auth_matches(request, expected):
            return Reply(200, {"s3": "ok"})
        return Reply(403, {"error": "SignatureDoesNotMatch"})
