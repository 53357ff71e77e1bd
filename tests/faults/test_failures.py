"""Failures during a rotation on the testbed: each ends in a rollback or a plain refusal.

One testbed for the module, with a test hook layered on through COMPOSE_FILE
(docker-compose.faults.yml, written below; the testbed's own files are untouched):
`auth`'s health check fails while volumes/faults/healthy-only lists fingerprints
(sha256[:16], as /fingerprints shows them) and its GOTRUE_DB_DATABASE_URL's is not among
them, printing that URL (so the output rotator shows holds the password, which it must
redact); auth also prints it when it starts. An empty or absent file turns it off.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from tests.faults.conftest import (
    Running,
    assert_consistent,
    assert_db_accepts_only,
    assert_services_healthy,
    history,
    read_env_bytes,
    read_journal,
    run_rotator,
    shared_roles,
    start_testbed,
    wait_all_healthy,
)
from tests.testbed.testbed import Testbed, TestbedError

pytestmark = pytest.mark.docker

OVERRIDE = "docker-compose.faults.yml"
HOOK = """\
# Test hook for tests/faults/test_failures.py (not part of the testbed template).
services:
  auth:
    command:
      - sh
      - -c
      - >-
        echo "auth stand-in starting; database $$GOTRUE_DB_DATABASE_URL";
        exec standin auth --port {port}
    healthcheck:
      test:
        - CMD-SHELL
        - >-
          probe http://127.0.0.1:{port}/health && {{ [ ! -s /faults/healthy-only ] ||
          grep -qx "$$(printf %s "$$GOTRUE_DB_DATABASE_URL" | sha256sum | cut -c1-16)"
          /faults/healthy-only ||
          {{ echo "auth hook: refusing database $$GOTRUE_DB_DATABASE_URL"; exit 1; }}; }}
      start_period: 2s
    volumes:
      - ./volumes/faults:/faults:ro,z
"""


def _add_hook(tb: Testbed) -> None:
    (tb.directory / OVERRIDE).write_text(HOOK.format(port=tb.port("auth")))
    (tb.directory / "volumes" / "faults").mkdir(parents=True, exist_ok=True)
    env = tb.directory / ".env"
    text = env.read_text()
    assert "COMPOSE_FILE=docker-compose.yml\n" in text
    env.write_text(
        text.replace(
            "COMPOSE_FILE=docker-compose.yml\n", f"COMPOSE_FILE=docker-compose.yml:{OVERRIDE}\n"
        )
    )


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    yield from start_testbed(tmp_path_factory.mktemp("failures"), "faults-fail", _add_hook)


@pytest.fixture
def tb(testbed: Testbed) -> Testbed:
    """The module's testbed, checked healthy before each test."""
    wait_all_healthy(testbed)
    return testbed


def _env_bytes(tb: Testbed) -> bytes:
    return (tb.directory / ".env").read_bytes()


def _psql_retrying(tb: Testbed, sql: str, timeout: float = 30) -> None:
    """psql in the db container, retried while a rotation recreates that container."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tb.psql(sql)
            return
        except TestbedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_a_service_that_never_turns_healthy_rolls_back_and_names_it(tb: Testbed) -> None:
    before = _env_bytes(tb)
    old = tb.env()["POSTGRES_PASSWORD"]
    allowlist = tb.directory / "volumes" / "faults" / "healthy-only"
    allowlist.write_text(tb.fingerprints("auth")["GOTRUE_DB_DATABASE_URL"] + "\n")
    try:
        run = Running.start(tb, "rotate", "postgres-password", "--yes")
        run.wait_for(lambda r: r.journal() is not None)
        new = run.journals[0]["new"]["POSTGRES_PASSWORD"]
        code = run.finish()
    finally:
        allowlist.unlink()
    out = run.output
    print(out)
    assert code == 1, out
    assert "service auth" in out
    # the failed service's last log lines are shown, the password in them redacted
    assert "refusing database postgres://supabase_auth_admin:[REDACTED]@" in out
    assert "[REDACTED]" in out
    assert old not in out
    assert new not in out
    assert _env_bytes(tb) == before
    assert_db_accepts_only(tb, old, new)
    assert_services_healthy(tb)
    assert run_rotator(tb, "verify").returncode == 0
    assert history(tb)[-1]["result"] == "rolled_back"
    assert read_journal(tb) is None


def test_a_database_that_refuses_the_new_password_after_apply_rolls_back(tb: Testbed) -> None:
    """Someone changes supabase_auth_admin's password between apply and restart.

    auth (restarted with the new password) is then refused and never turns healthy,
    or, if the change lands later, verify finds the role refusing the new password.
    Either way the rollback logs in as supabase_admin, which still has the new
    password, and sets every role back to the old one: exit 1, not 3.
    """
    before = _env_bytes(tb)
    old = tb.env()["POSTGRES_PASSWORD"]
    run = Running.start(tb, "rotate", "postgres-password", "--yes")
    run.wait_for(lambda r: (j := r.journal()) is not None and "apply" in j["done"])
    journal = run.journals[-1]
    third = secrets.token_hex(16)
    _psql_retrying(tb, f"ALTER ROLE supabase_auth_admin PASSWORD '{third}';")
    code = run.finish()
    print(run.output)
    assert code == 1, run.output
    assert "supabase_auth_admin" in run.output or "service auth" in run.output
    assert _env_bytes(tb) == before
    assert_db_accepts_only(tb, old, journal["new"]["POSTGRES_PASSWORD"])
    assert_consistent(tb, before, journal, "rolled_back")


def test_a_second_rotation_while_one_runs_is_refused(tb: Testbed) -> None:
    before = _env_bytes(tb)
    run = Running.start(tb, "rotate", "jwt-secret", "--yes")
    run.wait_for(lambda r: (j := r.journal()) is not None and j["current"] == "restart")
    running = run.journals[-1]

    second = run_rotator(tb, "rotate", "dashboard-password", "--yes")
    assert second.returncode == 2, second.stdout + second.stderr
    assert "another rotator process is working on" in second.stderr
    # recover would undo the running rotation: it is refused the same way
    recover = run_rotator(tb, "recover")
    assert recover.returncode == 2, recover.stdout + recover.stderr
    assert "another rotator process is working on" in recover.stderr
    journal = read_journal(tb)
    assert journal is not None
    assert journal["rotation_id"] == running["rotation_id"]
    assert journal["new"] == running["new"]

    assert run.finish() == 0, run.output
    assert_consistent(tb, before, running, "finished")
    assert not any(r["secret"] == "dashboard-password" for r in history(tb))


def test_a_database_out_of_step_with_env_is_fixed_through_the_socket(tb: Testbed) -> None:
    before = _env_bytes(tb)
    old = tb.env()["POSTGRES_PASSWORD"]
    drifted = secrets.token_hex(16)
    existing = shared_roles(tb, login_only=False)
    tb.psql("".join(f"ALTER ROLE \"{role}\" PASSWORD '{drifted}';\n" for role in existing))
    # As it would be found: the services logging in with .env's password turn unhealthy.
    deadline = time.monotonic() + 60
    while tb.container_states().get("auth") != "unhealthy":
        assert time.monotonic() < deadline, tb.container_states()
        time.sleep(0.5)

    refused = run_rotator(tb, "rotate", "postgres-password", "--yes")
    print(refused.stdout + refused.stderr)
    assert refused.returncode == 2
    assert "--via-socket" in refused.stderr
    assert _env_bytes(tb) == before

    fixed = run_rotator(tb, "rotate", "postgres-password", "--yes", "--via-socket")
    print(fixed.stdout + fixed.stderr)
    assert fixed.returncode == 0
    new = tb.env()["POSTGRES_PASSWORD"]
    assert new not in (old, drifted)
    assert_db_accepts_only(tb, new, old)
    assert_db_accepts_only(tb, new, drifted)
    assert_services_healthy(tb)
    assert run_rotator(tb, "verify").returncode == 0
    assert history(tb)[-1]["result"] == "finished"
    old_env = read_env_bytes(before)
    changed = {k for k, v in tb.env().items() if old_env.get(k) != v}
    assert changed == {"POSTGRES_PASSWORD"}
