"""core.compose: the model compose itself gives, on the upstream files and on our own.

Every project here is resolved by the real `docker compose` (v2) binary; no Docker
engine is needed. The expected service sets were read off the YAML by hand (grep for
the variable, skip commented lines); they are stated literally so that a change
upstream, or in how rotator reads compose's answer, shows up as a failing test.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from core.cli import main
from core.compose import ComposeCommand, ComposeProject
from core.envfile import EnvFile
from core.errors import ComposeError, ComposeUnsupported
from core.redact import REDACTED
from tests.conftest import REFERENCE_2025_11, REFERENCE_CURRENT, reference_dir

pytestmark = pytest.mark.compose

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compose"


# -- helpers ---------------------------------------------------------------------------


def env_text(values: Mapping[str, str]) -> str:
    """A .env holding `values`, written by rotator's own .env writer."""
    blank = EnvFile.parse("".join(f"{key}=\n" for key in values))
    return blank.replace(dict(values)).render()


def deploy(directory: Path, files: Mapping[str, str], env: Mapping[str, str]) -> Path:
    """A deployment directory with these compose files and a .env holding `env`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(dedent(text))
    (directory / ".env").write_text(env_text(env))
    return directory


def copy_reference(reference: Path, target: Path, compose_file: str | None = None) -> Path:
    """An upstream layout in `target`: its compose files, `.env` made from `.env.example`."""
    source = reference_dir(reference)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("docker-compose*.yml")):
        shutil.copyfile(path, target / path.name)
    env = (source / ".env.example").read_text()
    if compose_file is not None:
        lines = [line for line in env.splitlines() if not line.startswith("COMPOSE_FILE=")]
        env = "\n".join([*lines, f"COMPOSE_FILE={compose_file}", ""])
    (target / ".env").write_text(env)
    return target


def load(directory: Path) -> ComposeProject:
    return ComposeProject.load(directory, values=EnvFile.read(directory / ".env").as_dict())


def changed(project: ComposeProject, **new: str) -> list[str]:
    """What compose says changes when these .env keys take these values."""
    env = EnvFile.read(project.directory / ".env")
    return project.changed_services(project.resolved_with(env.replace(new)))


# -- the current upstream layout ----------------------------------------------------------


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> ComposeProject:
    return load(copy_reference(REFERENCE_CURRENT, tmp_path_factory.mktemp("current")))


def test_current_layout_names_the_project_and_its_services(current: ComposeProject) -> None:
    assert current.name == "supabase"
    assert set(current.service_names()) == {
        "studio",
        "api-gw",
        "auth",
        "rest",
        "realtime",
        "storage",
        "imgproxy",
        "meta",
        "functions",
        "db",
        "supavisor",
    }


def test_postgres_password_touches_exactly_its_consumers_in_restart_order(
    current: ComposeProject,
) -> None:
    # db and studio wait for nothing, then everything on db; storage waits for rest
    assert changed(current, POSTGRES_PASSWORD="n3wpassw0rd") == [
        "db",
        "studio",
        "auth",
        "functions",
        "meta",
        "realtime",
        "rest",
        "supavisor",
        "storage",
    ]


def test_jwt_secret_touches_the_services_whose_env_uses_it(current: ComposeProject) -> None:
    assert set(changed(current, JWT_SECRET="x" * 40)) == {
        "studio",  # AUTH_JWT_SECRET
        "auth",  # GOTRUE_JWT_SECRET
        "rest",  # PGRST_JWT_SECRET: ${JWT_JWKS:-${JWT_SECRET}}, JWT_JWKS empty
        "realtime",  # API_JWT_SECRET, METRICS_JWT_SECRET
        "storage",  # AUTH_JWT_SECRET
        "functions",  # JWT_SECRET
        "supavisor",  # API_JWT_SECRET, METRICS_JWT_SECRET
    }


def test_rest_ignores_jwt_secret_once_jwt_jwks_is_set(tmp_path: Path) -> None:
    project = copy_reference(REFERENCE_CURRENT, tmp_path)
    env = EnvFile.read(project / ".env").replace({"JWT_JWKS": '{"keys":[]}'})
    (project / ".env").write_text(env.render())

    services = changed(load(project), JWT_SECRET="x" * 40)

    assert "rest" not in services
    assert "auth" in services


def test_anon_key_reaches_realtime_through_its_healthcheck(current: ComposeProject) -> None:
    after = current.resolved_with(
        EnvFile.read(current.directory / ".env").replace({"ANON_KEY": "new.anon.key"})
    )
    assert set(current.changed_services(after)) == {
        "studio",
        "api-gw",
        "realtime",
        "storage",
        "functions",
    }
    old, new = current.resolve()["realtime"], after.resolve()["realtime"]
    assert old["environment"] == new["environment"]
    assert "Bearer new.anon.key" in " ".join(new["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("key", "services"),
    [
        ("SERVICE_ROLE_KEY", {"studio", "api-gw", "storage", "functions"}),
        ("DASHBOARD_PASSWORD", {"api-gw"}),
        ("SECRET_KEY_BASE", {"realtime", "supavisor"}),
        ("VAULT_ENC_KEY", {"supavisor"}),
        ("PG_META_CRYPTO_KEY", {"studio", "meta"}),
        # only in docker-compose.logs.yml, not in the default file
        ("LOGFLARE_PUBLIC_ACCESS_TOKEN", set()),
        # GOTRUE_JWT_KEYS: ${JWT_KEYS:-[]} is commented out upstream
        ("JWT_KEYS", set()),
    ],
)
def test_other_keys(current: ComposeProject, key: str, services: set[str]) -> None:
    assert set(changed(current, **{key: "changed-value"})) == services


def test_an_unchanged_env_changes_nothing(current: ComposeProject) -> None:
    assert (
        current.changed_services(current.resolved_with(EnvFile.read(current.directory / ".env")))
        == []
    )


def test_restart_levels_and_dependencies_on_the_reference(current: ComposeProject) -> None:
    assert current.restart_levels(current.service_names()) == [
        ["db", "imgproxy", "studio"],
        ["api-gw", "auth", "meta", "realtime", "rest", "supavisor"],
        ["functions", "storage"],
    ]
    # through services outside the set: functions -> api-gw -> studio
    assert current.restart_levels(["functions", "studio"]) == [["studio"], ["functions"]]
    assert current.restart_levels([]) == []
    assert current.dependencies("storage") == {"db", "rest", "imgproxy"}
    assert current.dependencies("functions") == {"api-gw"}
    assert current.dependencies("db") == set()


def test_container_names_and_healthchecks(current: ComposeProject) -> None:
    names = {service: current.container_name(service) for service in current.service_names()}
    assert names == {
        "studio": "supabase-studio",
        "api-gw": "supabase-envoy",
        "auth": "supabase-auth",
        "rest": "supabase-rest",
        "realtime": "realtime-dev.supabase-realtime",
        "storage": "supabase-storage",
        "imgproxy": "supabase-imgproxy",
        "meta": "supabase-meta",
        "functions": "supabase-edge-functions",
        "db": "supabase-db",
        "supavisor": "supabase-pooler",
    }
    assert current.healthcheck("meta") is None
    db = current.healthcheck("db")
    assert db is not None
    assert db["test"] == ["CMD", "pg_isready", "-U", "postgres", "-h", "localhost"]
    assert db["retries"] == 10
    assert (current.healthcheck("studio") or {})["start_period"] == "20s"


def test_double_dollar_in_the_reference_command_is_no_reference(current: ComposeProject) -> None:
    # compose prints its model with every `$` doubled; the model holds what runs
    command = " ".join(current.resolve()["supavisor"]["command"])
    assert '/app/bin/supavisor eval "$(cat /etc/pooler/pooler.exs)"' in command


def test_bind_mounts_are_absolute_paths_in_the_project(current: ComposeProject) -> None:
    mounts = {(m.service, m.target): m.source for m in current.bind_mounts()}
    assert mounts[("supavisor", "/etc/pooler/pooler.exs")] == (
        current.directory / "volumes" / "pooler" / "pooler.exs"
    )
    assert mounts[("db", "/var/lib/postgresql/data")] == current.directory / "volumes/db/data"
    assert all(source.is_absolute() for source in mounts.values())


def test_the_logs_override_adds_analytics_and_vector(tmp_path: Path) -> None:
    project = load(
        copy_reference(REFERENCE_CURRENT, tmp_path, "docker-compose.yml:docker-compose.logs.yml")
    )
    assert {"analytics", "vector"} <= set(project.service_names())
    assert "analytics" in changed(project, POSTGRES_PASSWORD="n3wpassw0rd")
    assert set(changed(project, LOGFLARE_PUBLIC_ACCESS_TOKEN="t" * 40)) == {"analytics", "vector"}
    assert set(changed(project, LOGFLARE_PRIVATE_ACCESS_TOKEN="t" * 40)) == {"studio", "analytics"}
    assert project.dependencies("studio") == {"analytics"}
    assert project.restart_levels(project.service_names()) == [
        ["db", "imgproxy"],
        ["analytics", "auth", "meta", "realtime", "rest", "supavisor"],
        ["storage", "studio", "vector"],
        ["api-gw"],
        ["functions"],
    ]


def test_the_kong_override_replaces_the_gateway_in_place(tmp_path: Path) -> None:
    project = load(
        copy_reference(REFERENCE_CURRENT, tmp_path, "docker-compose.yml:docker-compose.kong.yml")
    )
    assert project.container_name("api-gw") == "supabase-kong"
    assert (project.healthcheck("api-gw") or {})["test"] == ["CMD", "kong", "health"]
    assert "ANON_KEY" not in project.resolve()["api-gw"]["environment"]  # !override
    assert changed(project, DASHBOARD_PASSWORD="pw" * 10) == ["api-gw"]


def test_the_november_2025_layout(tmp_path: Path) -> None:
    project = load(copy_reference(REFERENCE_2025_11, tmp_path))
    assert project.name == "supabase"
    assert "kong" in project.service_names()
    assert "api-gw" not in project.service_names()
    assert set(changed(project, JWT_SECRET="x" * 40)) == {
        "db",  # JWT_SECRET, still passed to db in this layout
        "studio",
        "auth",
        "rest",
        "realtime",
        "storage",
        "functions",
        "supavisor",
    }
    assert project.restart_levels(project.service_names()) == [
        ["imgproxy", "vector"],
        ["db"],
        ["analytics"],
        ["auth", "functions", "kong", "meta", "realtime", "rest", "studio", "supavisor"],
        ["storage"],
    ]


# -- what compose reads that a re-implementation missed --------------------------------------

BASE_ENV = {"POSTGRES_PASSWORD": "old-password-0123", "JWT_SECRET": "j" * 40}
PASSWORD_APP = "services:\n  app: {image: x, environment: {PW: '${POSTGRES_PASSWORD}'}}\n"


def test_a_key_built_from_the_rotated_one_in_env_changes_its_consumers(tmp_path: Path) -> None:
    directory = deploy(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  app: {image: x, environment: {DATABASE_URL: "${DATABASE_URL}"}}
                  other: {image: x, environment: {JWT: "${JWT_SECRET}"}}
            """
        },
        BASE_ENV,
    )
    with (directory / ".env").open("a") as env:
        env.write("DATABASE_URL=postgres://app:${POSTGRES_PASSWORD}@db:5432/app\n")
    project = load(directory)

    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["app"]


def test_a_service_disabled_by_a_profile_is_not_part_of_the_project(tmp_path: Path) -> None:
    files = {
        "compose.yaml": """\
            services:
              api-gw: {image: envoy, environment: {PW: "${POSTGRES_PASSWORD}"}}
              kong: {image: kong, profiles: [kong], environment: {PW: "${POSTGRES_PASSWORD}"}}
        """
    }
    project = load(deploy(tmp_path / "a", files, BASE_ENV))
    assert project.service_names() == ["api-gw"]
    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["api-gw"]
    with pytest.raises(ComposeError, match="profile is not enabled"):
        project.healthcheck("kong")

    enabled = load(deploy(tmp_path / "b", files, {**BASE_ENV, "COMPOSE_PROFILES": "kong"}))
    assert changed(enabled, POSTGRES_PASSWORD="new-password-4567") == ["api-gw", "kong"]


def test_values_from_every_env_file_count(tmp_path: Path) -> None:
    directory = deploy(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  mailer: {image: x, env_file: [./config/mailer.env]}
                  plain: {image: x, env_file: [{path: ./config/missing.env, required: false}]}
            """,
            "config/mailer.env": "DB=postgres://m:${POSTGRES_PASSWORD}@db/m\nLEVEL=info\n",
        },
        BASE_ENV,
    )
    project = load(directory)

    assert project.resolve()["mailer"]["environment"]["DB"] == "postgres://m:old-password-0123@db/m"
    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["mailer"]


def test_a_service_reading_env_itself_follows_the_new_file(tmp_path: Path) -> None:
    # compose given another env file still inlines the .env on disk into `reads`
    directory = deploy(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  reads: {image: x, env_file: .env}
                  pins: {image: x, env_file: .env, environment: {POSTGRES_PASSWORD: fixed-value-1}}
                  ignores: {image: x, environment: {OTHER: "1"}}
            """
        },
        BASE_ENV,
    )
    project = load(directory)
    assert project.dotenv_readers == {"reads", "pins"}

    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["reads"]
    assert changed(project, JWT_SECRET="k" * 40) == ["pins", "reads"]


def test_include_and_extends_are_followed(tmp_path: Path) -> None:
    directory = deploy(
        tmp_path,
        {
            "compose.yaml": """\
                include:
                  - extra/compose.yaml
                services:
                  base: {image: x, environment: {JWT: "${JWT_SECRET}"}}
                  child: {extends: {service: base}, image: y}
                  far: {extends: {file: common.yaml, service: template}}
            """,
            "extra/compose.yaml": """\
                services:
                  included: {image: z, environment: {PW: "${POSTGRES_PASSWORD}"}}
            """,
            "common.yaml": """\
                services:
                  template: {image: t, environment: {PW: "${POSTGRES_PASSWORD}"}}
            """,
        },
        BASE_ENV,
    )
    project = load(directory)

    assert changed(project, JWT_SECRET="k" * 40) == ["base", "child"]
    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["far", "included"]


def test_compose_file_in_env_with_its_own_separator(tmp_path: Path) -> None:
    directory = deploy(
        tmp_path,
        {
            "a.yml": "services:\n  app: {image: a, environment: {PW: x}}\n",
            "sub/b.yml": "services:\n  app: {environment: {PW: '${POSTGRES_PASSWORD}'}}\n",
        },
        {**BASE_ENV, "COMPOSE_FILE": "a.yml;sub/b.yml", "COMPOSE_PATH_SEPARATOR": ";"},
    )
    project = load(directory)

    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["app"]


def test_renamed_services_their_order_and_implicit_dependencies(tmp_path: Path) -> None:
    directory = tmp_path / "renamed"
    shutil.copytree(FIXTURES / "renamed", directory)
    (directory / ".env").write_text(env_text({**BASE_ENV, "ANON_KEY": "anon-key-0123"}))
    project = load(directory)

    assert project.name == "renamed"  # no name: and no COMPOSE_PROJECT_NAME
    assert changed(project, POSTGRES_PASSWORD="new-password-4567") == ["database", "gotrue"]
    assert changed(project, ANON_KEY="anon-key-4567") == ["gateway"]
    assert project.dependencies("worker") == {"gotrue"}  # network_mode: service:gotrue
    assert project.restart_levels(["worker", "database"]) == [["database"], ["worker"]]
    assert project.resolve()["worker"]["command"][2] == "echo $HOSTNAME ${TZ}; sleep infinity"
    assert project.container_name("database") == "acme-pg"
    assert project.container_name("gateway") is None
    # the override replaces healthcheck.test and keeps the base file's interval
    assert project.healthcheck("gotrue") == {"test": ["CMD", "true"], "interval": "5s"}


# -- compose runs apart from the caller's environment -------------------------------------


def test_the_shell_environment_never_reaches_compose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = deploy(
        tmp_path,
        {
            "compose.yaml": PASSWORD_APP,
            "other.yaml": "services:\n  stranger: {image: x}\n",
        },
        BASE_ENV,
    )
    monkeypatch.setenv("POSTGRES_PASSWORD", "from-the-shell")
    monkeypatch.setenv("COMPOSE_FILE", "other.yaml")
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "elsewhere")

    project = load(directory)

    assert project.service_names() == ["app"]
    assert project.name == tmp_path.name.lower()
    assert project.resolve()["app"]["environment"]["PW"] == BASE_ENV["POSTGRES_PASSWORD"]
    assert "POSTGRES_PASSWORD" not in project.command.environment()


def test_values_with_dollars_are_modelled_as_containers_receive_them(tmp_path: Path) -> None:
    values = {"POSTGRES_PASSWORD": "pa$$w$rd ${X} $Y", "JWT_SECRET": "'quoted' # \\ $"}
    project = load(deploy(tmp_path, {"compose.yaml": PASSWORD_APP}, values))

    assert project.resolve()["app"]["environment"]["PW"] == values["POSTGRES_PASSWORD"]
    after = project.resolved_with(EnvFile.read(tmp_path / ".env").replace({"JWT_SECRET": "$"}))
    assert project.changed_services(after) == []


def test_a_required_variable_missing_is_a_compose_error_naming_the_key(tmp_path: Path) -> None:
    directory = deploy(
        tmp_path,
        {"compose.yaml": "services:\n  app: {image: x, environment: {J: '${JWT:?set JWT}'}}\n"},
        BASE_ENV,
    )
    with pytest.raises(ComposeError) as caught:
        load(directory)
    assert "required variable JWT is missing a value: set JWT" in str(caught.value)
    assert BASE_ENV["POSTGRES_PASSWORD"] not in str(caught.value)


def test_compose_messages_are_redacted_of_env_values(tmp_path: Path) -> None:
    # compose quotes the interpolated value in this message: "invalid containerPort: ..."
    secret = "s3cret-port-value-0123"
    directory = deploy(
        tmp_path,
        {"compose.yaml": "services:\n  app: {image: x, ports: ['${POSTGRES_PASSWORD}']}\n"},
        {**BASE_ENV, "POSTGRES_PASSWORD": secret},
    )
    with pytest.raises(ComposeError) as caught:
        load(directory)
    assert secret not in str(caught.value)
    assert REDACTED in str(caught.value)


def test_an_unknown_service_is_a_compose_error(current: ComposeProject) -> None:
    with pytest.raises(ComposeError, match="unknown service"):
        current.container_name("nope")
    with pytest.raises(ComposeError, match="unknown service"):
        current.restart_levels(["db", "nope"])


# -- the temporary env file -----------------------------------------------------------------

RECORDING_COMPOSE = """#!/bin/sh
# `docker compose`, first writing down its arguments and the modes of the env file it gets.
log="$1"; shift
echo "argv: $*" >> "$log"
prev=""
for arg in "$@"; do
    if [ "$prev" = "--env-file" ]; then
        echo "file: $arg $(stat -c %a "$arg") $(stat -c %a "$(dirname "$arg")")" >> "$log"
    fi
    prev="$arg"
done
exec docker compose "$@"
"""


def recording_command(tmp_path: Path) -> tuple[ComposeCommand, Path]:
    script, log = tmp_path / "recording-compose", tmp_path / "compose.log"
    script.write_text(RECORDING_COMPOSE)
    return ComposeCommand(("sh", str(script), str(log))), log


@pytest.mark.parametrize("compose_fails", [False, True])
def test_new_values_reach_compose_in_a_private_file_removed_afterwards(
    tmp_path: Path, compose_fails: bool
) -> None:
    directory = deploy(
        tmp_path / "project",
        {"compose.yaml": PASSWORD_APP.replace("{image: x,", "{image: x, ports: ['${PORT}:80'],")},
        {**BASE_ENV, "PORT": "8080"},
    )
    command, log = recording_command(tmp_path)
    project = ComposeProject.load(directory, command=command)
    new = {
        "POSTGRES_PASSWORD": "new-password-4567",
        "PORT": "not-a-port" if compose_fails else "8081",
    }

    if compose_fails:
        with pytest.raises(ComposeError):
            project.resolved_with(EnvFile.read(directory / ".env").replace(new))
    else:
        assert project.changed_services(
            project.resolved_with(EnvFile.read(directory / ".env").replace(new))
        ) == ["app"]

    text = log.read_text()
    files = [line.split() for line in text.splitlines() if line.startswith("file: ")]
    assert len(files) == 1
    _, path, file_mode, directory_mode = files[0]
    assert (file_mode, directory_mode) == ("600", "700")
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert "new-password-4567" not in text and BASE_ENV["POSTGRES_PASSWORD"] not in text


def test_env_files_left_by_a_killed_process_are_removed_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # read TMPDIR again
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / "tmp" / f"rotator-env-{dead.pid}-abc"
    alive = tmp_path / "tmp" / f"rotator-env-{os.getpid()}-def"
    for directory in (orphan, alive):
        directory.mkdir(mode=0o700)
        (directory / ".env").write_text("POSTGRES_PASSWORD=left-behind-value\n")
    directory = deploy(tmp_path / "project", {"compose.yaml": PASSWORD_APP}, BASE_ENV)
    project = load(directory)

    try:
        project.resolved_with(EnvFile.read(directory / ".env"))
    finally:
        tempfile.tempdir = None

    assert not orphan.exists()
    assert alive.exists()  # a running process's file is its own to remove
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == [alive.name]


# -- compose v2, and nothing else ----------------------------------------------------------

FAKE_V1 = """#!/bin/sh
# Answers as Debian's docker-compose 1.29.2 does: `config --format json` is not an
# option it knows, and it prints its usage (exit 0, as the real one does).
case "$1" in
    version) [ "$2" = "--short" ] && echo 1.29.2 \
                 || echo "docker-compose version 1.29.2, build unknown" ;;
    *) echo "Validate and view the Compose file."; echo; echo "Usage: config [options]" ;;
esac
"""


def test_compose_v1_is_refused_naming_v2_and_how_to_get_it(tmp_path: Path) -> None:
    script = tmp_path / "docker-compose"
    script.write_text(FAKE_V1)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    directory = deploy(
        tmp_path / "project", {"compose.yaml": "services:\n  app: {image: x}\n"}, BASE_ENV
    )

    with pytest.raises(ComposeUnsupported) as caught:
        ComposeProject.load(directory, command=ComposeCommand((str(script),)))

    message = str(caught.value)
    assert "1.29.2 (v1)" in message
    assert "Docker Compose v2" in message and "`docker compose`" in message
    assert "ROTATOR_COMPOSE_COMMAND" in message


def test_a_missing_compose_command_is_refused_naming_v2(tmp_path: Path) -> None:
    directory = deploy(tmp_path, {"compose.yaml": "services:\n  app: {image: x}\n"}, BASE_ENV)
    with pytest.raises(ComposeUnsupported, match="was not found: rotator needs Docker Compose v2"):
        ComposeProject.load(directory, command=ComposeCommand(("no-such-compose-here",)))


def test_the_compose_command_comes_from_rotator_compose_command() -> None:
    command = ComposeCommand.from_environment(
        {
            "ROTATOR_COMPOSE_COMMAND": "'/opt/my compose/bin' --ansi never",
            "DOCKER_HOST": "tcp://h:1",
        }
    )
    assert command.argv == ("/opt/my compose/bin", "--ansi", "never")
    assert command.docker_host == "tcp://h:1"
    assert ComposeCommand.from_environment({}).argv == ("docker", "compose")
    with pytest.raises(ComposeError, match="blank"):
        ComposeCommand.from_environment({"ROTATOR_COMPOSE_COMMAND": "  "})


def test_compose_runs_with_the_allowlisted_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-for-compose")
    monkeypatch.setenv("COMPOSE_PROFILES", "surprise")
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))
    environment = ComposeCommand(("docker", "compose"), "unix:///x.sock").environment()
    assert "SLACK_BOT_TOKEN" not in environment
    assert "COMPOSE_PROFILES" not in environment
    assert environment["DOCKER_HOST"] == "unix:///x.sock"
    assert environment["HOME"] == os.environ["HOME"]


def test_rotator_under_a_v1_compose_command_refuses_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "docker-compose"
    script.write_text(FAKE_V1)
    directory = deploy(
        tmp_path / "project",
        {"compose.yaml": PASSWORD_APP.replace("POSTGRES_PASSWORD", "DASHBOARD_PASSWORD")},
        {**BASE_ENV, "DASHBOARD_PASSWORD": "old-dashboard-password-1"},
    )
    before = sorted((p.name, p.read_bytes()) for p in directory.iterdir())
    monkeypatch.setenv("ROTATOR_COMPOSE_COMMAND", f"sh {script}")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    codes = [
        main(["plan", "dashboard-password", "--project", str(directory)]),
        main(["rotate", "dashboard-password", "--project", str(directory), "--yes"]),
    ]

    _, err = capsys.readouterr()
    assert codes == [2, 2]
    assert err.count("1.29.2 (v1)") == 2 and err.count("rotator needs Docker Compose v2") == 2
    assert sorted((p.name, p.read_bytes()) for p in directory.iterdir()) == before
