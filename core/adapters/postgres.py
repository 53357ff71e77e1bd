"""PostgreSQL adapter: logins, password probes, and the shared-password change.

Only this module talks to PostgreSQL. Every psycopg error is translated here into
`DatabaseRefused` or `DatabaseError`, whose messages name roles, hosts, steps and
SQLSTATEs, never values: psycopg's own messages can quote statements, and the
exception of a failed connection carries the conninfo, password included
(`exc.pgconn`). Translated errors are raised `from None`, and the public functions
drop even the suppressed `__context__`, so no psycopg exception travels with them.

Passwords never appear in statement text: `ALTER ROLE` is sent a SCRAM verifier
computed on this side (libpq `PQencryptPasswordConn`), and the one value that must
hold the plaintext (the analytics backend URL) travels as a bound parameter.

Usage::

    address = DbAddress("127.0.0.1", 5432, "postgres")
    change = change_shared_password(
        address, "supabase_admin", current, new, SHARED_PASSWORD_ROLES,
        analytics_host="db", analytics_port=5432,
    )
    probe = role_passwords_match(
        address, SHARED_PASSWORD_ROLES, new,
        admin_role="supabase_admin", admin_password=new,
    )
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import sql

from core.errors import DatabaseError, DatabaseRefused
from core.roles import SHARED_PASSWORD_ROLES
from core.scram import scram_sha256_verifier

__all__ = [
    "SHARED_PASSWORD_ROLES",
    "DbAddress",
    "PasswordChange",
    "RolePasswordCheck",
    "accepts_password",
    "change_shared_password",
    "connect_as",
    "map_psycopg_errors",
    "reset_pooler_tenant",
    "role_passwords_match",
    "shared_password_script",
]

SUPABASE_METADATA_DB = "_supabase"
"""Where Supavisor (`_supavisor`) and Logflare (`_analytics`) keep their state."""

POOLER_SCHEMA = "_supavisor"
SUPABASE_ADMIN = "supabase_admin"
"""Owner of the recreated pooler schema, and the user in the analytics backend URL."""

AUTH_SQLSTATES = frozenset({"28P01", "28000"})

Connection = psycopg.Connection[tuple[Any, ...]]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class DbAddress:
    host: str
    port: int
    dbname: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PasswordChange:
    """What `change_shared_password` did, in one committed transaction."""

    changed: tuple[str, ...]
    """Roles whose password was set, in the order given."""
    missing: tuple[str, ...]
    """Roles asked for that do not exist in the cluster; skipped."""
    pooler_reset: bool
    """The `_supavisor` schema existed and was recreated empty."""
    analytics_updated: int
    """Rows of `_analytics.source_backends` whose `config.url` was rewritten."""


class RolePasswordCheck(dict[str, bool]):
    """Role -> whether it accepts the password, for every role that could be probed.

    `not_probed` maps each other role to the reason: a role without LOGIN cannot be
    probed by logging in, and a missing role has no password at all.
    """

    def __init__(self, results: Mapping[str, bool], not_probed: Mapping[str, str]) -> None:
        super().__init__(results)
        self.not_probed: dict[str, str] = dict(not_probed)

    def __repr__(self) -> str:
        return f"RolePasswordCheck({dict(self)!r}, not_probed={self.not_probed!r})"


# --- errors ---------------------------------------------------------------------------------

_NOT_PERMITTED = "role may not log in"

# libpq reports failed logins as text only (psycopg gives `sqlstate=None`), so the
# SQLSTATE is recovered from the server's English message.
_LOGIN_FAILURES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"password authentication failed"), "28P01", "password refused"),
    (re.compile(r"is not permitted to log in"), "28000", _NOT_PERMITTED),
    (re.compile(r"pg_hba\.conf"), "28000", "rejected by pg_hba.conf"),
    (re.compile(r'role "[^"]*" does not exist'), "28000", "role does not exist"),
    (re.compile(r'database "[^"]*" does not exist'), "3D000", "database does not exist"),
    (re.compile(r"too many (clients|connections)"), "53300", "too many connections"),
    (re.compile(r"starting up|shutting down|in recovery mode"), "57P03", "server not ready"),
    (re.compile(r"Connection refused"), "", "connection refused"),
    (re.compile(r"timeout expired"), "", "timed out"),
    (re.compile(r"could not translate host name"), "", "unknown host"),
    (re.compile(r"No route to host|Network is unreachable"), "", "host unreachable"),
)


@dataclass(frozen=True)
class _LoginFailure:
    """A failed login, classified. Holds no text from psycopg."""

    sqlstate: str
    reason: str
    exc_type: str

    def error(self, address: DbAddress, role: str, dbname: str) -> DatabaseRefused | DatabaseError:
        if self.sqlstate in AUTH_SQLSTATES:
            verb = "password" if self.sqlstate == "28P01" else "login"
            return DatabaseRefused(
                f'the database refuses the {verb} for role "{role}" at {address}'
                f" (SQLSTATE {self.sqlstate})"
            )
        state = f", SQLSTATE {self.sqlstate}" if self.sqlstate else ""
        return DatabaseError(
            f'cannot connect to {address} as role "{role}", database "{dbname}": {self.reason}'
            f" ({self.exc_type}{state})"
        )


def _classify(exc: psycopg.Error) -> _LoginFailure:
    text = str(exc)
    sqlstate, reason = exc.sqlstate or "", "connection failed"
    for pattern, state, what in _LOGIN_FAILURES:
        if pattern.search(text):
            sqlstate, reason = state or sqlstate, what
            break
    return _LoginFailure(sqlstate, reason, type(exc).__name__)


@contextmanager
def map_psycopg_errors(action: str, address: DbAddress) -> Iterator[None]:
    """Turn any psycopg error raised inside into a `DatabaseError` naming `action`.

    The message keeps psycopg's class name and SQLSTATE and drops its text, which can
    quote statements or, through trigger messages, values.
    """
    try:
        yield
    except psycopg.Error as exc:
        state = f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else ""
        raise DatabaseError(f"{action} failed at {address}: {type(exc).__name__}{state}") from None


def _detached(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Re-raise the function's database errors without their `__context__`.

    `raise ... from None` only hides the psycopg exception from printed tracebacks;
    it still rides along on `__context__`, where error reporters can read its text
    (a trigger's message can quote a row) or its `pgconn` (the login password).
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (DatabaseError, DatabaseRefused) as exc:
            failure = exc
        failure.__context__ = None
        raise failure

    return wrapper


# --- logins -------------------------------------------------------------------------------


def _login(
    address: DbAddress, role: str, password: str, dbname: str, timeout_s: float
) -> Connection | _LoginFailure:
    try:
        return psycopg.connect(
            host=address.host,
            port=address.port,
            dbname=dbname,
            user=role,
            password=password,
            connect_timeout=max(2, math.ceil(timeout_s)),
            application_name="rotator",
            autocommit=True,
        )
    except psycopg.Error as exc:
        # Returned, not raised: exc (and exc.pgconn, which holds the password) dies here.
        return _classify(exc)


def connect_as(
    address: DbAddress,
    role: str,
    password: str,
    *,
    dbname: str | None = None,
    timeout_s: float = 5,
) -> Connection:
    """Log in over TCP as `role`. The connection is in autocommit mode: group changes
    with `conn.transaction()`. Close it (or use it as a context manager).

    Raises:
        DatabaseRefused: the server refused the login (SQLSTATE 28P01 or 28000).
        DatabaseError: anything else (unreachable, timeout, no such database).
        ValueError: an empty password (libpq would fall back to PGPASSWORD or .pgpass).
    """
    if not password:
        raise ValueError(f'no password given for role "{role}"')
    target = dbname or address.dbname
    result = _login(address, role, password, target, timeout_s)
    if isinstance(result, _LoginFailure):
        raise result.error(address, role, target)
    return result


def _probe(address: DbAddress, role: str, password: str) -> bool | None:
    """True: logged in. False: refused. None: the password is right but the role has
    NOLOGIN (PostgreSQL checks the password first). Other failures raise DatabaseError."""
    result = _login(address, role, password, address.dbname, 5)
    if not isinstance(result, _LoginFailure):
        result.close()
        return True
    if result.reason == _NOT_PERMITTED:
        return None
    if result.sqlstate in AUTH_SQLSTATES:
        return False
    raise result.error(address, role, address.dbname)


def accepts_password(address: DbAddress, role: str, password: str) -> bool:
    """Whether `role` can log in with `password` over TCP.

    Raises `DatabaseError` when the answer is unknown (server unreachable, ...).
    """
    return bool(password) and _probe(address, role, password) is True


@_detached
def role_passwords_match(
    address: DbAddress,
    roles: Sequence[str],
    password: str,
    *,
    admin_role: str = SUPABASE_ADMIN,
    admin_password: str | None = None,
) -> RolePasswordCheck:
    """Probe each role in `roles` that can log in with `password`, one login each.

    An admin connection first reads `pg_roles`: roles without LOGIN (in real Supabase
    `anon`, `authenticated`, `service_role`) and missing roles are not probed and are
    listed in `not_probed` with the reason.

    Without `admin_password` the admin login is tried with `password` (after a rotation
    supabase_admin shares it). When that is refused, as when checking that an old
    password is dead, the roles are probed blind: a missing role reads False, and a
    NOLOGIN role is reported as not probed only if the password is right.

    Raises:
        DatabaseRefused: an explicit `admin_password` is refused.
        DatabaseError: the server cannot be asked.
    """
    wanted = list(dict.fromkeys(roles))
    can_login = _login_roles(address, wanted, admin_role, admin_password, password)
    results: dict[str, bool] = {}
    not_probed: dict[str, str] = {}
    for role in wanted:
        if can_login is not None and role not in can_login:
            not_probed[role] = "role does not exist"
            continue
        if can_login is not None and not can_login[role]:
            not_probed[role] = "role cannot log in (NOLOGIN)"
            continue
        accepted = _probe(address, role, password) if password else False
        if accepted is None:
            not_probed[role] = "role cannot log in (NOLOGIN)"
        else:
            results[role] = accepted
    return RolePasswordCheck(results, not_probed)


def _login_roles(
    address: DbAddress,
    roles: list[str],
    admin_role: str,
    admin_password: str | None,
    password: str,
) -> dict[str, bool] | None:
    """`rolcanlogin` of each existing role, or None when no admin login is possible."""
    try:
        conn = connect_as(address, admin_role, admin_password or password)
    except DatabaseRefused:
        if admin_password is not None:
            raise
        return None
    except ValueError:
        return None
    with conn, map_psycopg_errors("reading pg_roles", address):
        rows = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", [roles]
        ).fetchall()
    return {name: bool(login) for name, login in rows}


# --- the shared password --------------------------------------------------------------------


@_detached
def change_shared_password(
    address: DbAddress,
    admin_role: str,
    current: str,
    new: str,
    roles: Sequence[str],
    *,
    analytics_host: str,
    analytics_port: int,
    lock_timeout_s: float = 10,
) -> PasswordChange:
    """Give every existing role in `roles` the password `new`, in ONE transaction, with
    what `utils/db-passwd.sh` does besides (same database as the script: `_supabase`
    if it exists, else `address.dbname`):

    - `_supavisor` is dropped and recreated empty, owned by supabase_admin, so the
      pooler recreates its tenant with the new password on its next start;
    - `_analytics.source_backends` rows of type postgres get the new `config.url`.

    Either everything is committed or nothing is. Idempotent for the same `new`.
    `lock_timeout_s` bounds the wait for locks (a running pooler holds its tables).

    Raises:
        DatabaseRefused: `admin_role` cannot log in with `current`.
        DatabaseError: a statement failed; nothing was changed.
    """
    if not new:
        raise ValueError("the new password is empty")
    conn = connect_as(address, admin_role, current)
    try:
        with map_psycopg_errors(f'looking for database "{SUPABASE_METADATA_DB}"', address):
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [SUPABASE_METADATA_DB]
            ).fetchone()
        target = SUPABASE_METADATA_DB if found else address.dbname
        if target != address.dbname:
            conn.close()
            conn = connect_as(address, admin_role, current, dbname=target)
        analytics_url = analytics_backend_url(new, analytics_host, analytics_port)
        # The outer mapping covers BEGIN, COMMIT and a ROLLBACK that itself fails.
        with (
            map_psycopg_errors("the password change transaction", address),
            conn.transaction(),
        ):
            return _change_in_transaction(conn, address, new, roles, analytics_url, lock_timeout_s)
    finally:
        conn.close()


_Run = Callable[..., Any]


def _reset_pooler_schema(run: _Run) -> bool:
    """Drop and recreate `_supavisor` as db-passwd.sh does, so the pooler re-creates its
    tenant from the environment on its next start. False when there is no such schema."""
    found = run(
        f"looking for schema {POOLER_SCHEMA}",
        "SELECT 1 FROM pg_namespace WHERE nspname = %s",
        [POOLER_SCHEMA],
    ).fetchone()
    if not found:
        return False
    schema, owner = sql.Identifier(POOLER_SCHEMA), sql.Identifier(SUPABASE_ADMIN)
    run(f"DROP SCHEMA {POOLER_SCHEMA}", sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
    run(f"CREATE SCHEMA {POOLER_SCHEMA}", sql.SQL("CREATE SCHEMA {}").format(schema))
    run(
        f"ALTER SCHEMA {POOLER_SCHEMA} OWNER",
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, owner),
    )
    return True


@_detached
def reset_pooler_tenant(
    address: DbAddress, admin_role: str, password: str, *, lock_timeout_s: float = 10
) -> bool:
    """Reset the pooler's stored tenant alone (when VAULT_ENC_KEY changes, the stored
    tenant can no longer be decrypted). True when `_supavisor` existed and was reset."""
    conn = connect_as(address, admin_role, password)
    try:
        with map_psycopg_errors(f'looking for database "{SUPABASE_METADATA_DB}"', address):
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [SUPABASE_METADATA_DB]
            ).fetchone()
        if found and address.dbname != SUPABASE_METADATA_DB:
            conn.close()
            conn = connect_as(address, admin_role, password, dbname=SUPABASE_METADATA_DB)

        def run(
            action: str, query: sql.SQL | sql.Composed | str, params: Sequence[Any] = ()
        ) -> Any:
            with map_psycopg_errors(action, address):
                return conn.execute(query, params or None)

        with map_psycopg_errors("the pooler reset transaction", address), conn.transaction():
            run(
                "setting lock_timeout",
                "SELECT set_config('lock_timeout', %s, true)",
                [f"{max(1, round(lock_timeout_s * 1000))}ms"],
            )
            return _reset_pooler_schema(run)
    finally:
        conn.close()


def _change_in_transaction(
    conn: Connection,
    address: DbAddress,
    new: str,
    roles: Sequence[str],
    analytics_url: str,
    lock_timeout_s: float,
) -> PasswordChange:
    def run(action: str, query: sql.SQL | sql.Composed | str, params: Sequence[Any] = ()) -> Any:
        with map_psycopg_errors(action, address):
            return conn.execute(query, params or None)

    run(
        "setting lock_timeout",
        "SELECT set_config('lock_timeout', %s, true)",
        [f"{max(1, round(lock_timeout_s * 1000))}ms"],
    )
    # The analytics URL is a bound parameter; with log_statement on, the server would
    # still log parameter values. Only a superuser may turn that off (SUSET).
    run(
        "silencing parameter logging",
        "SELECT set_config('log_parameter_max_length', '0', true)"
        " WHERE current_setting('is_superuser') = 'on'",
    )
    wanted = list(dict.fromkeys(roles))
    existing = {
        name
        for (name,) in run(
            "reading pg_roles", "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [wanted]
        ).fetchall()
    }
    changed = tuple(role for role in wanted if role in existing)
    missing = tuple(role for role in wanted if role not in existing)

    for role in changed:
        verifier = conn.pgconn.encrypt_password(new.encode(), role.encode(), b"scram-sha-256")
        run(
            f'ALTER ROLE "{role}"',
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode("ascii"))
            ),
        )

    pooler_reset = _reset_pooler_schema(run)

    analytics_updated = 0
    has_backends = run(
        "looking for _analytics.source_backends",
        "SELECT to_regclass('_analytics.source_backends') IS NOT NULL",
    ).fetchone()
    if has_backends and has_backends[0]:
        cur = run(
            "UPDATE _analytics.source_backends",
            "UPDATE _analytics.source_backends"
            " SET config = jsonb_set(config, '{url}', to_jsonb(%s::text), false)"
            " WHERE type = 'postgres' AND config ? 'url'",
            [analytics_url],
        )
        analytics_updated = max(cur.rowcount, 0)

    return PasswordChange(
        changed=changed,
        missing=missing,
        pooler_reset=pooler_reset,
        analytics_updated=analytics_updated,
    )


# --- the socket path ------------------------------------------------------------------------


def analytics_backend_url(password: str, host: str, port: int) -> str:
    """The Logflare backend URL as upstream's db-passwd.sh writes it."""
    return f"postgresql://{SUPABASE_ADMIN}:{quote(password, safe='')}@{host}:{port}/postgres"


def shared_password_script(
    new: str, roles: Sequence[str], *, analytics_host: str, analytics_port: int
) -> str:
    """The shared-password change as one psql script, for the db container's local socket.

    Used when the database already refuses the password in `.env`, the case upstream's
    db-passwd.sh handles with `docker compose exec db psql`. Roles get SCRAM verifiers;
    only the analytics URL holds the plaintext, and the script turns statement logging
    off first. It travels on psql's stdin, never in argv.
    """
    # Every interpolated piece is a validated role name, a constant, a verifier
    # (base64 and `$:`) or a literal quoted by _sql_literal: no injection path.
    pooler, owner = POOLER_SCHEMA, SUPABASE_ADMIN
    url = _sql_literal(analytics_backend_url(new, analytics_host, analytics_port))
    lines = [
        "\\set ON_ERROR_STOP on",
        "SET log_statement = 'none';",
        "SET log_min_error_statement = 'panic';",
        "BEGIN;",
    ]
    for role in dict.fromkeys(roles):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", role):
            raise ValueError(f"unexpected role name {role!r}")
        verifier = _sql_literal(scram_sha256_verifier(new))
        lines.append(
            f"DO $r$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "  # noqa: S608
            f'THEN ALTER ROLE "{role}" PASSWORD {verifier}; END IF; END $r$;'
        )
    lines += [
        f"DO $r$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{pooler}') "  # noqa: S608
        f"THEN DROP SCHEMA {pooler} CASCADE; CREATE SCHEMA {pooler}; "
        f"ALTER SCHEMA {pooler} OWNER TO {owner}; END IF; END $r$;",
        "DO $r$ BEGIN IF to_regclass('_analytics.source_backends') IS NOT NULL THEN "  # noqa: S608
        f"UPDATE _analytics.source_backends SET config = jsonb_set(config, '{{url}}', "
        f"to_jsonb({url}::text), false) WHERE type = 'postgres' AND config ? 'url'; "
        "END IF; END $r$;",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def _sql_literal(text: str) -> str:
    """A standard-conforming SQL string literal (no backslash escapes)."""
    return "'" + text.replace("'", "''") + "'"
