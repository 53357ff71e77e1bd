"""The engine on real PostgreSQL, with a runtime that records what it was asked."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from core.adapters.postgres import DbAddress, accepts_password
from core.audit import AuditLog
from core.catalogue import Mode, RotationOptions
from core.deployment import Deployment
from core.engine import Engine, Outcome
from core.envfile import EnvFile
from core.errors import DatabaseRefused, InputError, RecoveryNeeded, RotationInProgress
from core.jwtkeys import b64url
from core.key_schedule import KeySchedule
from core.probes import ProbeSettings
from core.progress import Event, Note, RecordingProgress, StepFinished
from core.signing_keys import KeySet, Phase, api_keys_signed_by, kid_of, new_ec_key, verify_es256
from tests.fakes import RecordingRuntime, make_mini_deployment

pytestmark = [pytest.mark.postgres, pytest.mark.compose]

LOGIN_ROLES = ("postgres", "supabase_admin", "authenticator", "supabase_auth_admin")


NO_PROBES = ProbeSettings(gateway_url=None, pooler_address=None)
"""The mini deployment has a database and containers, no gateway or pooler to probe."""


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
            probes=NO_PROBES,
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
    # The dependents first, in one call, while the database serves them on the new
    # password; the database last, alone (it reads the password only at first init).
    assert setup.runtime.recreated == [
        ["studio", "auth", "realtime", "rest", "supavisor"],
        ["db"],
    ]
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


def crash_on_the_second_compose_call(setup: Setup, secret: str) -> list[list[str]]:
    """Run `secret` until the restart's second compose call begins, as if killed there;
    returns the calls made. The runtime is then as before, its record cleared."""
    calls: list[list[str]] = []
    recreate = setup.runtime.recreate

    def crash_on_the_second_call(project: Any, env: Any, services: Any) -> None:
        calls.append(list(services))
        if len(calls) == 2:
            raise Crash
        recreate(project, env, services)

    setup.runtime.recreate = crash_on_the_second_call  # type: ignore[method-assign]
    with pytest.raises(Crash):
        setup.engine().rotate(secret)
    setup.runtime.recreate = recreate  # type: ignore[method-assign]
    setup.runtime.recreated.clear()
    return calls


def test_recover_keeps_the_services_the_interrupted_restart_recreated(setup: Setup) -> None:
    first, second = crash_on_the_second_compose_call(setup, "jwt-secret")
    setup.progress.emit = (recorded := RecordingProgress()).emit  # type: ignore[method-assign]

    result = setup.engine().recover()

    assert result.outcome is Outcome.FINISHED
    assert setup.runtime.recreated == [second]  # the first call's services are not redone
    notes = [e.text for e in recorded.events if isinstance(e, Note)]
    assert "already recreated before the interruption: " + ", ".join(first) in notes
    assert "ready, recreated before the interruption" in result_step_detail(recorded, "restart")


def test_recover_that_drops_the_pooler_tenant_keeps_no_container_made_before(
    setup: Setup,
) -> None:
    """mini-supabase's pooler has no API to update its tenant, so recover's apply drops
    the tenant again: a pooler made before that would never make it anew."""
    first, second = crash_on_the_second_compose_call(setup, "postgres-password")
    assert "supavisor" in first

    result = setup.engine().recover()

    assert result.outcome is Outcome.FINISHED
    assert sorted(s for call in setup.runtime.recreated for s in call) == sorted(first + second)


def result_step_detail(progress: RecordingProgress, step: str) -> str:
    return next(e.detail for e in progress.events if isinstance(e, StepFinished) and e.step == step)


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


def interrupt_after(setup: Setup, step: str) -> None:
    """Ctrl-C right after `step` completes (KeyboardInterrupt, as the terminal sends it)."""
    original = setup.progress.emit

    def emit(event: Event) -> None:
        original(event)
        if isinstance(event, StepFinished) and event.step == step:
            raise KeyboardInterrupt

    setup.progress.emit = emit  # type: ignore[method-assign]


@pytest.mark.parametrize("step", ["backup", "stage", "apply", "commit", "restart"])
def test_ctrl_c_once_a_rotation_is_under_way_says_recover_and_recover_ends_it(
    setup: Setup, step: str
) -> None:
    before = (setup.directory / ".env").read_bytes()
    interrupt_after(setup, step)

    with pytest.raises(RecoveryNeeded, match="rotator recover --project") as stopped:
        setup.engine().rotate("postgres-password")

    assert stopped.value.exit_code == 3
    assert (setup.directory / ".rotator" / "journal.json").exists()
    setup.progress.emit = RecordingProgress().emit  # type: ignore[method-assign]
    result = setup.engine().recover()
    committed = step in ("commit", "restart")
    assert result.outcome is (Outcome.FINISHED if committed else Outcome.ROLLED_BACK)
    password = setup.env()["POSTGRES_PASSWORD"]
    assert (password != setup.password) is committed
    if not committed:
        assert (setup.directory / ".env").read_bytes() == before
    assert accepts_password(setup.address, "supabase_admin", password)


def test_ctrl_c_before_anything_changed_stays_an_interrupt(setup: Setup) -> None:
    interrupt_after(setup, "preflight")
    with pytest.raises(KeyboardInterrupt):
        setup.engine().rotate("postgres-password")
    assert not (setup.directory / ".rotator" / "journal.json").exists()


def test_a_read_only_role_sharing_the_password_changes_with_the_others(
    setup: Setup, supabase_db: Any
) -> None:
    with supabase_db.admin_connect() as admin:
        admin.execute(
            sql.SQL("ALTER ROLE supabase_read_only_user PASSWORD {}").format(
                sql.Literal(setup.password)
            )
        )
    events = setup.progress.events

    result = setup.engine().rotate("postgres-password")

    assert result.outcome is Outcome.FINISHED
    new = setup.env()["POSTGRES_PASSWORD"]
    assert accepts_password(setup.address, "supabase_read_only_user", new)
    assert not accepts_password(setup.address, "supabase_read_only_user", setup.password)
    notes = [e.text for e in events if isinstance(e, Note)]
    assert any("supabase_read_only_user takes the current password" in n for n in notes)
    accepted = {c.name: c for c in result.checks}["database accepts the new password"]
    assert "supabase_read_only_user" in accepted.evidence


def test_a_read_only_role_with_its_own_password_is_left_alone_and_said_so(
    setup: Setup, supabase_db: Any
) -> None:
    own = secrets.token_hex(16)
    with supabase_db.admin_connect() as admin:
        admin.execute(
            sql.SQL("ALTER ROLE supabase_read_only_user PASSWORD {}").format(sql.Literal(own))
        )

    result = setup.engine().rotate("postgres-password")

    assert result.outcome is Outcome.FINISHED
    assert accepts_password(setup.address, "supabase_read_only_user", own)
    notes = [e.text for e in setup.progress.events if isinstance(e, Note)]
    assert any("left alone: it has its own password" in n for n in notes)


def test_a_rotation_that_waited_for_the_lock_starts_from_the_env_as_it_is_then(
    setup: Setup,
) -> None:
    """Engine A read .env, engine B rotated the same secret meanwhile: A must rotate from
    B's value, never from its stale copy (its rollback would undo B)."""
    waiting = setup.engine()
    assert setup.engine().rotate("postgres-password").outcome is Outcome.FINISHED
    between = setup.env()["POSTGRES_PASSWORD"]

    result = waiting.rotate("postgres-password")

    assert result.outcome is Outcome.FINISHED
    final = setup.env()["POSTGRES_PASSWORD"]
    assert final not in (setup.password, between)
    assert accepts_password(setup.address, "postgres", final)
    assert not accepts_password(setup.address, "postgres", between)


def test_the_checklist_is_ticked_from_evidence_and_old_backups_are_pruned(setup: Setup) -> None:
    setup.engine().rotate("dashboard-password")

    result = setup.engine().rotate("dashboard-password")

    done = {item.text: item for item in result.checklist if item.done}
    assert "validated again" in done["Values meet every consumer's rules"].evidence
    assert "mode 0600" in done[".env backed up before the change"].evidence
    assert "changed DASHBOARD_PASSWORD" in done["Only the rotated keys changed in .env"].evidence
    backups = list((setup.directory / ".rotator" / "backups").iterdir())
    assert len(backups) == 1
    assert result.rotation_id in backups[0].name


# --- sessions, Logflare's legacy key and the signing key -----------------------------------


@pytest.fixture
def auth_sessions(supabase_db: Any) -> Iterator[Any]:
    """GoTrue's two session tables in the deployment's database, with rows in them."""
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP SCHEMA IF EXISTS auth CASCADE")
        admin.execute("CREATE SCHEMA auth AUTHORIZATION supabase_admin")
        admin.execute(
            "CREATE TABLE auth.sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
            " created_at timestamptz DEFAULT now())"
        )
        admin.execute(
            "CREATE TABLE auth.refresh_tokens (id bigserial PRIMARY KEY, session_id uuid"
            " REFERENCES auth.sessions ON DELETE CASCADE, created_at timestamptz DEFAULT now())"
        )
        admin.execute("ALTER TABLE auth.sessions OWNER TO supabase_admin")
        admin.execute("ALTER TABLE auth.refresh_tokens OWNER TO supabase_admin")
        for _ in range(2):
            (session,) = admin.execute(
                "INSERT INTO auth.sessions DEFAULT VALUES RETURNING id"
            ).fetchone() or (None,)
            admin.execute("INSERT INTO auth.refresh_tokens (session_id) VALUES (%s)", [session])
    yield supabase_db
    with supabase_db.admin_connect() as admin:
        admin.execute("DROP SCHEMA IF EXISTS auth CASCADE")


def _session_count(db: Any) -> int:
    with db.admin_connect() as admin:
        row = admin.execute("SELECT count(*) FROM auth.sessions").fetchone()
    return int(row[0]) if row else -1


def test_a_compromise_rotation_revokes_every_session_and_proves_none_survives(
    setup: Setup, auth_sessions: Any
) -> None:
    result = setup.engine().rotate("jwt-secret", options=RotationOptions(mode=Mode.COMPROMISE))

    assert result.outcome is Outcome.FINISHED
    assert result.plan.revokes_sessions and result.plan.logs_out_users
    assert _session_count(auth_sessions) == 0
    check = {c.name: c for c in result.checks}["no session from before the rotation survives"]
    assert check.ok, check
    finished = [e for e in setup.progress.events if isinstance(e, StepFinished)]
    apply = next(e for e in finished if e.step == "apply")
    assert "revoked 2 session(s) and 2 refresh token(s)" in apply.detail


def test_a_planned_jwt_secret_rotation_keeps_sessions_and_says_so(
    setup: Setup, auth_sessions: Any
) -> None:
    result = setup.engine().rotate("jwt-secret")

    assert result.outcome is Outcome.FINISHED
    assert not result.plan.revokes_sessions and not result.plan.logs_out_users
    assert "stay signed in" in result.plan.impact
    assert _session_count(auth_sessions) == 2


def _with_signing_key(setup: Setup) -> dict[str, Any]:
    """Give the mini deployment asymmetric keys, as add-new-auth-keys.sh would."""
    env_path = setup.directory / ".env"
    env = EnvFile.read(env_path)
    first = new_ec_key()
    legacy = {"kty": "oct", "k": b64url(setup.env()["JWT_SECRET"].encode()), "alg": "HS256"}
    keys = KeySet((first, legacy))
    text = env.replace({"JWT_KEYS": keys.jwt_keys(), "JWT_JWKS": keys.jwt_jwks()}).render()
    text += "".join(f"{key}={value}\n" for key, value in api_keys_signed_by(first).items())
    env_path.write_text(text)
    return first


def test_a_planned_signing_key_rotation_runs_standby_rotate_and_revoke_in_turn(
    setup: Setup,
) -> None:
    first = _with_signing_key(setup)
    old_api_key = setup.env()["SERVICE_ROLE_KEY_ASYMMETRIC"]

    standby = setup.engine().rotate("jwt-signing-key")
    assert standby.plan.rotation_options.phase is Phase.STANDBY
    assert "rotate: the new key signs" in standby.next_step
    keys = KeySet.parse(setup.env()["JWT_KEYS"])
    assert kid_of(keys.signing) == first["kid"] and len(keys.asymmetric) == 2

    rotated = setup.engine().rotate("jwt-signing-key")
    assert rotated.plan.rotation_options.phase is Phase.ROTATE
    assert "revoke" in rotated.next_step
    keys = KeySet.parse(setup.env()["JWT_KEYS"])
    second = kid_of(keys.signing)
    assert second != first["kid"]
    assert setup.env()["SERVICE_ROLE_KEY_ASYMMETRIC"] != old_api_key

    with pytest.raises(InputError, match="revoke it at"):
        setup.engine().rotate("jwt-signing-key")
    record = KeySchedule.read(setup.directory / ".rotator")
    assert record is not None
    KeySchedule(**{**record.__dict__, "revoke_after": time.time() - 1}).write(
        setup.directory / ".rotator"
    )

    revoked = setup.engine().rotate("jwt-signing-key")
    assert revoked.plan.rotation_options.phase is Phase.REVOKE
    keys = KeySet.parse(setup.env()["JWT_KEYS"])
    assert [kid_of(k) for k in keys.asymmetric] == [second]
    assert KeySchedule.read(setup.directory / ".rotator") is None
    verify_es256(setup.env()["SERVICE_ROLE_KEY_ASYMMETRIC"], setup.env()["JWT_JWKS"])


def test_a_compromise_replaces_the_signing_key_at_once(setup: Setup) -> None:
    first = _with_signing_key(setup)

    result = setup.engine().rotate("jwt-signing-key", options=RotationOptions(mode=Mode.COMPROMISE))

    assert result.outcome is Outcome.FINISHED
    assert result.plan.rotation_options.phase is Phase.REPLACE
    env = setup.env()
    assert first["kid"] not in env["JWT_KEYS"] and first["kid"] not in env["JWT_JWKS"]
    assert result.next_step == ""
