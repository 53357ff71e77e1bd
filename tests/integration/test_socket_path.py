"""The socket path: SCRAM verifiers computed offline and the psql script that uses them.

In production the script runs through `psql` inside the db container over its
local socket. Here the same script runs through the machine's `psql` against the
test cluster as its superuser, which is what the container's socket grants.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from core.adapters.postgres import (
    SHARED_PASSWORD_ROLES,
    accepts_password,
    shared_password_script,
)
from core.scram import scram_sha256_verifier

pytestmark = pytest.mark.postgres


def run_psql(
    supabase_db: Any, script: str, dbname: str = "_supabase"
) -> subprocess.CompletedProcess[str]:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("the psql client is not installed")
    env = {**os.environ, "PGPASSWORD": supabase_db.admin_password}
    host, port, user = supabase_db.host, str(supabase_db.port), supabase_db.admin_user
    return subprocess.run(
        [psql, "-X", "-q", "-h", host, "-p", port, "-U", user, "-d", dbname],
        input=script,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_offline_verifier_lets_the_role_log_in_with_its_password(supabase_db: Any) -> None:
    password = secrets.token_hex(16)
    with supabase_db.admin_connect() as conn:
        conn.execute(f"ALTER ROLE authenticator PASSWORD '{scram_sha256_verifier(password)}'")

    assert accepts_password(supabase_db.address, "authenticator", password)
    assert not accepts_password(supabase_db.address, "authenticator", supabase_db.password)


def test_verifiers_are_salted_and_never_contain_the_password() -> None:
    password = secrets.token_hex(16)
    first, second = scram_sha256_verifier(password), scram_sha256_verifier(password)
    assert first != second
    assert first.startswith("SCRAM-SHA-256$4096:")
    assert password not in first


def test_the_socket_script_changes_every_role_resets_the_pooler_and_updates_analytics(
    supabase_db: Any,
) -> None:
    new = secrets.token_hex(16)
    script = shared_password_script(
        new,
        (*SHARED_PASSWORD_ROLES, "a_role_that_does_not_exist"),
        analytics_host="db",
        analytics_port=5432,
    )
    holding = [line for line in script.splitlines() if new in line]
    assert len(holding) == 1  # the analytics URL, as COPY data
    assert holding[0].startswith("postgresql://supabase_admin:")

    result = run_psql(supabase_db, script)

    assert result.returncode == 0, result.stderr
    for role in ("postgres", "supabase_admin", "authenticator", "supabase_storage_admin"):
        assert accepts_password(supabase_db.address, role, new), role
        assert not accepts_password(supabase_db.address, role, supabase_db.password), role
    with supabase_db.admin_connect("_supabase") as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '_supavisor'"
        ).fetchone()
        url_ok = conn.execute(
            "SELECT config->>'url' = %s FROM _analytics.source_backends WHERE type = 'postgres'",
            [f"postgresql://supabase_admin:{new}@db:5432/postgres"],
        ).fetchone()
    assert tables == (0,)
    assert url_ok == (True,)


def test_a_failing_socket_script_changes_nothing(supabase_db: Any) -> None:
    new = secrets.token_hex(16)
    script = shared_password_script(
        new, SHARED_PASSWORD_ROLES, analytics_host="db", analytics_port=5432
    ).replace("COMMIT;", "SELECT 1/0;\nCOMMIT;")

    result = run_psql(supabase_db, script)

    assert result.returncode != 0
    assert accepts_password(supabase_db.address, "postgres", supabase_db.password)
    assert not accepts_password(supabase_db.address, "postgres", new)


def test_the_plaintext_never_reaches_statement_statistics_or_the_server_log(
    supabase_db: Any,
) -> None:
    """Every statement logged (log_statement and log_min_duration_statement for the role
    psql runs as) and counted (pg_stat_statements): the URL holding the password is COPY
    data, which neither keeps."""
    log = Path(os.environ.get("ROTATOR_TEST_STATE", "/tmp/rotator-test")) / "pglog/postgres.log"
    if not log.is_file():
        pytest.skip(f"server log {log} not found (scripts/lib.sh start_postgres writes it)")
    with supabase_db.admin_connect() as admin:
        loaded = admin.execute("SHOW shared_preload_libraries").fetchone()
        assert loaded is not None and "pg_stat_statements" in loaded[0], (
            "scripts/lib.sh starts the test cluster with pg_stat_statements preloaded"
        )
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        admin.execute("SELECT pg_stat_statements_reset()")
        user = supabase_db.admin_user
        admin.execute(f"ALTER ROLE \"{user}\" SET log_statement = 'all'")
        admin.execute(f'ALTER ROLE "{user}" SET log_min_duration_statement = 0')
    start = log.stat().st_size
    new = secrets.token_hex(16)
    try:
        script = shared_password_script(
            new, SHARED_PASSWORD_ROLES, analytics_host="db", analytics_port=5432
        )
        result = run_psql(supabase_db, script)
    finally:
        with supabase_db.admin_connect() as admin:
            admin.execute(f'ALTER ROLE "{supabase_db.admin_user}" RESET ALL')

    assert result.returncode == 0, result.stderr
    with supabase_db.admin_connect() as admin:
        statements = [q for (q,) in admin.execute("SELECT query FROM pg_stat_statements")]
    assert any("rotator_backend_url" in q for q in statements), "nothing was recorded"
    assert not any(new in q for q in statements), "the password is in pg_stat_statements"
    text = ""
    for _ in range(50):  # the server writes its log asynchronously to us
        text = log.read_bytes()[start:].decode(errors="replace")
        if "rotator_backend_url" in text:
            break
        time.sleep(0.1)
    assert "COPY rotator_backend_url FROM STDIN" in text, "statements were not logged"
    if new in text:
        pytest.fail("the password is in the server log", pytrace=False)
