"""rest: PostgREST's reads, as the role the request's JWT names.

It logs in as authenticator (PGRST_DB_URI), switches to the token's role (PGRST_DB_ANON_ROLE
without a token) and sets request.jwt.claims, so grants and row level security decide
what a caller sees, as in PostgREST. Tokens are checked by `tokens.verify_postgrest`;
PGRST_JWT_SECRET shorter than 32 characters stops it at start. Supported on GET
/<table>: select=, column filters (eq, neq, gt, gte, lt, lte, like, ilike, is), order=,
limit=, offset=, and Accept-Profile for the schema; / answers an OpenAPI summary.
"""

from __future__ import annotations

import json
from typing import Any

from .db import Conninfo, connect, db_error, wait_for_db
from .service import Service
from .tokens import Claims, JwtError, KeyConfigError, postgrest_keys, verify_postgrest
from .web import Reply, Request

OPERATORS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "like",
    "ilike": "ilike",
    "is": "is",
}
RESERVED = {"select", "order", "limit", "offset", "apikey"}


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "details": None, "hint": None, "message": message})


class Rest(Service):
    health_paths = ("/health", "/ready", "/live")

    def start(self) -> None:
        try:
            self.keys = postgrest_keys(self.env.get("PGRST_JWT_SECRET", ""))
        except KeyConfigError as exc:
            raise SystemExit(f"rest: {exc}") from exc
        self.schemas = [s.strip() for s in self.env.get("PGRST_DB_SCHEMAS", "public").split(",")]
        self.anonymous_role = self.env.get("PGRST_DB_ANON_ROLE") or None
        wait_for_db(self.db_conninfo())

    def db_conninfo(self) -> Conninfo:
        return self.env["PGRST_DB_URI"]

    def verify(self, token: str) -> Claims:
        return verify_postgrest(token, self.keys)

    def caller(self, request: Request) -> Claims | Reply:
        found = super().caller(request)
        if isinstance(found, Reply):  # PostgREST's shape for JWT errors
            return _error(401, "PGRST301", str(found.body.get("error", "JWT invalid")))
        return found

    def resource(self, request: Request) -> Reply:
        claims = self.caller(request)
        if isinstance(claims, Reply):
            return claims
        schema = request.headers.get("accept-profile") or self.schemas[0]
        if schema not in self.schemas:
            return _error(
                406,
                "PGRST106",
                f"The schema must be one of the following: {', '.join(self.schemas)}",
            )
        table = request.path.strip("/")
        if not table:
            return Reply(
                200, {"swagger": "2.0", "info": {"title": "PostgREST (testbed)"}, "paths": {}}
            )
        if request.method not in ("GET", "HEAD"):
            return _error(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        return self._read(claims, schema, table, request.query)

    def _read(self, claims: Claims, schema: str, table: str, query: dict[str, str]) -> Reply:
        from psycopg2 import errors, sql  # type: ignore[import-untyped,import-not-found,unused-ignore]

        role = str(claims.get("role") or self.anonymous_role or "")
        columns = [c.strip() for c in query.get("select", "*").split(",") if c.strip()]
        select = (
            sql.SQL("*")
            if columns in ([], ["*"])
            else sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        where, params = [], []
        for name, spec in query.items():
            if name in RESERVED:
                continue
            op, _, value = spec.partition(".")
            if op not in OPERATORS:
                return _error(400, "PGRST100", f'"failed to parse filter ({spec})"')
            if op == "is":
                literal = {"null": "null", "true": "true", "false": "false"}.get(value)
                if literal is None:
                    return _error(400, "PGRST100", f'"failed to parse filter ({spec})"')
                where.append(sql.SQL("{} is " + literal).format(sql.Identifier(name)))
            else:
                where.append(sql.SQL("{} " + OPERATORS[op] + " %s").format(sql.Identifier(name)))
                params.append(value)
        order = []
        for part in filter(None, query.get("order", "").split(",")):
            column, _, direction = part.partition(".")
            word = "desc" if direction.startswith("desc") else "asc"
            order.append(sql.SQL("{} " + word).format(sql.Identifier(column)))
        statement = sql.SQL("select {} from {}.{}").format(
            select, sql.Identifier(schema), sql.Identifier(table)
        )
        if where:
            statement += sql.SQL(" where ") + sql.SQL(" and ").join(where)
        if order:
            statement += sql.SQL(" order by ") + sql.SQL(", ").join(order)
        statement += sql.SQL(" limit %s offset %s")
        limit = min(
            int(query.get("limit", "1000000")), int(self.env.get("PGRST_DB_MAX_ROWS", "1000"))
        )
        params += [limit, int(query.get("offset", "0"))]
        wrapped = sql.SQL("select coalesce(json_agg(_t), '[]') from ({}) _t").format(statement)
        conn = connect(self.db_conninfo())
        try:
            with conn.cursor() as cur:
                cur.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',))
                if cur.fetchone()[0] is None:
                    return _error(
                        404,
                        "PGRST205",
                        f"Could not find the table '{schema}.{table}' in the schema cache",
                    )
                try:
                    cur.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                except errors.InvalidParameterValue:
                    return _error(401, "22023", f'role "{role}" does not exist')
                cur.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                try:
                    cur.execute(wrapped, params)
                except errors.InsufficientPrivilege as exc:
                    status = 401 if role == self.anonymous_role else 403
                    return _error(status, "42501", db_error(exc))
                rows: Any = cur.fetchone()[0]
            conn.rollback()
        finally:
            conn.close()
        return Reply(200, rows, {"Content-Range": f"0-{max(len(rows) - 1, 0)}/*"})

    def handle(self, request: Request) -> Reply:
        try:
            return super().handle(request)
        except JwtError as exc:
            return _error(401, "PGRST301", str(exc))
