"""studio: the dashboard, as far as secrets go.

Its health check URL (/api/platform/profile) answers without the database, as self-hosted
Studio's does. What a person does in the dashboard's SQL editor goes through
`POST /api/platform/pg-meta/<ref>/query` {"query": ...}: Studio sends it to postgres-meta (the
real one) with the connection string encrypted with PG_META_CRYPTO_KEY by crypto-js in
`x-connection-encrypted`. A key that differs from meta's CRYPTO_KEY makes meta answer 500
("failed to get/process upstream connection details", supabase#41571), which Studio passes on.
"""

from __future__ import annotations

import json

from .seal import cryptojs_encrypt
from .service import Service
from .tokens import Claims, verify_storage
from .web import Reply, Request, http_call

PG_META_PREFIX = "/api/platform/pg-meta/"


class Studio(Service):
    health_paths = ("/health", "/api/platform/profile")

    def connection_string(self) -> str:
        env = self.env
        user = env.get("POSTGRES_USER_READ_WRITE", "postgres")
        return (
            f"postgresql://{user}:{env['POSTGRES_PASSWORD']}@{env['POSTGRES_HOST']}:"
            f"{env['POSTGRES_PORT']}/{env['POSTGRES_DB']}"
        )

    def pg_meta_query(self, request: Request) -> Reply:
        body = request.json() or {}
        query = body.get("query") if isinstance(body, dict) else None
        if request.method != "POST" or not isinstance(query, str):
            return Reply(400, {"error": {"message": "POST a JSON body with a query"}})
        key = self.env.get("PG_META_CRYPTO_KEY") or "SAMPLE_KEY"
        headers = {
            "content-type": "application/json",
            "x-connection-encrypted": cryptojs_encrypt(self.connection_string(), key),
        }
        url = self.env["STUDIO_PG_META_URL"] + "/query"
        status, data, _ = http_call("POST", url, headers, json.dumps({"query": query}).encode())
        try:
            return Reply(status, json.loads(data))
        except ValueError:
            return Reply(status, data.decode(errors="replace"))

    def verify(self, token: str) -> Claims:
        # Studio signs and checks its own HS256 tokens with AUTH_JWT_SECRET.
        return verify_storage(token, self.env.get("AUTH_JWT_SECRET", ""), [])

    def resource(self, request: Request) -> Reply:
        if request.path.startswith(PG_META_PREFIX) and request.path.endswith("/query"):
            return self.pg_meta_query(request)
        return Reply(
            200,
            "<html><body>Supabase Studio (testbed)</body></html>",
            {"Content-Type": "text/html; charset=utf-8"},
        )
