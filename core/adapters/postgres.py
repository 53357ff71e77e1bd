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
    evidence = password_evidence(
        address, SHARED_PASSWORD_ROLES, new, admin_role="supabase_admin", admin_password=new
    )  # {"anon": RoleEvidence("anon", True, "stored verifier"), ...}
"""

from __future__ import annotations

import ctypes
import functools
import re
import select
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from core.errors import DatabaseError, DatabaseRefused
from core.roles import SHARED_PASSWORD_ROLES
from core.scram import scram_sha256_verifier, verifier_matches

__all__ = [
    "SHARED_PASSWORD_ROLES",
    "DbAddress",
    "PasswordChange",
    "RoleEvidence",
    "SessionsRevoked",
    "accepts_password",
    "analytics_users_holding",
    "change_shared_password",
    "connect_as",
    "map_psycopg_errors",
    "password_evidence",
    "replace_analytics_user_key",
    "reset_pooler_tenant",
    "revoke_sessions",
    "sessions_before",
    "shared_password_script",
    "wait_until_accepting",
]

SUPABASE_METADATA_DB = "_supabase"
"""Where Supavisor (`_supavisor`) and Logflare (`_analytics`) keep their state."""

POOLER_SCHEMA = "_supavisor"
SUPABASE_ADMIN = "supabase_admin"
"""Owner of the recreated pooler schema, and the user in the analytics backend URL."""

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


# --- errors ---------------------------------------------------------------------------------

_NOT_PERMITTED = "role may not log in"

# A failed login has no result, so psycopg gives no SQLSTATE (`exc.sqlstate` is None) and
# the server's message is in its own language (lc_messages). `_connect` asks libpq for
# verbose errors, which put the SQLSTATE in front of the message: that code is what
# classifies a refusal, whatever the server's language.
_SQLSTATE_REASONS: dict[str, str] = {
    "28P01": "password refused",
    "28000": "login rejected",
    "3D000": "database does not exist",
    "53300": "too many connections",
    "57P03": "server not ready",
    "57P01": "server shutting down",
}
_VERBOSE_SQLSTATE = re.compile(r":  (?=[A-Z]*[0-9])([0-9A-Z]{5}): ")
"""libpq's verbose form: "<severity>:  <SQLSTATE>: <message>" (every SQLSTATE has a digit)."""
_NOLOGIN_HINT = re.compile(r"is not permitted to log in")

# Failures libpq finds on this side carry no SQLSTATE; their text is libpq's own (English in
# the bundled library), not the server's.
_CLIENT_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Connection refused"), "connection refused"),
    (re.compile(r"timeout expired|timed out"), "timed out"),
    (re.compile(r"could not translate host name"), "unknown host"),
    (re.compile(r"No route to host|Network is unreachable"), "host unreachable"),
    (re.compile(r"server closed the connection unexpectedly"), "connection closed by the server"),
)


@dataclass(frozen=True)
class _LoginFailure:
    """A failed login, classified. Holds no text from the server or libpq."""

    sqlstate: str
    reason: str

    @property
    def refused(self) -> bool:
        """The server answered and refused these credentials (SQLSTATE class 28)."""
        return self.sqlstate.startswith("28")

    @property
    def not_ready(self) -> bool:
        """The server is not accepting logins yet (or any more): worth waiting for."""
        return self.sqlstate in ("57P03", "57P01") or self.reason in (
            "connection refused",
            "connection closed by the server",
        )

    def error(self, address: DbAddress, role: str, dbname: str) -> DatabaseRefused | DatabaseError:
        if self.refused:
            verb = "password" if self.sqlstate == "28P01" else "login"
            return DatabaseRefused(
                f'the database refuses the {verb} for role "{role}" at {address}'
                f" (SQLSTATE {self.sqlstate})"
            )
        state = f", SQLSTATE {self.sqlstate}" if self.sqlstate else ""
        return DatabaseError(
            f'cannot connect to {address} as role "{role}", database "{dbname}": '
            f"{self.reason}{state}",
            retryable=self.not_ready,
        )


def _classify(message: str) -> _LoginFailure:
    found = _VERBOSE_SQLSTATE.search(message)
    if found:
        sqlstate = found.group(1)
        return _LoginFailure(sqlstate, _SQLSTATE_REASONS.get(sqlstate, "refused by the server"))
    for pattern, reason in _CLIENT_FAILURES:
        if pattern.search(message):
            return _LoginFailure("", reason)
    return _LoginFailure("", "connection failed")


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


@functools.cache
def _set_error_verbosity() -> Callable[[int], None] | None:
    """libpq's PQsetErrorVerbosity for the libpq psycopg loaded, or None where it cannot be
    found (then failed logins are classified from libpq's client-side messages only).

    psycopg does not wrap it; the library is found in this process's memory map, so it is
    the very copy psycopg uses (bundled with psycopg[binary], or the system's).
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "/libpq" in line})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            function = lib.PQsetErrorVerbosity
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_void_p, ctypes.c_int]
        function.restype = ctypes.c_int
        return lambda pointer: function(pointer, _PQERRORS_VERBOSE) and None
    return None


_PQERRORS_VERBOSE = 2


def _connect(conninfo: str, timeout_s: float) -> Connection | _LoginFailure:
    """Connect with libpq's verbose errors, polling to a deadline (libpq's connect_timeout
    applies only to blocking connects)."""
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    connected = False
    try:
        setter = _set_error_verbosity()
        pointer = getattr(pgconn, "pgconn_ptr", None)  # both psycopg implementations have it
        if setter is not None and pointer is not None:
            setter(pointer)
        if pgconn.status == pq.ConnStatus.BAD:
            return _classify(pgconn.get_error_message())
        deadline = time.monotonic() + timeout_s
        status = pq.PollingStatus.WRITING
        while status not in (pq.PollingStatus.OK, pq.PollingStatus.FAILED):
            remaining = deadline - time.monotonic()
            want_read = status is pq.PollingStatus.READING
            ready = remaining > 0 and select.select(
                [pgconn.socket] if want_read else [],
                [] if want_read else [pgconn.socket],
                [],
                remaining,
            ) != ([], [], [])
            if not ready:
                return _LoginFailure("", "timed out")
            status = pq.PollingStatus(pgconn.connect_poll())
        if status is pq.PollingStatus.FAILED:
            return _classify(pgconn.get_error_message())
        conn: Connection = psycopg.Connection(pgconn)
        connected = True
    finally:
        if not connected:
            pgconn.finish()
    conn.autocommit = True
    return conn


def _login(
    address: DbAddress, role: str, password: str, dbname: str, timeout_s: float
) -> Connection | _LoginFailure:
    # client_encoding: on a SQL_ASCII database psycopg would otherwise return names as
    # bytes, and every role would look missing.
    conninfo = make_conninfo(
        host=address.host,
        port=address.port,
        dbname=dbname,
        user=role,
        password=password,
        application_name="rotator",
        client_encoding="UTF8",
    )
    try:
        return _connect(conninfo, timeout_s)
    except psycopg.Error as exc:
        # Raised, not returned: exc (and exc.pgconn, which holds the password) dies here.
        return _classify(str(exc))
    except OSError as exc:
        return _LoginFailure("", f"connection failed ({type(exc).__name__})")


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
        DatabaseRefused: the server refused the login (SQLSTATE class 28).
        DatabaseError: anything else (unreachable, timeout, no such database, starting
            up); `retryable` is set when waiting may help.
        ValueError: an empty password (libpq would fall back to PGPASSWORD or .pgpass).
    """
    if not password:
        raise ValueError(f'no password given for role "{role}"')
    target = dbname or address.dbname
    result = _login(address, role, password, target, timeout_s)
    if isinstance(result, _LoginFailure):
        raise result.error(address, role, target)
    return result


def accepts_password(address: DbAddress, role: str, password: str) -> bool:
    """Whether `role` can log in with `password` over TCP.

    Raises `DatabaseError` when the answer is unknown (server unreachable, starting up...).
    """
    if not password:
        return False
    result = _login(address, role, password, address.dbname, 5)
    if not isinstance(result, _LoginFailure):
        result.close()
        return True
    if result.refused:
        return False
    raise result.error(address, role, address.dbname)


def wait_until_accepting(address: DbAddress, role: str, password: str, *, timeout_s: float) -> None:
    """Wait while the server is not accepting logins yet (starting up, refusing TCP).

    Returns once a login gets an answer from the server, accepted or refused; raises the
    last DatabaseError when `timeout_s` passes first, or at once for other failures.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            accepts_password(address, role, password)
            return
        except DatabaseError as exc:
            if not exc.retryable or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


@dataclass(frozen=True)
class RoleEvidence:
    """Whether one role takes a password, and how that was found out."""

    role: str
    accepts: bool | None
    """None: it could not be told (the role is missing, or cannot log in and its stored
    verifier is unreadable)."""
    how: str
    """"login", "stored verifier", or why it could not be told."""


@_detached
def password_evidence(
    address: DbAddress,
    roles: Sequence[str],
    password: str,
    *,
    admin_role: str = SUPABASE_ADMIN,
    admin_password: str,
) -> dict[str, RoleEvidence]:
    """For each of `roles`: does it take `password`?

    The admin login (which must work) reads the catalogue first. Roles that can log in
    are asked by logging in; roles that cannot (anon, authenticated, service_role in real
    Supabase) by checking `password` against the verifier stored in pg_authid, which a
    superuser can read. A missing role takes no password at all: `accepts` is None, and
    callers must not count it as either answer.

    Raises:
        DatabaseRefused: the admin login is refused.
        DatabaseError: the server cannot be asked.
    """
    wanted = list(dict.fromkeys(roles))
    catalogue = _role_catalogue(address, wanted, admin_role, admin_password)
    evidence: dict[str, RoleEvidence] = {}
    for role in wanted:
        if role not in catalogue:
            evidence[role] = RoleEvidence(role, None, "role does not exist")
            continue
        can_login, stored = catalogue[role]
        if can_login:
            evidence[role] = RoleEvidence(role, accepts_password(address, role, password), "login")
        elif stored is not None:
            matches = verifier_matches(password, stored, role)
            evidence[role] = RoleEvidence(role, matches, "stored verifier")
        else:
            evidence[role] = RoleEvidence(
                role, None, "cannot log in (NOLOGIN) and its stored verifier is unreadable"
            )
    return evidence


def _role_catalogue(
    address: DbAddress, roles: list[str], admin_role: str, admin_password: str
) -> dict[str, tuple[bool, str | None]]:
    """role -> (can it log in, its stored password verifier or None if unreadable/none)."""
    with (
        connect_as(address, admin_role, admin_password) as conn,
        map_psycopg_errors("reading the role catalogue", address),
    ):
        superuser = conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone()
        if superuser and superuser[0]:
            rows = conn.execute(
                "SELECT rolname, rolcanlogin, rolpassword FROM pg_catalog.pg_authid"
                " WHERE rolname = ANY(%s)",
                [roles],
            ).fetchall()
            return {name: (bool(login), stored) for name, login, stored in rows}
        rows = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)",
            [roles],
        ).fetchall()
        return {name: (bool(login), None) for name, login in rows}


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
    reset_pooler: bool = True,
    lock_timeout_s: float = 10,
) -> PasswordChange:
    """Give every existing role in `roles` the password `new`, in ONE transaction, with
    what `utils/db-passwd.sh` does besides (same database as the script: `_supabase`
    if it exists, else `address.dbname`):

    - with `reset_pooler`, `_supavisor` is dropped and recreated empty, owned by
      supabase_admin, so the pooler recreates its tenant with the new password on its
      next start (the caller passes False when the pooler's API updated it instead);
    - `_analytics.source_backends` rows of type postgres get the new `config.url`.

    Either everything is committed or nothing is. Idempotent for the same `new`.
    `lock_timeout_s` bounds the wait for locks (a running pooler holds its tables).

    Raises:
        DatabaseRefused: `admin_role` cannot log in with `current`.
        DatabaseError: a statement failed; nothing was changed.
    """
    if not new:
        raise ValueError("the new password is empty")
    conn = _metadata_connection(address, admin_role, current)
    try:
        analytics_url = analytics_backend_url(new, analytics_host, analytics_port)
        # The outer mapping covers BEGIN, COMMIT and a ROLLBACK that itself fails.
        with (
            map_psycopg_errors("the password change transaction", address),
            conn.transaction(),
        ):
            return _change_in_transaction(
                conn, address, new, roles, analytics_url, lock_timeout_s, reset_pooler
            )
    finally:
        conn.close()


def _metadata_connection(address: DbAddress, role: str, password: str) -> Connection:
    """A connection to `_supabase` (Supavisor's and Logflare's database) if it exists, else
    to `address.dbname`, as upstream's db-passwd.sh chooses."""
    conn = connect_as(address, role, password)
    with map_psycopg_errors(f'looking for database "{SUPABASE_METADATA_DB}"', address):
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", [SUPABASE_METADATA_DB]
        ).fetchone()
    if not found or address.dbname == SUPABASE_METADATA_DB:
        return conn
    conn.close()
    return connect_as(address, role, password, dbname=SUPABASE_METADATA_DB)


@contextmanager
def _transaction(
    conn: Connection, address: DbAddress, what: str, lock_timeout_s: float = 10
) -> Iterator[_Run]:
    """One transaction on `conn`, closed afterwards; yields `run(action, query, params)`
    whose errors name `action`, never the statement."""

    def run(action: str, query: sql.SQL | sql.Composed | str, params: Sequence[Any] = ()) -> Any:
        with map_psycopg_errors(action, address):
            return conn.execute(query, params or None)

    try:
        with map_psycopg_errors(what, address), conn.transaction():
            run(
                "setting lock_timeout",
                "SELECT set_config('lock_timeout', %s, true)",
                [f"{max(1, round(lock_timeout_s * 1000))}ms"],
            )
            yield run
    finally:
        conn.close()


_Run = Callable[..., Any]


def _reset_pooler_schema(run: _Run) -> bool:
    """Drop and recreate `_supavisor` as db-passwd.sh does, so the pooler re-creates its
    tenant from the environment on its next start. False when there is no such schema."""
    found = run(
        f"looking for schema {POOLER_SCHEMA}",
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s",
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
    conn = _metadata_connection(address, admin_role, password)
    with _transaction(conn, address, "the pooler reset transaction", lock_timeout_s) as run:
        return _reset_pooler_schema(run)


@dataclass(frozen=True)
class SessionsRevoked:
    sessions: int
    refresh_tokens: int


@_detached
def revoke_sessions(address: DbAddress, admin_role: str, password: str) -> SessionsRevoked | None:
    """Delete every Auth session and refresh token (in `address.dbname`, where GoTrue keeps
    the auth schema), in one transaction. None when there is no auth schema."""
    conn = connect_as(address, admin_role, password)
    with _transaction(conn, address, "the session revocation transaction") as run:
        found = run(
            "looking for auth.sessions",
            "SELECT to_regclass('auth.sessions') IS NOT NULL,"
            " to_regclass('auth.refresh_tokens') IS NOT NULL",
        ).fetchone()
        if not found or not all(found):
            return None
        tokens = run("DELETE FROM auth.refresh_tokens", "DELETE FROM auth.refresh_tokens").rowcount
        sessions = run("DELETE FROM auth.sessions", "DELETE FROM auth.sessions").rowcount
        return SessionsRevoked(max(sessions, 0), max(tokens, 0))


@_detached
def sessions_before(
    address: DbAddress, admin_role: str, password: str, moment: float
) -> SessionsRevoked | None:
    """Sessions and refresh tokens created before `moment` (a UNIX time) still in the
    database: after a revocation, none. None when there is no auth schema."""
    conn = connect_as(address, admin_role, password)
    with _transaction(conn, address, "counting sessions") as run:
        found = run(
            "looking for auth.sessions",
            "SELECT to_regclass('auth.sessions') IS NOT NULL,"
            " to_regclass('auth.refresh_tokens') IS NOT NULL",
        ).fetchone()
        if not found or not all(found):
            return None
        row = run(
            "counting sessions",
            "SELECT (SELECT count(*) FROM auth.sessions WHERE created_at < to_timestamp(%s)),"
            " (SELECT count(*) FROM auth.refresh_tokens WHERE created_at < to_timestamp(%s))",
            [moment, moment],
        ).fetchone()
        return SessionsRevoked(int(row[0]), int(row[1])) if row else None


def _has_analytics_users(run: _Run) -> bool:
    found = run(
        "looking for _analytics.users", "SELECT to_regclass('_analytics.users') IS NOT NULL"
    ).fetchone()
    return bool(found and found[0])


@_detached
def replace_analytics_user_key(
    address: DbAddress, admin_role: str, password: str, old: str, new: str
) -> int | None:
    """Logflare keeps the first public token as its user's legacy API key (and accepts it):
    give every user holding `old` the key `new`. The tokens travel as bound parameters.
    Returns the rows changed, or None when there is no `_analytics.users` table."""
    conn = _metadata_connection(address, admin_role, password)
    with _transaction(conn, address, "the analytics key transaction") as run:
        _silence_parameter_logging(run)
        if not _has_analytics_users(run):
            return None
        cursor = run(
            "UPDATE _analytics.users",
            "UPDATE _analytics.users SET api_key = %s WHERE api_key = %s",
            [new, old],
        )
        return max(int(cursor.rowcount), 0)


@_detached
def analytics_users_holding(
    address: DbAddress, admin_role: str, password: str, token: str
) -> int | None:
    """How many Logflare users still have `token` as their API key (None: no such table)."""
    conn = _metadata_connection(address, admin_role, password)
    with _transaction(conn, address, "reading _analytics.users") as run:
        _silence_parameter_logging(run)
        if not _has_analytics_users(run):
            return None
        row = run(
            "counting _analytics.users",
            "SELECT count(*) FROM _analytics.users WHERE api_key = %s",
            [token],
        ).fetchone()
        return int(row[0]) if row else 0


def _silence_parameter_logging(run: _Run) -> None:
    # Values travel as bound parameters; with log_statement on, the server would still log
    # them. Only a superuser may turn that off (SUSET).
    run(
        "silencing parameter logging",
        "SELECT set_config('log_parameter_max_length', '0', true)"
        " WHERE current_setting('is_superuser') = 'on'",
    )


def _change_in_transaction(
    conn: Connection,
    address: DbAddress,
    new: str,
    roles: Sequence[str],
    analytics_url: str,
    lock_timeout_s: float,
    reset_pooler: bool,
) -> PasswordChange:
    def run(action: str, query: sql.SQL | sql.Composed | str, params: Sequence[Any] = ()) -> Any:
        with map_psycopg_errors(action, address):
            return conn.execute(query, params or None)

    run(
        "setting lock_timeout",
        "SELECT set_config('lock_timeout', %s, true)",
        [f"{max(1, round(lock_timeout_s * 1000))}ms"],
    )
    _silence_parameter_logging(run)  # the analytics URL is a bound parameter
    wanted = list(dict.fromkeys(roles))
    existing = {
        name
        for (name,) in run(
            "reading pg_roles",
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)",
            [wanted],
        ).fetchall()
    }
    changed = tuple(role for role in wanted if role in existing)
    missing = tuple(role for role in wanted if role not in existing)
    # The catalogue must show the role this session runs as: if it does not, names are not
    # being read right (the wrong database, an encoding surprise), and going on would
    # change nothing while reporting success.
    row = run("reading current_user", "SELECT current_user::text").fetchone()
    me = row[0] if row else None
    if not isinstance(me, str) or (me in wanted and me not in existing):
        raise DatabaseError(
            f'pg_roles does not list role "{me}", which this session is logged in as: the '
            "catalogue cannot be read reliably here; nothing was changed"
        )
    if not changed:
        raise DatabaseError(
            f"none of the {len(wanted)} roles that share the password exists in this "
            "database; nothing was changed"
        )

    for role in changed:
        verifier = conn.pgconn.encrypt_password(new.encode(), role.encode(), b"scram-sha-256")
        run(
            f'ALTER ROLE "{role}"',
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode("ascii"))
            ),
        )

    pooler_reset = _reset_pooler_schema(run) if reset_pooler else False

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
    db-passwd.sh handles with `docker compose exec db psql`. Roles get SCRAM verifiers.
    The one value that holds the plaintext, the analytics backend URL, is not statement
    text: it travels as COPY data into a temporary table, so neither pg_stat_statements
    nor a server log of statements ever holds it. The script travels on psql's stdin,
    never in argv. It fails (and changes nothing) when none of the roles exists.
    """
    # Every interpolated piece is a validated role name, a constant or a verifier
    # (base64 and `$:`) quoted by _sql_literal: no injection path.
    pooler, owner = POOLER_SCHEMA, SUPABASE_ADMIN
    wanted = list(dict.fromkeys(roles))
    for role in wanted:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", role):
            raise ValueError(f"unexpected role name {role!r}")
    names = ", ".join(_sql_literal(role) for role in wanted)
    lines = [
        "\\set ON_ERROR_STOP on",
        "SET log_statement = 'none';",
        "SET log_min_error_statement = 'panic';",
        "BEGIN;",
        "DO $r$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles "  # noqa: S608
        f"WHERE rolname IN ({names})) THEN RAISE EXCEPTION "
        "'none of the roles that share the password exists'; END IF; END $r$;",
    ]
    for role in wanted:
        verifier = _sql_literal(scram_sha256_verifier(new))
        lines.append(
            "DO $r$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles "  # noqa: S608
            f"WHERE rolname = '{role}') THEN "
            f'ALTER ROLE "{role}" PASSWORD {verifier}; END IF; END $r$;'
        )
    lines += [
        "DO $r$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "  # noqa: S608
        f"WHERE nspname = '{pooler}') THEN DROP SCHEMA {pooler} CASCADE; "
        f"CREATE SCHEMA {pooler}; ALTER SCHEMA {pooler} OWNER TO {owner}; END IF; END $r$;",
        "CREATE TEMP TABLE rotator_backend_url (url text) ON COMMIT DROP;",
        "COPY rotator_backend_url FROM STDIN;",
        _copy_text(analytics_backend_url(new, analytics_host, analytics_port)),
        "\\.",
        "DO $r$ BEGIN IF to_regclass('_analytics.source_backends') IS NOT NULL THEN "
        "UPDATE _analytics.source_backends SET config = jsonb_set(config, '{url}', "
        "to_jsonb((SELECT url FROM rotator_backend_url)), false) "
        "WHERE type = 'postgres' AND config ? 'url'; END IF; END $r$;",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def _copy_text(value: str) -> str:
    """One field of COPY's text format: backslash, tab, newline and CR escaped."""
    escapes = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
    return "".join(escapes.get(char, char) for char in value)


def _sql_literal(text: str) -> str:
    """A standard-conforming SQL string literal (no backslash escapes)."""
    return "'" + text.replace("'", "''") + "'"
