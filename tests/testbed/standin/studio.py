"""studio: the dashboard, as far as secrets go.

Its health (the compose's /api/platform/profile) asks postgres-meta, the real one, to run
a query on a connection Studio names in `x-connection-encrypted`: the connection string
encrypted with PG_META_CRYPTO_KEY by crypto-js, as real Studio sends it. A key that differs
from meta's CRYPTO_KEY makes meta answer 500 ("failed to get/process upstream connection
details"), and Studio turns unhealthy.
"""

from __future__ import annotations

import json

from .seal import cryptojs_encrypt
from .service import Service
from .tokens import Claims, verify_storage
from .web import Reply, Request, http_call


class Studio(Service):
    health_paths = ("/health", "/api/platform/profile")

    def connection_string(self) -> str:
        env = self.env
        user = env.get("POSTGRES_USER_READ_WRITE", "postgres")
        return (
            f"postgresql://{user}:{env['POSTGRES_PASSWORD']}@{env['POSTGRES_HOST']}:"
            f"{env['POSTGRES_PORT']}/{env['POSTGRES_DB']}"
        )

    def check(self) -> str | None:
        key = self.env.get("PG_META_CRYPTO_KEY") or "SAMPLE_KEY"
        headers = {
            "content-type": "application/json",
            "x-connection-encrypted": cryptojs_encrypt(self.connection_string(), key),
        }
        status, body, _ = http_call(
            "POST",
            self.env["STUDIO_PG_META_URL"] + "/query",
            headers,
            json.dumps({"query": "select 1"}).encode(),
        )
        return None if status == 200 else f"postgres-meta answered {status}: {body[:200]!r}"

    def verify(self, token: str) -> Claims:
        # Studio signs and checks its own HS256 tokens with AUTH_JWT_SECRET.
        return verify_storage(token, self.env.get("AUTH_JWT_SECRET", ""), [])

    def resource(self, request: Request) -> Reply:
        return Reply(
            200,
            "<html><body>Supabase Studio (testbed)</body></html>",
            {"Content-Type": "text/html; charset=utf-8"},
        )
