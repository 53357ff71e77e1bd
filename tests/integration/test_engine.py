"""The engine on real PostgreSQL, with a runtime that records what it was asked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.adapters.postgres import DbAddress, accepts_password
from core.audit import AuditLog
from core.deployment import Deployment
from core.engine import Engine, Outcome
from core.envfile import EnvFile
from core.errors import DatabaseRefused, InputError, RotationInProgress
from core.progress import Event, RecordingProgress, StepFinished
from tests.fakes import RecordingRuntime, make_mini_deployment

pytestmark = [pytest.mark.postgres, pytest.mark.compose]

LOGIN_ROLES = ("postgres", "supabase_admin", "authenticator", "supabase_auth_admin")


@dataclass
class Setup:
    directory: Path
    address: DbAddress
    password: str
    runtime: RecordingRuntime
    progress: RecordingProgress

    def engine(self, **kwargs: Any) -> Engine:
        return Engine(
            Deployment.load(self.directory),
            self.runtime,
            self.progress,
            actor="test-operator",
            http_probes=False,
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        return EnvFile.read(self.directory / ".env").as_dict()


@pytest.fixture
def setup(tmp_path: Path, supabase_db: Any) -> Iterator[Setup]:
    make_mini_deployment(
        tmp_path, password=supabase_db.password, host=supabase_db.host, port=supabase_db.port
    )
    deployment = Deployment.load(tmp_path)
    yield Setup(
        directory=tmp_path,
        address=DbAddress(supabase_db.host, supabase_db.port, "postgres"),
        password=supabase_db.password,
        runtime=RecordingRuntime(deployment.compose),
        progress=RecordingProgress(),
    )


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler catches it."""


def test_postgres_password_rotation_changes_every_role_and_only_that_line(setup: Setup) -> None:
    before = (setup.directory / ".env").read_text()

    result = setup.engine().rotate("postgres-password")

    assert result.outcome is Outcome.FINISHED
    new = setup.env()["POSTGRES_PASSWORD"]
    assert new != setup.password and new.isalnum()
    for role in LOGIN_ROLES:
        assert accepts_password(setup.address, role, new), role
        assert not accepts_password(setup.address, role, setup.password), role
    after = (setup.directory / ".env").read_text()
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert [a.split("=")[0] for a, _ in changed] == ["POSTGRES_PASSWORD"]
    # db first, then everything that waits for it; studio has no depends_on.
    assert setup.runtime.recreated[0] == ["db", "studio"]
    assert sorted(setup.runtime.recreated[1]) == ["auth", "realtime", "rest", "supavisor"]
    assert not (setup.directory / ".rotator" / "journal.json").exists()
    assert [r.result for r in AuditLog(setup.directory / ".rotator" / "audit.log").records()] == [
        "finished"
    ]


def test_jwt_secret_rotation_recreates_exactly_its_consumers(setup: Setup) -> None:
    result = setup.engine().rotate("jwt-secret")

    assert result.outcome is Outcome.FINISHED
    assert set(result.plan.env_keys) == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"}
    recreated = {s for level in setup.runtime.recreated for s in level}
    # realtime's health check embeds ANON_KEY; db and supavisor use none of the three.
    assert recreated == {"studio", "api-gw", "auth", "rest", "realtime"}
    checks = {c.name: c for c in result.checks}
    assert checks["no container holds the old value"].ok


def test_service_that_never_turns_healthy_rolls_everything_back(setup: Setup) -> None:
    before = (setup.directory / ".env").read_bytes()
    setup.runtime.fail_on = {"auth"}

    result = setup.engine().rotate("postgres-password")

    assert result.outcome is Outcome.ROLLED_BACK
    assert result.failed_service == "auth"
    assert (setup.directory / ".env").read_bytes() == before
    for role in LOGIN_ROLES:
        assert accepts_password(setup.address, role, setup.password), role
    records = AuditLog(setup.directory / ".rotator" / "audit.log").records()
    assert [r.result for r in records] == ["rolled_back"]
    assert "auth" in records[0].detail


def test_database_refusing_the_env_password_is_said_plainly_and_nothing_changes(
    setup: Setup,
) -> None:
    env_path = setup.directory / ".env"
    text = env_path.read_text().replace(setup.password, "not-the-database-password")
    env_path.write_text(text)

    with pytest.raises(DatabaseRefused, match="already disagree") as caught:
        setup.engine().rotate("postgres-password")

    assert "--via-socket" in str(caught.value)
    assert "not-the-database-password" not in str(caught.value)
    assert env_path.read_text() == text
    assert setup.runtime.recreated == []
    assert accepts_password(setup.address, "postgres", setup.password)


def test_a_second_rotation_is_refused_while_one_is_open(setup: Setup) -> None:
    crash_after(setup, "commit")
    with pytest.raises(Crash):
        setup.engine().rotate("jwt-secret")

    with pytest.raises(RotationInProgress, match="rotator recover"):
        setup.engine().rotate("dashboard-password")


def test_recover_finishes_a_rotation_killed_after_commit(setup: Setup) -> None:
    crash_after(setup, "commit")
    with pytest.raises(Crash):
        setup.engine().rotate("postgres-password")
    staged = setup.env()["POSTGRES_PASSWORD"]
    assert staged != setup.password

    setup.progress.emit = RecordingProgress().emit  # type: ignore[method-assign]
    result = setup.engine().recover()

    assert result.outcome is Outcome.FINISHED
    assert setup.env()["POSTGRES_PASSWORD"] == staged
    assert accepts_password(setup.address, "authenticator", staged)
    assert not (setup.directory / ".rotator" / "journal.json").exists()


def test_recover_undoes_a_rotation_killed_between_apply_and_commit(setup: Setup) -> None:
    before = (setup.directory / ".env").read_bytes()
    crash_after(setup, "apply")
    with pytest.raises(Crash):
        setup.engine().rotate("postgres-password")
    assert not accepts_password(setup.address, "postgres", setup.password)

    setup.progress.emit = RecordingProgress().emit  # type: ignore[method-assign]
    result = setup.engine().recover()

    assert result.outcome is Outcome.ROLLED_BACK
    assert (setup.directory / ".env").read_bytes() == before
    assert accepts_password(setup.address, "postgres", setup.password)


def test_recover_with_nothing_open_says_so(setup: Setup) -> None:
    with pytest.raises(InputError, match="no rotation is open"):
        setup.engine().recover()


def test_no_secret_value_reaches_logs_events_audit_or_state_files(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old_env = setup.env()
    setup.runtime.fail_on = {"rest"}
    setup.engine().rotate("postgres-password")  # rolls back
    setup.engine().rotate("all")
    new_env = setup.env()

    values = {
        v
        for env in (old_env, new_env)
        for k, v in env.items()
        if len(v) >= 8 and any(word in k for word in ("PASSWORD", "SECRET", "KEY", "PASS"))
    }
    assert values
    captured = [caplog.text, repr(setup.progress.events)]
    state = setup.directory / ".rotator"
    captured += [
        p.read_text() for p in state.rglob("*") if p.is_file() and "backups" not in p.parts
    ]
    for text in captured:
        for value in values:
            assert value not in text
    assert not (state / "journal.json").exists()
    assert {oct(p.stat().st_mode & 0o777) for p in (state / "backups").iterdir()} == {"0o600"}


def crash_after(setup: Setup, step: str) -> None:
    """Make the progress reporter kill the run right after `step` completes."""
    original = setup.progress.emit

    def emit(event: Event) -> None:
        original(event)
        if isinstance(event, StepFinished) and event.step == step:
            raise Crash

    setup.progress.emit = emit  # type: ignore[method-assign]


def test_vault_key_rotation_resets_the_pooler_tenant_and_keeps_the_export_prefix(
    setup: Setup, supabase_db: Any
) -> None:
    result = setup.engine().rotate("vault-enc-key")

    assert result.outcome is Outcome.FINISHED
    assert setup.runtime.recreated == [["supavisor"]]
    assert "export VAULT_ENC_KEY=" in (setup.directory / ".env").read_text()
    assert len(setup.env()["VAULT_ENC_KEY"]) == 32
    with supabase_db.admin_connect("_supabase") as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = '_supavisor'")
        assert tables.fetchone() == (0,)


def test_a_key_without_a_line_in_env_is_refused_before_anything_changes(setup: Setup) -> None:
    env_path = setup.directory / ".env"
    text = "\n".join(
        line for line in env_path.read_text().splitlines() if not line.startswith("SMTP_USER=")
    )
    env_path.write_text(text + "\n")

    with pytest.raises(InputError, match="SMTP_USER"):
        setup.engine().rotate("smtp", given={"SMTP_PASS": "a-new-provider-pass", "SMTP_USER": "x"})

    assert env_path.read_text() == text + "\n"
    assert not (setup.directory / ".rotator" / "journal.json").exists()
    assert setup.runtime.recreated == []


def test_a_disk_error_while_committing_rolls_the_database_back(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (setup.directory / ".env").read_bytes()

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("core.engine.write_atomic", full_disk)
    result = setup.engine().rotate("postgres-password")

    assert result.outcome is Outcome.ROLLED_BACK
    assert "No space left on device" in result.error
    assert (setup.directory / ".env").read_bytes() == before
    assert accepts_password(setup.address, "postgres", setup.password)
    assert not (setup.directory / ".rotator" / "journal.json").exists()


def test_a_service_already_down_before_the_rotation_does_not_fail_it(setup: Setup) -> None:
    setup.runtime.health["realtime"] = "unhealthy"  # an operator's problem, not this rotation's

    result = setup.engine().rotate("vault-enc-key")

    assert result.outcome is Outcome.FINISHED
    assert setup.runtime.recreated == [["supavisor"]]
