"""The `rotator` command on bad input: one line on stderr, exit 2, nothing changed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from core.audit import AuditLog, new_record
from core.catalogue import CATALOGUE, secret_names
from core.cli import main
from core.envfile import EnvFile
from core.jwtkeys import api_key_payload, sign_hs256
from tests.fakes import MINI_JWT_SECRET, render_template

pytestmark = pytest.mark.compose  # plans come from `docker compose config`

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mini-supabase"

TEMPLATE_VALUES = {
    "POSTGRES_PASSWORD": "minipostgrespasswordforclitests0123",
    "POSTGRES_HOST": "db",
    "POSTGRES_PORT": "5432",
    # Signed with the template's JWT_SECRET: rotator refuses a .env whose keys are not.
    "ANON_KEY": sign_hs256(api_key_payload("anon", 1_700_000_000), MINI_JWT_SECRET),
    "SERVICE_ROLE_KEY": sign_hs256(api_key_payload("service_role", 1_700_000_000), MINI_JWT_SECRET),
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATOR_STATE_DIR", raising=False)
    monkeypatch.delenv("ROTATOR_PROJECT", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal, even if it says y

    def no_docker() -> None:
        raise AssertionError("bad input must be refused before Docker is touched")

    monkeypatch.setattr("core.cli.docker_runtime", no_docker)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "supabase"
    directory.mkdir()
    render_template(MINI / "env.template", directory / ".env", TEMPLATE_VALUES)
    with (directory / ".env").open("a") as env:
        env.write("SMTP_HOST=mail.example.test\n")  # smtp needs it to be configured
    (directory / "docker-compose.yml").write_text((MINI / "docker-compose.yml").read_text())
    return directory


SECRET_WORDS = ("PASSWORD", "SECRET", "KEY", "PASS", "TOKEN")


def secret_values(project: Path) -> list[str]:
    """Every secret value in .env (long enough not to match by accident)."""
    env = EnvFile.read(project / ".env").as_dict()
    return [v for k, v in env.items() if len(v) >= 8 and any(w in k for w in SECRET_WORDS)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_error_line(err: str, values: list[str]) -> None:
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("rotator: error: ")
    for value in values:
        assert value not in err


def snapshot(project: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry's bytes and mtime; a directory (say .rotator/) shows as its name."""
    return {
        p.name: (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns)
        for p in sorted(project.iterdir())
    }


def test_unknown_secret_lists_every_valid_name_on_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)

    code, out, err = run(capsys, "rotate", "jwt-secrett", "--project", str(project), "--yes")

    assert code == 2
    assert out == ""
    assert_one_clean_error_line(err, secret_values(project))
    for name in secret_names():
        assert name in err
    assert snapshot(project) == before


def test_unknown_secret_is_not_echoed_in_case_it_was_a_pasted_value(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pasted = TEMPLATE_VALUES["POSTGRES_PASSWORD"]

    code, _, err = run(capsys, "plan", pasted, "--project", str(project))

    assert code == 2
    assert pasted not in err


def test_missing_directory_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"

    code, _, err = run(capsys, "plan", "jwt-secret", "--project", str(missing))

    assert code == 2
    assert_one_clean_error_line(err, [])
    assert str(missing) in err and "no such directory" in err
    assert not missing.exists()


def test_missing_env_file_is_one_line_naming_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ".env").unlink()

    code, _, err = run(capsys, "rotate", "jwt-secret", "--project", str(project), "--yes")

    assert code == 2
    assert_one_clean_error_line(err, [])
    assert str(project / ".env") in err
    assert not (project / ".rotator").exists()


def test_compose_file_that_does_not_parse_is_refused_with_composes_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = project / "docker-compose.yml"
    lines = compose.read_text().splitlines()
    lines.insert(9, "    environment: [unclosed")  # line 10
    compose.write_text("\n".join(lines) + "\n")
    before = snapshot(project)

    code, _, err = run(capsys, "rotate", "jwt-secret", "--project", str(project), "--yes")

    assert code == 2
    assert_one_clean_error_line(err, secret_values(project))
    assert "compose cannot read the project in" in err
    assert "yaml: line 9:" in err  # compose's own words, the line near the break
    assert snapshot(project) == before
    assert not (project / ".rotator").exists()


def test_a_secret_whose_keys_are_absent_from_env_is_refused_naming_the_keys(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = project / ".env"
    env.write_text(
        "".join(
            line for line in env.read_text().splitlines(True) if "DASHBOARD_PASSWORD" not in line
        )
    )
    before = snapshot(project)

    code, _, err = run(capsys, "rotate", "dashboard-password", "--project", str(project), "--yes")

    assert code == 2
    assert_one_clean_error_line(err, secret_values(project))
    assert "dashboard-password is not configured" in err and "DASHBOARD_PASSWORD" in err
    assert snapshot(project) == before


def test_a_malformed_env_is_refused_with_its_line_number_and_not_its_content(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = project / ".env"
    lines = env.read_text().splitlines(True)
    broken_at = 7
    leaked = "very-secret-value-on-a-broken-line"
    lines.insert(broken_at - 1, f"BROKEN SECRET={leaked}\n")  # a space in the key
    env.write_text("".join(lines))
    before = snapshot(project)

    code, _, err = run(capsys, "plan", "jwt-secret", "--project", str(project))

    assert code == 2
    assert_one_clean_error_line(err, [leaked, TEMPLATE_VALUES["POSTGRES_PASSWORD"]])
    assert f"{env}:{broken_at}:" in err
    assert snapshot(project) == before


def test_dry_run_prints_the_plan_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)

    code, out, err = run(
        capsys, "rotate", "postgres-password", "--project", str(project), "--dry-run"
    )

    assert code == 0, err
    assert "Plan: rotate postgres-password" in out
    assert "POSTGRES_PASSWORD" in out
    assert "nothing was changed" in out
    assert snapshot(project) == before
    assert not (project / ".rotator").exists()
    for value in secret_values(project):
        assert value not in out


def test_dry_run_of_a_given_secret_needs_no_values(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)

    code, out, _ = run(capsys, "rotate", "smtp", "--project", str(project), "--dry-run")

    assert code == 0
    assert "[auth]" in out
    assert snapshot(project) == before


def test_rotate_without_yes_on_a_pipe_refuses_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)

    code, _, err = run(capsys, "rotate", "dashboard-password", "--project", str(project))

    assert code == 2
    assert_one_clean_error_line(err, secret_values(project))
    assert "--yes" in err
    assert snapshot(project) == before
    assert not (project / ".rotator").exists()


def test_rotate_smtp_without_values_file_on_a_pipe_says_what_to_pass(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)

    code, _, err = run(capsys, "rotate", "smtp", "--project", str(project), "--yes")

    assert code == 2
    assert_one_clean_error_line(err, secret_values(project))
    assert "--values-file" in err and "SMTP_PASS" in err
    assert snapshot(project) == before


def test_values_file_with_an_unknown_key_is_refused_naming_the_key_not_the_value(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "new-smtp.env"
    values.write_text("SMTP_PASS=new-provider-password\nSMTP_PASSWORD=typo-holds-a-value\n")
    before = snapshot(project)

    code, _, err = run(
        capsys,
        "rotate",
        "smtp",
        "--project",
        str(project),
        "--yes",
        "--values-file",
        str(values),
    )

    assert code == 2
    assert_one_clean_error_line(
        err, [*secret_values(project), "new-provider-password", "typo-holds-a-value"]
    )
    assert "SMTP_PASSWORD" in err
    assert snapshot(project) == before


def test_values_file_for_a_generated_secret_is_refused(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "values.env"
    values.write_text("JWT_SECRET=chosen-by-hand-and-long-enough-0123456789\n")

    code, _, err = run(
        capsys,
        "rotate",
        "jwt-secret",
        "--project",
        str(project),
        "--yes",
        "--values-file",
        str(values),
    )

    assert code == 2
    assert_one_clean_error_line(err, [*secret_values(project), values.read_text().strip()])
    assert "--values-file" in err


def test_secrets_lists_every_catalogue_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "secrets")

    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line and not line[0].isspace()}
    assert listed == set(CATALOGUE)
    assert "refused:" in out  # realtime-db-enc-key says why


def write_history(project: Path, count: int = 3) -> Path:
    state = project / ".rotator"
    state.mkdir(mode=0o700)
    log = AuditLog(state / "audit.log")
    for n in range(count):
        log.append(new_record(f"r-0000000{n}", "alice", "rotate", "jwt-secret", "finished"))
    return state / "audit.log"


def test_history_shows_an_intact_log(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(project)

    code, out, err = run(capsys, "history", "--project", str(project))

    assert code == 0, err
    assert err == ""
    assert [line.split()[3] for line in out.splitlines()] == [
        "r-00000000",
        "r-00000001",
        "r-00000002",
    ]


def test_history_on_an_edited_log_exits_1_naming_the_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_history(project)
    lines = path.read_text().splitlines(True)
    lines[1] = lines[1].replace('"finished"', '"rolled_back"')
    path.write_text("".join(lines))

    code, out, err = run(capsys, "history", "--project", str(project))

    assert code == 1
    assert err.count("\n") == 1
    assert "line 2" in err
    assert "r-00000000" in out  # the records are still shown


def test_history_on_a_log_with_a_mangled_line_names_it_instead_of_crashing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_history(project)
    lines = path.read_text().splitlines(True)
    lines[2] = '{"result": "finished"}\n'
    path.write_text("".join(lines))

    code, _, err = run(capsys, "history", "--project", str(project), "--json")

    assert code == 1
    assert "internal error" not in err
    assert "line 3" in err


def test_history_json_reports_where_the_chain_breaks(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_history(project)
    lines = path.read_text().splitlines(True)
    path.write_text(lines[0] + lines[2])

    code, out, _ = run(capsys, "history", "--project", str(project), "--json")

    assert code == 1
    assert json.loads(out)["broken_at"] == 2
