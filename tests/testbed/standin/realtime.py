"""realtime: the self-hosted tenant Realtime seeds and the tokens it accepts.

Like supabase/realtime with SEED_SELF_HOST=true (addendum A1): every start deletes and
re-inserts tenant realtime-dev in _realtime.tenants, its jwt_secret (API_JWT_SECRET), jwt_jwks
(API_JWT_JWKS, invalid JSON stops the start) and CDC db_password (DB_PASSWORD) encrypted
with DB_ENC_KEY (AES-128, exactly 16 bytes). Tokens are checked against the tenant's stored
values by `tokens.verify_realtime`; the compose health check's URL needs one.
"""

from __future__ import annotations

from collections.abc import Mapping

from .db import db_error, db_login, db_run, wait_for_db
from .seal import SealError, realtime_decrypt, realtime_encrypt
from .service import Route, Service
from .tokens import Claims, JwtError, KeyConfigError, parse_key_set, verify_realtime
from .web import Reply, Request

TENANT = "realtime-dev"
TABLE = """create table if not exists _realtime.tenants (
    external_id text primary key, jwt_secret text not null, jwt_jwks text,
    db_password text not null, inserted_at timestamptz not null default now())"""


class Realtime(Service):
    def db_conninfo(self) -> Mapping[str, str]:
        env = self.env
        return {
            "host": env["DB_HOST"],
            "port": env["DB_PORT"],
            "dbname": env["DB_NAME"],
            "user": env["DB_USER"],
            "password": env["DB_PASSWORD"],
        }

    def start(self) -> None:
        env = self.env
        if len(env.get("DB_ENC_KEY", "").encode()) != 16:
            raise SystemExit("DB_ENC_KEY must be exactly 16 bytes (AES-128 key)")
        if len(env.get("SECRET_KEY_BASE", "")) < 64:
            raise SystemExit("SECRET_KEY_BASE must be at least 64 bytes")
        jwks = env.get("API_JWT_JWKS", "").strip()
        try:
            parse_key_set(jwks) if jwks else None
        except KeyConfigError as exc:
            raise SystemExit(f"seeds.exs: Jason.decode!(API_JWT_JWKS): {exc}") from exc
        wait_for_db(self.db_conninfo())
        key = env["DB_ENC_KEY"]
        db_run(
            self.db_conninfo(),
            [
                (TABLE, ()),
                ("delete from _realtime.tenants where external_id = %s", (TENANT,)),
                (
                    "insert into _realtime.tenants (external_id, jwt_secret, jwt_jwks, db_password)"
                    " values (%s, %s, %s, %s)",
                    (
                        TENANT,
                        realtime_encrypt(env.get("API_JWT_SECRET", ""), key),
                        realtime_encrypt(jwks, key) if jwks else None,
                        realtime_encrypt(env["DB_PASSWORD"], key),
                    ),
                ),
            ],
        )

    def tenant(self) -> tuple[str, str]:
        """The stored jwt_secret and jwt_jwks, decrypted with DB_ENC_KEY."""
        rows = db_login(
            self.db_conninfo(),
            "select jwt_secret, jwt_jwks from _realtime.tenants where external_id = %s",
            (TENANT,),
        )
        if not rows:
            raise LookupError(f"tenant {TENANT} missing")
        key = self.env["DB_ENC_KEY"]
        secret, jwks = rows[0]
        return realtime_decrypt(secret, key), realtime_decrypt(jwks, key) if jwks else ""

    def check(self) -> str | None:
        try:
            self.tenant()
        except (LookupError, SealError) as exc:
            return f"tenant {TENANT}: {exc}"
        except Exception as exc:
            return f"database login refused: {db_error(exc)}"
        return None

    def verify(self, token: str) -> Claims:
        secret, jwks = self.tenant()
        return verify_realtime(token, secret, parse_key_set(jwks) if jwks else [])

    def routes(self) -> dict[str, Route]:
        return {f"/api/tenants/{TENANT}/health": self.tenant_health}

    def tenant_health(self, request: Request) -> Reply:
        reason = self.check()
        if reason:
            return Reply(503, {"status": "unhealthy", "reason": reason})
        try:
            self.verify(request.bearer() or "")
        except JwtError as exc:
            return Reply(403, {"message": f"signature_error: {exc}"})
        return Reply(200, {"healthy": True, "db_connected": True, "connected_cluster": 1})

    def resource(self, request: Request) -> Reply:
        token = request.bearer() or request.query.get("apikey") or request.headers.get("x-api-key")
        try:
            claims = self.verify(token or "")
        except (JwtError, LookupError, SealError) as exc:
            return Reply(403, {"message": f"Auth error: {exc}"})
        return Reply(200, {"role": claims.get("role"), "tenant": TENANT})
