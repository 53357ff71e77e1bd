"""functions: the edge runtime's main/index.ts gate (FUNCTIONS_VERIFY_JWT).

With VERIFY_JWT "true", a function call needs a token `tokens.verify_functions` accepts:
HS256 by JWT_SECRET only, ES256 by SUPABASE_JWKS (public keys only). Otherwise every call
runs.
"""

from __future__ import annotations

from .db import Conninfo
from .service import Service
from .tokens import Claims, Jwk, KeyConfigError, parse_key_set, verify_functions
from .web import Reply, Request


class Functions(Service):
    def start(self) -> None:
        spec = self.env.get("SUPABASE_JWKS", "").strip()
        try:
            self.jwks: list[Jwk] = parse_key_set(spec) if spec else []
        except KeyConfigError as exc:
            raise SystemExit(f"functions: SUPABASE_JWKS: {exc}") from exc

    def db_conninfo(self) -> Conninfo:
        return self.env["SUPABASE_DB_URL"]

    def verify(self, token: str) -> Claims:
        return verify_functions(token, self.env.get("JWT_SECRET", ""), self.jwks)

    def resource(self, request: Request) -> Reply:
        if self.env.get("VERIFY_JWT", "").lower() != "true":
            return Reply(200, {"function": "ok"})
        return self.whoami(request)
