"""The Postgres adapter against a real PostgreSQL 15 with scram-sha-256 on TCP.

Passwords are compared inside the database or with `_assert_absent`, so a failing test
never prints one.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from core.adapters import postgres as postgres_adapter
from core.adapters.postgres import (
    SHARED_PASSWORD_ROLES,
    DbAddress,
    PasswordChange,
    RoleEvidence,
    accepts_password,
    analytics_users_holding,
    change_shared_password,
    connect_as,
    password_evidence,
    replace_analytics_user_key,
    revoke_sessions,
    sessions_before,
    wait_until_accepting,
)
from core.errors import DatabaseError, DatabaseRefused
from tests.integration.conftest import SupabaseDb

pytestmark = pytest.mark.postgres

NOLOGIN_IN_REAL_SUPABASE = ("anon", "authenticated", "service_role")


def _change(
    db: SupabaseDb,
    new: str,
    *,
    admin_role: str = "supabase_admin",
    current: str | None = None,
    roles: tuple[str, ...] = SHARED_PASSWORD_ROLES,
) -> PasswordChange:
    return change_shared_password(
        db.address,
        admin_role,
        db.password if current is None else current,
        new,
        roles,
        analytics_host="db",
        analytics_port=5432,
    )


def _assert_absent(secret: str, text: str, where: str) -> None:
    """Like `assert secret not in text`, without pytest printing the secret on failure."""
    if secret in text:
        pytest.fail(f"a password appears in {where}", pytrace=False)


def _assert_error_hides(error: BaseException, *passwords: str) -> None:
    rendered = "".join(traceback.format_exception(error))
    chain = []
    link: BaseException | None = error
    while link is not None:
        chain.append(f"{link!s} {link!r} {vars(link)!r}")
        link = link.__cause__ or link.__context__
    for password in passwords:
        _assert_absent(password, str(error), "str(error)")
        _assert_absent(password, repr(error), "repr(error)")
        _assert_absent(password, rendered, "the printed traceback")
        _assert_absent(password, " ".join(chain), "the exception chain")


def _roles_on_password(db: SupabaseDb, password: str) -> dict[str, bool]:
    return {role: accepts_password(db.address, role, password) for role in SHARED_PASSWORD_ROLES}


def _pooler_tables(db: SupabaseDb) -> list[str]:
    with db.admin_connect("_supabase") as conn:
        return [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = '_supavisor'"
            )
        ]


def _analytics_urls_hold(db: SupabaseDb, password: str) -> dict[str, bool]:
    """Per backend type: does config.url equal the URL db-passwd.sh would write?"""
    expected = f"postgresql://supabase_admin:{password}@db:5432/postgres"
    with db.admin_connect("_supabase") as conn:
        rows = conn.execute(
            "SELECT type, config->>'url' = %s FROM _analytics.source_backends", [expected]
        ).fetchall()
    return dict(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- change_shared_password -------------------------------------------------------------------


def test_every_role_takes_the_new_password_and_refuses_the_old(supabase_db: SupabaseDb) -> None:
    new = secrets.token_hex(16)

    change = _change(supabase_db, new)

    assert change.changed == SHARED_PASSWORD_ROLES
    assert change.missing == ()
    assert all(_roles_on_password(supabase_db, new).values())
    assert not any(_roles_on_password(supabase_db, supabase_db.password).values())


def test_missing_roles_are_skipped_and_reported(supabase_db: SupabaseDb) -> None:
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP ROLE supabase_functions_admin")
    new = secrets.token_hex(16)

    change = _change(supabase_db, new, roles=(*SHARED_PASSWORD_ROLES, "no_such_role"))

    assert change.missing == ("supabase_functions_admin", "no_such_role")
    assert "supabase_functions_admin" not in change.changed
    assert len(change.changed) == 11
    assert accepts_password(supabase_db.address, "supabase_storage_admin", new)


def test_the_read_only_role_keeps_having_no_password(supabase_db: SupabaseDb) -> None:
    _change(supabase_db, secrets.token_hex(16))

    with supabase_db.admin_connect() as admin:
        row = admin.execute(
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'supabase_read_only_user'"
        ).fetchone()
    assert row == (True,)


def test_pooler_schema_is_recreated_empty_and_owned_by_supabase_admin(
    supabase_db: SupabaseDb,
) -> None:
    assert _pooler_tables(supabase_db) == ["tenants"]

    change = _change(supabase_db, secrets.token_hex(16))

    assert change.pooler_reset is True
    assert _pooler_tables(supabase_db) == []
    with supabase_db.admin_connect("_supabase") as conn:
        owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = '_supavisor'"
        ).fetchone()
    assert owner == ("supabase_admin",)


def test_analytics_backend_url_gets_the_new_password(supabase_db: SupabaseDb) -> None:
    assert _analytics_urls_hold(supabase_db, supabase_db.password) == {
        "postgres": True,
        "bigquery": False,
    }
    new = secrets.token_hex(16)

    change = _change(supabase_db, new)

    assert change.analytics_updated == 1
    assert _analytics_urls_hold(supabase_db, new) == {"postgres": True, "bigquery": False}
    with supabase_db.admin_connect("_supabase") as conn:
        other = conn.execute(
            "SELECT config->>'url' FROM _analytics.source_backends WHERE type = 'bigquery'"
        ).fetchone()
    assert other == ("https://bigquery.example/untouched",)


def test_metadata_steps_are_skipped_when_their_tables_are_absent(supabase_db: SupabaseDb) -> None:
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP DATABASE _supabase WITH (FORCE)")
    new = secrets.token_hex(16)

    change = _change(supabase_db, new)

    assert change.pooler_reset is False
    assert change.analytics_updated == 0
    assert all(_roles_on_password(supabase_db, new).values())


def test_running_it_twice_with_the_same_password_is_fine(supabase_db: SupabaseDb) -> None:
    new = secrets.token_hex(16)
    _change(supabase_db, new)

    again = _change(supabase_db, new, current=new)

    assert again.changed == SHARED_PASSWORD_ROLES
    assert again.pooler_reset is True
    assert again.analytics_updated == 1
    assert all(_roles_on_password(supabase_db, new).values())
    assert _analytics_urls_hold(supabase_db, new)["postgres"]


def test_a_failing_alter_role_midway_leaves_every_role_on_the_old_password(
    supabase_db: SupabaseDb,
) -> None:
    # Current Supabase demotes `postgres` (CREATEROLE, REPLICATION, BYPASSRLS, no
    # SUPERUSER). Under PostgreSQL 15 rules CREATEROLE sets the passwords of the five
    # roles before it, then only a superuser may alter a REPLICATION/BYPASSRLS role
    # such as postgres itself. The whole transaction must roll back.
    new = secrets.token_hex(16)

    with pytest.raises(DatabaseError) as failed:
        _change(supabase_db, new, admin_role="postgres")

    assert 'ALTER ROLE "postgres"' in str(failed.value)
    assert "42501" in str(failed.value)
    _assert_error_hides(failed.value, new, supabase_db.password)
    assert all(_roles_on_password(supabase_db, supabase_db.password).values())
    assert not any(_roles_on_password(supabase_db, new).values())
    assert _pooler_tables(supabase_db) == ["tenants"]
    assert _analytics_urls_hold(supabase_db, supabase_db.password)["postgres"]


def test_a_failure_in_the_last_statement_rolls_back_every_password(
    supabase_db: SupabaseDb,
) -> None:
    # A trigger that refuses the analytics update: by then every ALTER ROLE and the
    # pooler schema reset have run. Its message quotes the new row, password included.
    with supabase_db.admin_connect("_supabase") as conn:
        conn.execute(
            "CREATE FUNCTION _analytics.refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'refusing %', NEW.config; END$$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON _analytics.source_backends"
            " FOR EACH ROW EXECUTE FUNCTION _analytics.refuse()"
        )
    new = secrets.token_hex(16)

    with pytest.raises(DatabaseError) as failed:
        _change(supabase_db, new)

    assert "UPDATE _analytics.source_backends" in str(failed.value)
    assert "P0001" in str(failed.value)
    _assert_error_hides(failed.value, new)
    assert failed.value.__context__ is None
    assert all(_roles_on_password(supabase_db, supabase_db.password).values())
    assert not any(_roles_on_password(supabase_db, new).values())
    assert _pooler_tables(supabase_db) == ["tenants"]


def test_a_wrong_admin_password_is_refused_without_showing_it(supabase_db: SupabaseDb) -> None:
    wrong = secrets.token_hex(16)

    with pytest.raises(DatabaseRefused) as refused:
        _change(supabase_db, secrets.token_hex(16), current=wrong)

    message = str(refused.value)
    assert 'role "supabase_admin"' in message
    assert f"{supabase_db.host}:{supabase_db.port}" in message
    assert "SQLSTATE 28P01" in message
    _assert_error_hides(refused.value, wrong)
    # psycopg's error carries the conninfo, password included: it must not ride along.
    assert refused.value.__cause__ is None
    assert refused.value.__context__ is None


def test_statements_sent_to_the_server_never_hold_the_password(supabase_db: SupabaseDb) -> None:
    log = Path(os.environ.get("ROTATOR_TEST_STATE", "/tmp/rotator-test")) / "pglog/postgres.log"
    if not log.is_file():
        pytest.skip(f"server log {log} not found (scripts/lib.sh start_postgres writes it)")
    with supabase_db.admin_connect() as admin:
        admin.execute("ALTER ROLE supabase_admin SET log_statement = 'all'")
    start = log.stat().st_size
    new = secrets.token_hex(16)

    _change(supabase_db, new)

    text = ""
    for _ in range(50):  # the server writes its log asynchronously to us
        text = log.read_bytes()[start:].decode(errors="replace")
        if "source_backends" in text:
            break
        time.sleep(0.1)
    assert 'ALTER ROLE "anon" PASSWORD \'SCRAM-SHA-256$' in text
    assert "UPDATE _analytics.source_backends" in text
    _assert_absent(new, text, "the server log")


# --- logins and probes ------------------------------------------------------------------------


def test_accepts_password_tells_right_from_wrong(supabase_db: SupabaseDb) -> None:
    assert accepts_password(supabase_db.address, "authenticator", supabase_db.password)
    assert not accepts_password(supabase_db.address, "authenticator", secrets.token_hex(16))
    assert not accepts_password(supabase_db.address, "no_such_role", supabase_db.password)
    assert not accepts_password(supabase_db.address, "authenticator", "")


def test_connect_as_gives_a_working_connection(supabase_db: SupabaseDb) -> None:
    with connect_as(
        supabase_db.address, "supabase_auth_admin", supabase_db.password, dbname="_supabase"
    ) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("supabase_auth_admin", "_supabase")


@pytest.mark.usefixtures("supabase_db")
def test_an_unreachable_port_is_a_database_error_not_a_refusal() -> None:
    address = DbAddress("127.0.0.1", _free_port(), "postgres")
    password = secrets.token_hex(16)

    with pytest.raises(DatabaseError) as failed:
        accepts_password(address, "supabase_admin", password)

    assert not isinstance(failed.value, DatabaseRefused)
    assert "connection refused" in str(failed.value)
    assert failed.value.__context__ is None
    _assert_error_hides(failed.value, password)


def test_a_missing_database_is_a_database_error(supabase_db: SupabaseDb) -> None:
    with pytest.raises(DatabaseError) as failed:
        connect_as(supabase_db.address, "postgres", supabase_db.password, dbname="no_such_db")

    assert "3D000" in str(failed.value)


def test_evidence_logs_in_where_it_can_and_reads_verifiers_where_it_cannot(
    supabase_db: SupabaseDb,
) -> None:
    with supabase_db.admin_connect() as admin:
        for role in NOLOGIN_IN_REAL_SUPABASE:
            admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
    roles = (*SHARED_PASSWORD_ROLES, "no_such_role")

    right = password_evidence(
        supabase_db.address, roles, supabase_db.password, admin_password=supabase_db.password
    )
    wrong = password_evidence(
        supabase_db.address, roles, secrets.token_hex(16), admin_password=supabase_db.password
    )

    for role in SHARED_PASSWORD_ROLES:
        how = "stored verifier" if role in NOLOGIN_IN_REAL_SUPABASE else "login"
        assert right[role] == RoleEvidence(role, True, how)
        assert wrong[role] == RoleEvidence(role, False, how)
    assert right["no_such_role"] == RoleEvidence("no_such_role", None, "role does not exist")


def test_evidence_needs_a_working_admin_login(supabase_db: SupabaseDb) -> None:
    with pytest.raises(DatabaseRefused):
        password_evidence(
            supabase_db.address,
            SHARED_PASSWORD_ROLES,
            supabase_db.password,
            admin_password=secrets.token_hex(16),
        )


def test_without_superuser_a_nologin_role_is_named_not_guessed(supabase_db: SupabaseDb) -> None:
    with supabase_db.admin_connect() as admin:
        admin.execute("ALTER ROLE anon NOLOGIN")
    # postgres is no superuser here, as in current Supabase images: pg_authid is closed.
    evidence = password_evidence(
        supabase_db.address,
        ("anon", "authenticator"),
        supabase_db.password,
        admin_role="postgres",
        admin_password=supabase_db.password,
    )

    assert evidence["authenticator"].accepts is True
    assert evidence["anon"].accepts is None
    assert "unreadable" in evidence["anon"].how


def test_a_sql_ascii_database_reads_role_names_as_text(supabase_db: SupabaseDb) -> None:
    """psycopg returns names as bytes on SQL_ASCII unless the client encoding is set: then
    every role looked missing and the change reported success for none."""
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP DATABASE _supabase WITH (FORCE)")
        admin.execute(
            "CREATE DATABASE _supabase OWNER supabase_admin ENCODING 'SQL_ASCII'"
            " TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    new = secrets.token_hex(16)

    change = _change(supabase_db, new)

    assert change.changed == SHARED_PASSWORD_ROLES
    assert all(_roles_on_password(supabase_db, new).values())


def test_names_read_as_anything_but_text_stop_the_change(
    supabase_db: SupabaseDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard behind the SQL_ASCII fix: with names read as bytes (the fix undone), the
    role this session runs as is not found, and nothing changes."""
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP DATABASE _supabase WITH (FORCE)")
        admin.execute(
            "CREATE DATABASE _supabase OWNER supabase_admin ENCODING 'SQL_ASCII'"
            " TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    real = postgres_adapter.make_conninfo

    def without_client_encoding(*args: Any, **kwargs: Any) -> str:
        kwargs.pop("client_encoding", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(postgres_adapter, "make_conninfo", without_client_encoding)

    with pytest.raises(DatabaseError, match="nothing was changed"):
        _change(supabase_db, secrets.token_hex(16))

    monkeypatch.undo()
    assert all(_roles_on_password(supabase_db, supabase_db.password).values())


def test_a_change_that_finds_none_of_the_roles_fails(supabase_db: SupabaseDb) -> None:
    with pytest.raises(DatabaseError, match="none of the 2 roles"):
        _change(supabase_db, secrets.token_hex(16), roles=("no_such_role", "nor_this_one"))


@pytest.mark.usefixtures("supabase_db")
def test_a_server_that_never_answers_is_waited_for_then_named() -> None:
    address = DbAddress("127.0.0.1", _free_port(), "postgres")
    started = time.monotonic()

    with pytest.raises(DatabaseError) as failed:
        wait_until_accepting(address, "supabase_admin", "whatever", timeout_s=1.5)

    assert time.monotonic() - started >= 1.5
    assert failed.value.retryable
    assert "connection refused" in str(failed.value)


def test_waiting_ends_at_the_first_answer_even_a_refusal(supabase_db: SupabaseDb) -> None:
    started = time.monotonic()
    wait_until_accepting(supabase_db.address, "supabase_admin", "not-the-password", timeout_s=30)
    assert time.monotonic() - started < 5


def test_logflares_legacy_key_is_replaced_only_where_it_held_the_old_token(
    supabase_db: SupabaseDb,
) -> None:
    old, new, other = (secrets.token_urlsafe(24) for _ in range(3))
    with supabase_db.admin_connect("_supabase") as conn:
        conn.execute("SET ROLE supabase_admin")
        conn.execute("CREATE TABLE _analytics.users (id serial PRIMARY KEY, api_key text)")
        conn.execute("INSERT INTO _analytics.users (api_key) VALUES (%s), (%s)", [old, other])
    address, password = supabase_db.address, supabase_db.password

    assert analytics_users_holding(address, "supabase_admin", password, old) == 1
    assert replace_analytics_user_key(address, "supabase_admin", password, old, new) == 1

    assert analytics_users_holding(address, "supabase_admin", password, old) == 0
    assert analytics_users_holding(address, "supabase_admin", password, new) == 1
    assert analytics_users_holding(address, "supabase_admin", password, other) == 1


def test_without_logflare_or_auth_tables_there_is_nothing_to_change(
    supabase_db: SupabaseDb,
) -> None:
    address, password = supabase_db.address, supabase_db.password
    assert replace_analytics_user_key(address, "supabase_admin", password, "a" * 9, "b" * 9) is None
    assert revoke_sessions(address, "supabase_admin", password) is None
    assert sessions_before(address, "supabase_admin", password, time.time()) is None
