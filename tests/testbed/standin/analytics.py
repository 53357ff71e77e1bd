"""analytics and vector: Logflare in single-tenant mode, and the log shipper feeding it.

Logflare (addendum A3), at every start, in DB_SCHEMA of DB_DATABASE as DB_USERNAME:
- creates the default user only if it is missing, copying LOGFLARE_PUBLIC_ACCESS_TOKEN into
  users.api_key then, and never again: that legacy key outlives a token rotation;
- revokes the access tokens carrying the same descriptions and inserts the current
  LOGFLARE_PUBLIC_ACCESS_TOKEN (ingest) and LOGFLARE_PRIVATE_ACCESS_TOKEN (ingest, query);
- records its Postgres backend from POSTGRES_BACKEND_URL in source_backends.
Ingest (POST /api/logs, /api/events) and endpoint queries (/api/endpoints/query/...) take
the key in `x-api-key` or `?api_key=`: users.api_key or a current token; others get 401.
Health: both its logins (DB_PASSWORD and the backend URL) work.

Vector sends logs with `x-api-key: LOGFLARE_PUBLIC_ACCESS_TOKEN`; its own health, like the
real one's, says only that it runs; GET /sink reports what analytics answers its key.
"""

from __future__ import annotations

from collections.abc import Mapping

from .db import Conninfo, db_error, db_login, db_run, wait_for_db
from .service import Route, Service
from .web import Reply, Request, http_call

DEFAULT_EMAIL = "default@logflare.app"
PUBLIC, PRIVATE = "auto-generated ingest token", "auto-generated private token"


class Analytics(Service):
    def db_conninfo(self) -> Mapping[str, str]:
        env = self.env
        return {
            "host": env["DB_HOSTNAME"],
            "port": env["DB_PORT"],
            "dbname": env["DB_DATABASE"],
            "user": env["DB_USERNAME"],
            "password": env["DB_PASSWORD"],
            # Logflare works in DB_SCHEMA: its tables are found through the search path.
            "options": f"-c search_path={self.schema}",
        }

    @property
    def schema(self) -> str:
        return self.env.get("DB_SCHEMA", "_analytics")

    def start(self) -> None:
        wait_for_db(self.db_conninfo())
        env = self.env
        db_run(
            self.db_conninfo(),
            [
                (
                    "create table if not exists users (id bigserial primary key,"
                    " email text unique not null, api_key text not null,"
                    " inserted_at timestamptz not null default now())",
                    (),
                ),
                (
                    "create table if not exists oauth_access_tokens (id bigserial primary key,"
                    " token text not null, description text, scopes text not null,"
                    " resource_owner_id bigint, revoked_at timestamptz,"
                    " inserted_at timestamptz not null default now())",
                    (),
                ),
                (
                    "create table if not exists source_backends (id bigserial primary key,"
                    " type text not null, config jsonb not null)",
                    (),
                ),
                (
                    "insert into users (email, api_key) values (%s, %s)"
                    " on conflict (email) do nothing",
                    (DEFAULT_EMAIL, env["LOGFLARE_PUBLIC_ACCESS_TOKEN"]),
                ),
                (
                    "update oauth_access_tokens set revoked_at = now()"
                    " where description in (%s, %s) and revoked_at is null",
                    (PUBLIC, PRIVATE),
                ),
                (
                    "insert into oauth_access_tokens (token, description, scopes) values"
                    " (%s, %s, 'ingest'), (%s, %s, 'ingest query private')",
                    (
                        env["LOGFLARE_PUBLIC_ACCESS_TOKEN"],
                        PUBLIC,
                        env["LOGFLARE_PRIVATE_ACCESS_TOKEN"],
                        PRIVATE,
                    ),
                ),
                ("delete from source_backends where type = 'postgres'", ()),
                (
                    "insert into source_backends (type, config) values ('postgres',"
                    " jsonb_build_object('url', %s::text, 'schema', %s::text))",
                    (
                        env.get("POSTGRES_BACKEND_URL", ""),
                        env.get("POSTGRES_BACKEND_SCHEMA", self.schema),
                    ),
                ),
            ],
        )

    def check(self) -> str | None:
        reason = super().check()
        if reason:
            return reason
        try:
            db_login(self.env.get("POSTGRES_BACKEND_URL", ""))
        except Exception as exc:
            return f"postgres backend login refused: {db_error(exc)}"
        return None

    def key_accepted(self, key: str, scope: str) -> bool:
        if not key:
            return False
        rows = db_login(
            self.db_conninfo(),
            "select exists (select 1 from users where api_key = %s)"
            " or exists (select 1 from oauth_access_tokens where token = %s"
            " and revoked_at is null and position(%s in scopes) > 0)",
            (key, key, scope),
        )
        return bool(rows[0][0])

    def routes(self) -> dict[str, Route]:
        return {"/api/logs": self.ingest, "/api/events": self.ingest}

    def given_key(self, request: Request) -> str:
        return request.headers.get("x-api-key") or request.query.get("api_key", "")

    def ingest(self, request: Request) -> Reply:
        if not self.key_accepted(self.given_key(request), "ingest"):
            return Reply(401, {"error": "Unauthorized"})
        return Reply(200, {"message": "Logged!"})

    def resource(self, request: Request) -> Reply:
        if request.path.startswith("/api/endpoints/query/"):
            if not self.key_accepted(self.given_key(request), "query"):
                return Reply(401, {"error": "Unauthorized"})
            return Reply(200, {"result": []})
        return Reply(404, {"error": "Not Found"})


class Vector(Service):
    def routes(self) -> dict[str, Route]:
        return {"/sink": self.sink}

    def sink(self, _request: Request) -> Reply:
        status, _body, _ = http_call(
            "POST",
            self.env["LOGFLARE_URL"] + "/api/logs?source_name=testbed",
            {
                "x-api-key": self.env.get("LOGFLARE_PUBLIC_ACCESS_TOKEN", ""),
                "content-type": "application/json",
            },
            b'[{"message": "testbed"}]',
        )
        return Reply(200 if status == 200 else 502, {"analytics_status": status})

    def db_conninfo(self) -> Conninfo | None:
        return None
