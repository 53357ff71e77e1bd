"""auth: GoTrue's sessions, grants and keys.

State is real: users, sessions and refresh tokens are rows in the auth schema (created at
start like GoTrue's migrations do), passwords are bcrypt hashes (cost 10), as GoTrue's. Refresh
tokens are opaque rows, so they survive any change of JWT secret or signing key: a client
holding one after a rotation gets a new access token signed with the new key (addendum
A6). Access tokens are signed and checked by `tokens.GoTrueKeys`.

Routes (behind the gateway's /auth/v1/): GET /health, /settings, /.well-known/jwks.json;
POST /signup; POST /token?grant_type=password|refresh_token; GET /user; POST /logout.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import bcrypt  # type: ignore[import-not-found,unused-ignore]

from .db import Conninfo, db_error, db_run, wait_for_db
from .service import Route, Service
from .tokens import Claims, GoTrueKeys, JwtError, KeyConfigError
from .web import Reply, Request

MIGRATIONS = """
create table if not exists auth.sessions (
    id uuid primary key,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz,
    updated_at timestamptz,
    aal text,
    not_after timestamptz
);
alter table auth.refresh_tokens add column if not exists parent varchar(255);
alter table auth.refresh_tokens add column if not exists session_id uuid
    references auth.sessions (id) on delete cascade;
alter table auth.users add column if not exists email_confirmed_at timestamptz;
alter table auth.users add column if not exists is_anonymous boolean not null default false;
insert into auth.schema_migrations values ('testbed-sessions') on conflict do nothing;
"""
USER_COLUMNS = (
    "id, aud, role, email, email_confirmed_at, last_sign_in_at, raw_app_meta_data,"
    " raw_user_meta_data, created_at, updated_at"
)


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": status, "error_code": code, "msg": message})


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class Auth(Service):
    def start(self) -> None:
        try:
            self.keys = GoTrueKeys(
                self.env.get("GOTRUE_JWT_SECRET", ""),
                self.env.get("GOTRUE_JWT_KEYS", ""),
                self.env.get("GOTRUE_JWT_KEY_ID", ""),
            )
        except KeyConfigError as exc:
            raise SystemExit(f"auth: {exc}") from exc
        wait_for_db(self.db_conninfo())
        db_run(self.db_conninfo(), [(MIGRATIONS, ())])

    def db_conninfo(self) -> Conninfo:
        return self.env["GOTRUE_DB_DATABASE_URL"]

    def verify(self, token: str) -> Claims:
        return self.keys.verify(token)

    def routes(self) -> dict[str, Route]:
        return {
            "/settings": self.settings,
            "/.well-known/jwks.json": lambda _r: Reply(200, self.keys.public_jwks()),
            "/signup": self.signup,
            "/token": self.token,
            "/user": self.user,
            "/logout": self.logout,
        }

    def health(self, _request: Request | None = None) -> Reply:
        reason = self.check()
        if reason:
            return Reply(503, {"status": "unhealthy", "reason": reason})
        return Reply(
            200,
            {
                "version": "testbed",
                "name": "GoTrue",
                "description": "GoTrue is a user registration and authentication API",
            },
        )

    def _flag(self, name: str) -> bool:
        return self.env.get(name, "").lower() == "true"

    def settings(self, _request: Request) -> Reply:
        return Reply(
            200,
            {
                "external": {
                    "email": self._flag("GOTRUE_EXTERNAL_EMAIL_ENABLED"),
                    "phone": self._flag("GOTRUE_EXTERNAL_PHONE_ENABLED"),
                    "anonymous_users": self._flag("GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED"),
                },
                "disable_signup": self._flag("GOTRUE_DISABLE_SIGNUP"),
                "mailer_autoconfirm": self._flag("GOTRUE_MAILER_AUTOCONFIRM"),
                "phone_autoconfirm": self._flag("GOTRUE_SMS_AUTOCONFIRM"),
                "sms_provider": "",
                "saml_enabled": False,
            },
        )

    # --- state -----------------------------------------------------------------------

    def _sql(self, *statements: tuple[str, tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
        return db_run(self.db_conninfo(), list(statements))

    def _user_json(self, row: tuple[Any, ...]) -> dict[str, Any]:
        uid, aud, role, email, confirmed, last, app, meta, created, updated = row
        return {
            "id": str(uid),
            "aud": aud,
            "role": role,
            "email": email,
            "phone": "",
            "email_confirmed_at": _iso(confirmed),
            "confirmed_at": _iso(confirmed),
            "last_sign_in_at": _iso(last),
            "app_metadata": app or {},
            "user_metadata": meta or {},
            "identities": [],
            "created_at": _iso(created),
            "updated_at": _iso(updated),
            "is_anonymous": False,
        }

    def _load_user(self, user_id: str) -> dict[str, Any] | None:
        rows = self._sql((f"select {USER_COLUMNS} from auth.users where id = %s", (user_id,)))[0]  # noqa: S608
        return self._user_json(rows[0]) if rows else None

    def _session(self, user: dict[str, Any], session_id: str, refresh_token: str) -> Reply:
        now = int(time.time())
        lifetime = int(self.env.get("GOTRUE_JWT_EXP", "3600"))
        claims = {
            "aud": self.env.get("GOTRUE_JWT_AUD", "authenticated"),
            "exp": now + lifetime,
            "iat": now,
            "iss": self.env.get("GOTRUE_JWT_ISSUER", ""),
            "sub": user["id"],
            "email": user["email"],
            "phone": "",
            "app_metadata": user["app_metadata"],
            "user_metadata": user["user_metadata"],
            "role": user["role"],
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": session_id,
            "is_anonymous": False,
        }
        return Reply(
            200,
            {
                "access_token": self.keys.sign(claims),
                "token_type": "bearer",
                "expires_in": lifetime,
                "expires_at": now + lifetime,
                "refresh_token": refresh_token,
                "user": user,
            },
        )

    def _new_session(self, user_id: str) -> tuple[str, str]:
        session_id, token = str(uuid.uuid4()), secrets.token_urlsafe(9)
        self._sql(
            (
                "insert into auth.sessions (id, user_id, created_at, updated_at, aal)"
                " values (%s, %s, now(), now(), 'aal1')",
                (session_id, user_id),
            ),
            (
                "insert into auth.refresh_tokens (token, user_id, revoked, created_at, updated_at,"
                " session_id) values (%s, %s, false, now(), now(), %s)",
                (token, user_id, session_id),
            ),
            ("update auth.users set last_sign_in_at = now() where id = %s", (user_id,)),
        )
        return session_id, token

    # --- routes ----------------------------------------------------------------------

    def signup(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply(405, {"msg": "method not allowed"})
        if self._flag("GOTRUE_DISABLE_SIGNUP"):
            return _error(422, "signup_disabled", "Signups not allowed for this instance")
        body = request.json() or {}
        email = str(body.get("email") or "").strip().lower()
        password = str(body.get("password") or "")
        if not email:
            return _error(422, "validation_failed", "To signup, please provide your email")
        if len(password) < 6:
            return _error(422, "weak_password", "Password should be at least 6 characters.")
        confirmed = self._flag("GOTRUE_MAILER_AUTOCONFIRM")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
        user_id = str(uuid.uuid4())
        app = json.dumps({"provider": "email", "providers": ["email"]})
        meta = json.dumps(body.get("data") or {})
        try:
            self._sql(
                (
                    "insert into auth.users (instance_id, id, aud, role, email, encrypted_password,"
                    " email_confirmed_at, confirmation_sent_at, raw_app_meta_data,"
                    " raw_user_meta_data, created_at, updated_at) values"
                    " ('00000000-0000-0000-0000-000000000000', %s, 'authenticated',"
                    " 'authenticated', %s, %s, case when %s then now() end, now(), %s::jsonb,"
                    " %s::jsonb, now(), now())",
                    (user_id, email, hashed, confirmed, app, meta),
                )
            )
        except Exception as exc:
            if "duplicate key" in db_error(exc):
                return _error(422, "user_already_exists", "User already registered")
            raise
        user = self._load_user(user_id)
        assert user is not None
        if not confirmed:
            return Reply(200, {**user, "confirmation_sent_at": user["created_at"]})
        session_id, token = self._new_session(user_id)
        return self._session(user, session_id, token)

    def token(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply(405, {"msg": "method not allowed"})
        grant = request.query.get("grant_type")
        body = request.json() or {}
        if grant == "password":
            return self._password_grant(body)
        if grant == "refresh_token":
            return self._refresh_grant(str(body.get("refresh_token") or ""))
        return _error(400, "validation_failed", "unsupported_grant_type")

    def _password_grant(self, body: dict[str, Any]) -> Reply:
        email = str(body.get("email") or "").strip().lower()
        rows = self._sql(
            (
                "select id, email_confirmed_at is not null, encrypted_password"
                " from auth.users where email = %s",
                (email,),
            )
        )[0]
        password = str(body.get("password") or "").encode()
        if not rows or not bcrypt.checkpw(password, str(rows[0][2]).encode()):
            return _error(400, "invalid_credentials", "Invalid login credentials")
        if not rows[0][1]:
            return _error(400, "email_not_confirmed", "Email not confirmed")
        user_id = str(rows[0][0])
        session_id, token = self._new_session(user_id)
        user = self._load_user(user_id)
        assert user is not None
        return self._session(user, session_id, token)

    def _refresh_grant(self, token: str) -> Reply:
        if not token:
            return _error(400, "validation_failed", "refresh_token required")
        new_token = secrets.token_urlsafe(9)
        # One statement: the old token is revoked and its child issued, or nothing happens.
        rows = self._sql(
            (
                "with old as (update auth.refresh_tokens set revoked = true, updated_at = now()"
                " where token = %s and not revoked and session_id is not null"
                " returning user_id, session_id)"
                " insert into auth.refresh_tokens (token, user_id, revoked, created_at, updated_at,"
                " parent, session_id) select %s, user_id, false, now(), now(), %s, session_id"
                " from old returning user_id, session_id",
                (token, new_token, token),
            )
        )[0]
        if not rows:
            used = self._sql(("select 1 from auth.refresh_tokens where token = %s", (token,)))[0]
            if used:
                return _error(
                    400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
                )
            return _error(
                400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
            )
        user = self._load_user(str(rows[0][0]))
        assert user is not None
        return self._session(user, str(rows[0][1]), new_token)

    def _signed_in(self, request: Request) -> tuple[Claims, dict[str, Any]] | Reply:
        """GoTrue's requireAuthentication + user and session lookup."""
        token = request.bearer()
        if not token:
            return _error(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            claims = self.verify(token)
        except JwtError as exc:
            return _error(
                401, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc}"
            )
        sub = claims.get("sub")
        if not sub:
            return _error(403, "bad_jwt", "invalid claim: missing sub claim")
        try:
            uuid.UUID(str(sub))
        except ValueError:
            return _error(400, "bad_jwt", "invalid claim: sub claim must be a UUID")
        user = self._load_user(str(sub))
        if user is None:
            return _error(403, "user_not_found", "User from sub claim in JWT does not exist")
        session_id = claims.get("session_id")
        if session_id:
            found = self._sql(("select 1 from auth.sessions where id = %s", (session_id,)))[0]
            if not found:
                return _error(
                    403, "session_not_found", "Session from session_id claim in JWT does not exist"
                )
        return claims, user

    def user(self, request: Request) -> Reply:
        found = self._signed_in(request)
        return found if isinstance(found, Reply) else Reply(200, found[1])

    def logout(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply(405, {"msg": "method not allowed"})
        found = self._signed_in(request)
        if isinstance(found, Reply):
            return found
        claims, user = found
        scope = request.query.get("scope", "global")
        session_id = claims.get("session_id")
        if scope == "local":
            statement = ("delete from auth.sessions where id = %s", (session_id,))
        elif scope == "others":
            statement = (
                "delete from auth.sessions where user_id = %s and id <> %s",
                (user["id"], session_id),
            )
        else:
            statement = ("delete from auth.sessions where user_id = %s", (user["id"],))
        self._sql(statement)
        return Reply(204, "")
