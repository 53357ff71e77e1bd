"""`rotator rotate` end to end on real PostgreSQL, with Docker replaced by a recording runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from core.adapters.postgres import DbAddress, accepts_password
from core.audit import AuditLog
from core.cli import main
from core.compose import ComposeProject
from core.deployment import Deployment
from core.envfile import EnvFile
from core.errors import RuntimeFailure
from tests.fakes import RecordingRuntime, make_mini_deployment

pytestmark = [pytest.mark.postgres, pytest.mark.compose]

LOGIN_ROLES = ("postgres", "supabase_admin", "authenticator", "supabase_auth_admin")


@dataclass
class Cli:
    directory: Path
    address: DbAddress
    password: str
    db: Any
    runtime: RecordingRuntime
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        # The mini deployment has no gateway nor pooler to probe.
        if argv[0] in ("rotate", "recover", "verify"):
            argv = (*argv, "--no-gateway-probes", "--no-pooler-probe")
        code = main([*argv, "--project", str(self.directory)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def env_bytes(self) -> bytes:
        return (self.directory / ".env").read_bytes()

    def env(self) -> dict[str, str]:
        return EnvFile.read(self.directory / ".env").as_dict()

    def audit_results(self) -> list[str]:
        return [r.result for r in AuditLog(self.directory / ".rotator" / "audit.log").records()]


@pytest.fixture
def cli(
    tmp_path: Path,
    supabase_db: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    monkeypatch.delenv("ROTATOR_STATE_DIR", raising=False)
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    make_mini_deployment(
        tmp_path, password=supabase_db.password, host=supabase_db.host, port=supabase_db.port
    )
    state = Cli(
        directory=tmp_path,
        address=DbAddress(supabase_db.host, supabase_db.port, "postgres"),
        password=supabase_db.password,
        db=supabase_db,
        runtime=RecordingRuntime(Deployment.load(tmp_path).compose),
        capsys=capsys,
    )
    # The CLI builds its runtime through docker_runtime(); hand it the recording one.
    monkeypatch.setattr("core.cli.docker_runtime", lambda: state.runtime)
    yield state


def test_rotate_postgres_password_finishes_prints_verification_and_checklist(cli: Cli) -> None:
    code, out, err = cli.run("rotate", "postgres-password", "--yes", "--actor", "carol")

    assert code == 0, err
    new = cli.env()["POSTGRES_PASSWORD"]
    assert new != cli.password
    for role in LOGIN_ROLES:
        assert accepts_password(cli.address, role, new), role
        assert not accepts_password(cli.address, role, cli.password), role
    assert "of postgres-password finished and verified" in out
    assert "Verification:" in out
    assert "✓ services healthy" in out
    assert "✓ database accepts the new password" in out
    assert "✓ database refuses the old password" in out
    assert "Security checklist:" in out
    assert "☐ Update every tool and app outside the stack" in out
    assert cli.runtime.recreated[-1] == ["db"]  # the database last, after its dependents
    for value in (cli.password, new):
        assert value not in out and value not in err
    assert cli.audit_results() == ["finished"]


def test_history_shows_the_run_after_a_rotation(cli: Cli) -> None:
    code, out, _ = cli.run("rotate", "postgres-password", "--yes", "--actor", "carol")
    assert code == 0
    rotation_id = out.split("Rotation ", 1)[1].split()[0]

    code, history, err = cli.run("history")

    assert code == 0, err
    assert rotation_id in history
    assert "postgres-password" in history and "finished" in history and "carol" in history

    code, raw, _ = cli.run("history", "--json")
    records = json.loads(raw)["records"]
    assert [(r["rotation_id"], r["actor"], r["result"]) for r in records] == [
        (rotation_id, "carol", "finished")
    ]


def test_a_service_that_fails_rolls_back_and_exits_1(cli: Cli) -> None:
    before = cli.env_bytes()
    cli.runtime.fail_on = {"auth"}

    code, out, err = cli.run("rotate", "postgres-password", "--yes")

    assert code == 1, err
    assert "FAILED and was rolled back" in out
    assert "failed service: auth" in out
    assert cli.env_bytes() == before
    for role in LOGIN_ROLES:
        assert accepts_password(cli.address, role, cli.password), role
    assert cli.audit_results() == ["rolled_back"]
    assert not (cli.directory / ".rotator" / "journal.json").exists()


class AdminPasswordChangedBehindOurBack(RecordingRuntime):
    """While the services restart, someone sets supabase_admin's password to something
    neither old nor new; then a service fails, so rotator must roll back and cannot."""

    def __init__(self, project: ComposeProject, db: Any) -> None:
        super().__init__(project)
        self.db = db
        self.sabotaged = False

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        if not self.sabotaged:
            self.sabotaged = True
            with self.db.admin_connect() as admin:
                admin.execute(
                    sql.SQL("ALTER ROLE supabase_admin PASSWORD {}").format(
                        sql.Literal("set-by-someone-else-during-the-run")
                    )
                )
            raise RuntimeFailure("service db did not turn healthy", service="db")
        super().recreate(project, env, services)


def test_a_rollback_that_fails_exits_3_and_recover_takes_over(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = AdminPasswordChangedBehindOurBack(Deployment.load(cli.directory).compose, cli.db)
    monkeypatch.setattr("core.cli.docker_runtime", lambda: runtime)

    code, _, err = cli.run("rotate", "postgres-password", "--yes")

    assert code == 3
    assert err.count("\n") == 1
    assert "rotator recover" in err
    assert cli.password not in err
    assert (cli.directory / ".rotator" / "journal.json").exists()
    assert cli.audit_results() == ["needs_recovery"]

    # The database accepts neither password: recover says so, changes nothing, and exits 3
    # because the rotation is still open.
    code, _, err = cli.run("recover")
    assert code == 3
    assert "accepts neither" in err
    assert (cli.directory / ".rotator" / "journal.json").exists()

    # Once the admin password is put back (to the staged one), recover undoes the rotation.
    staged = json.loads((cli.directory / ".rotator" / "journal.json").read_text())["new"]
    with cli.db.admin_connect() as admin:
        admin.execute(
            sql.SQL("ALTER ROLE supabase_admin PASSWORD {}").format(
                sql.Literal(staged["POSTGRES_PASSWORD"])
            )
        )
    code, out, err = cli.run("recover")
    assert code == 1, err  # rolled back: the rotation did not happen
    assert "rolled back" in out
    assert cli.env()["POSTGRES_PASSWORD"] == cli.password
    for role in LOGIN_ROLES:
        assert accepts_password(cli.address, role, cli.password), role
    assert not (cli.directory / ".rotator" / "journal.json").exists()
    assert cli.audit_results() == ["needs_recovery", "rolled_back"]


def test_recover_with_nothing_open_exits_2(cli: Cli) -> None:
    before = cli.env_bytes()

    code, out, err = cli.run("recover")

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "no rotation is open" in err
    assert cli.env_bytes() == before


def test_a_second_rotate_while_one_is_open_exits_2(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = AdminPasswordChangedBehindOurBack(Deployment.load(cli.directory).compose, cli.db)
    monkeypatch.setattr("core.cli.docker_runtime", lambda: runtime)
    assert cli.run("rotate", "postgres-password", "--yes")[0] == 3
    env = cli.env_bytes()

    code, _, err = cli.run("rotate", "secret-key-base", "--yes")

    assert code == 2
    assert "rotator recover" in err
    assert cli.env_bytes() == env


def test_smtp_from_a_values_file_keeps_dollar_signs_and_quotes_literally(cli: Cli) -> None:
    provider_password = "p$HOME'x\"#y z"
    values = cli.directory / "smtp.values"
    values.write_text(f"# from the provider\nSMTP_PASS={provider_password}\n")

    code, out, err = cli.run("rotate", "smtp", "--yes", "--values-file", str(values))

    assert code == 0, err
    assert cli.env()["SMTP_PASS"] == provider_password
    assert cli.runtime.recreated == [["auth"]]
    assert provider_password not in out + err


def test_jwt_secret_through_the_cli_without_a_reachable_gateway(cli: Cli) -> None:
    old = cli.env()

    code, out, err = cli.run("rotate", "jwt-secret", "--yes")

    assert code == 0, err
    new = cli.env()
    assert {k for k in new if new[k] != old[k]} == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"}
    assert "✓ no container holds the old value" in out


class InterruptedWhileRestarting(RecordingRuntime):
    """The person at the terminal presses Ctrl-C while services restart."""

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_after_the_change_began_exits_3_and_names_the_recover_command(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = InterruptedWhileRestarting(Deployment.load(cli.directory).compose)
    monkeypatch.setattr("core.cli.docker_runtime", lambda: runtime)

    code, _, err = cli.run("rotate", "postgres-password", "--yes")

    assert code == 3
    assert f"rotator recover --project {cli.directory}" in err
    assert "nothing was changed" not in err
    assert cli.audit_results() == ["needs_recovery"]

    monkeypatch.setattr("core.cli.docker_runtime", lambda: cli.runtime)
    code, _, err = cli.run("recover")
    assert code == 0, err  # committed before the restart: recover finishes it
    assert accepts_password(cli.address, "postgres", cli.env()["POSTGRES_PASSWORD"])


def test_backups_lists_them_and_prune_keeps_the_newest(cli: Cli) -> None:
    for _ in range(2):
        assert cli.run("rotate", "dashboard-password", "--yes")[0] == 0
    made = sorted((cli.directory / ".rotator" / "backups").iterdir())
    assert len(made) == 1  # pruned when each rotation ended

    code, out, err = cli.run("backups")

    assert code == 0, err
    assert str(made[0]) in out and "mode 0600" in out
    made[0].chmod(0o644)
    code, _, err = cli.run("backups")
    assert code == 1
    assert "readable by others" in err and made[0].name in err
