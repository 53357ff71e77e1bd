"""core.compose on the upstream Supabase files and on small projects of our own.

The expected service sets below were read off the YAML by hand (grep for the
variable, skip commented lines); they are stated literally so that a change
upstream or in the merge rules shows up as a failing test, not a silent drift.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from dotenv import dotenv_values

from core.compose import ComposeProject, normalise_project_name
from core.errors import ComposeError
from tests.conftest import REFERENCE_2025_11, REFERENCE_CURRENT, reference_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compose"


def env_example(directory: Path) -> dict[str, str]:
    """The reference `.env.example`, as compose reads it (no value means empty)."""
    values = dotenv_values(directory / ".env.example", interpolate=False)
    return {key: value or "" for key, value in values.items()}


def changed(project: ComposeProject, env: dict[str, str], **new: str) -> list[str]:
    return project.changed_services(env, {**env, **new})


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(dedent(text))
    return directory


# -- the current upstream layout (v0.8.2) ----------------------------------------------


@pytest.fixture(scope="module")
def current() -> tuple[ComposeProject, dict[str, str]]:
    directory = reference_dir(REFERENCE_CURRENT)
    env = env_example(directory)
    return ComposeProject.load(directory, env), env


def test_current_layout_uses_compose_file_from_env(current: tuple[ComposeProject, dict]) -> None:
    project, env = current
    assert env["COMPOSE_FILE"] == "docker-compose.yml"
    assert project.files == (project.directory / "docker-compose.yml",)
    assert project.name == "supabase"
    assert set(project.service_names()) == {
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


def test_raw_model_is_not_interpolated(current: tuple[ComposeProject, dict]) -> None:
    project, _ = current
    db = project.raw["services"]["db"]
    assert db["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
    assert db["environment"]["PGPASSWORD"] == "${POSTGRES_PASSWORD}"
    rest = project.raw["services"]["rest"]
    assert rest["environment"]["PGRST_JWT_SECRET"] == "${JWT_JWKS:-${JWT_SECRET}}"


def test_postgres_password_touches_exactly_its_consumers(
    current: tuple[ComposeProject, dict],
) -> None:
    project, env = current
    services = changed(project, env, POSTGRES_PASSWORD="n3wpassw0rd")
    assert set(services) == {
        "db",
        "auth",
        "rest",
        "realtime",
        "storage",
        "meta",
        "studio",
        "functions",
        "supavisor",
    }
    # restart order: db (and studio, which needs nothing) first, storage after rest
    assert services == [
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
    db = project.resolve({**env, "POSTGRES_PASSWORD": "n3wpassw0rd"})["db"]["environment"]
    assert db["POSTGRES_PASSWORD"] == db["PGPASSWORD"] == "n3wpassw0rd"


def test_jwt_secret_touches_the_services_whose_env_uses_it(
    current: tuple[ComposeProject, dict],
) -> None:
    project, env = current
    assert env["JWT_JWKS"] == ""
    assert set(changed(project, env, JWT_SECRET="x" * 40)) == {
        "studio",  # AUTH_JWT_SECRET
        "auth",  # GOTRUE_JWT_SECRET
        "rest",  # PGRST_JWT_SECRET: ${JWT_JWKS:-${JWT_SECRET}}, JWT_JWKS empty
        "realtime",  # API_JWT_SECRET, METRICS_JWT_SECRET
        "storage",  # AUTH_JWT_SECRET
        "functions",  # JWT_SECRET
        "supavisor",  # API_JWT_SECRET, METRICS_JWT_SECRET
    }


def test_rest_ignores_jwt_secret_once_jwt_jwks_is_set(
    current: tuple[ComposeProject, dict],
) -> None:
    project, env = current
    with_jwks = {**env, "JWT_JWKS": '{"keys":[]}'}
    services = changed(project, with_jwks, JWT_SECRET="x" * 40)
    assert "rest" not in services
    assert "auth" in services


def test_anon_key_includes_realtime_through_its_healthcheck(
    current: tuple[ComposeProject, dict],
) -> None:
    project, env = current
    after = {**env, "ANON_KEY": "new.anon.key"}
    assert set(project.changed_services(env, after)) == {
        "studio",
        "api-gw",
        "realtime",
        "storage",
        "functions",
    }
    old, new = project.resolve(env)["realtime"], project.resolve(after)["realtime"]
    assert old["environment"] == new["environment"]
    assert old["healthcheck"] != new["healthcheck"]
    assert "Bearer new.anon.key" in new["healthcheck"]["test"][1]


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
def test_other_keys(current: tuple[ComposeProject, dict], key: str, services: set[str]) -> None:
    project, env = current
    assert set(changed(project, env, **{key: "changed-value"})) == services


def test_unchanged_env_changes_nothing(current: tuple[ComposeProject, dict]) -> None:
    project, env = current
    assert project.changed_services(env, dict(env)) == []


def test_restart_levels_on_the_reference(current: tuple[ComposeProject, dict]) -> None:
    project, _ = current
    assert project.restart_levels(project.service_names()) == [
        ["db", "imgproxy", "studio"],
        ["api-gw", "auth", "meta", "realtime", "rest", "supavisor"],
        ["functions", "storage"],
    ]
    # through services outside the set: functions -> api-gw -> studio
    assert project.restart_levels(["functions", "studio"]) == [["studio"], ["functions"]]
    assert project.restart_levels(["storage", "db"]) == [["db"], ["storage"]]
    assert project.restart_levels([]) == []


def test_dependencies_on_the_reference(current: tuple[ComposeProject, dict]) -> None:
    project, _ = current
    assert project.dependencies("storage") == {"db", "rest", "imgproxy"}
    assert project.dependencies("api-gw") == {"studio"}
    assert project.dependencies("functions") == {"api-gw"}
    assert project.dependencies("db") == set()


def test_container_names_and_healthchecks(current: tuple[ComposeProject, dict]) -> None:
    project, env = current
    names = {service: project.container_name(service, env) for service in project.service_names()}
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
    assert project.healthcheck("meta", env) is None
    db = project.healthcheck("db", env)
    assert db is not None
    assert db["test"] == ["CMD", "pg_isready", "-U", "postgres", "-h", "localhost"]
    assert db["retries"] == 10


def test_double_dollar_in_the_reference_command(current: tuple[ComposeProject, dict]) -> None:
    project, env = current
    command = project.resolve(env)["supavisor"]["command"]
    assert command[2] == (
        '/app/bin/migrate && /app/bin/supavisor eval "$(cat /etc/pooler/pooler.exs)"'
        " && /app/bin/server"
    )


def test_logs_override_adds_analytics_and_vector() -> None:
    directory = reference_dir(REFERENCE_CURRENT)
    env = {**env_example(directory), "COMPOSE_FILE": "docker-compose.yml:docker-compose.logs.yml"}
    project = ComposeProject.load(directory, env)
    assert project.files == (
        directory / "docker-compose.yml",
        directory / "docker-compose.logs.yml",
    )
    assert {"analytics", "vector"} <= set(project.service_names())
    assert set(changed(project, env, POSTGRES_PASSWORD="n3w")) == {
        "db",
        "auth",
        "rest",
        "realtime",
        "storage",
        "meta",
        "studio",
        "functions",
        "supavisor",
        "analytics",  # DB_PASSWORD, POSTGRES_BACKEND_URL
    }
    assert set(changed(project, env, LOGFLARE_PUBLIC_ACCESS_TOKEN="t")) == {"analytics", "vector"}
    assert set(changed(project, env, LOGFLARE_PRIVATE_ACCESS_TOKEN="t")) == {"studio", "analytics"}
    # studio's environment is merged key by key with the base file's
    studio = project.resolve(env)["studio"]
    assert studio["environment"]["ENABLED_FEATURES_LOGS_ALL"] == "true"
    assert studio["environment"]["AUTH_JWT_SECRET"] == env["JWT_SECRET"]
    assert project.dependencies("studio") == {"analytics"}
    assert project.dependencies("vector") == {"analytics"}
    assert project.restart_levels(project.service_names()) == [
        ["db", "imgproxy"],
        ["analytics", "auth", "meta", "realtime", "rest", "supavisor"],
        ["storage", "studio", "vector"],
        ["api-gw"],
        ["functions"],
    ]


def test_kong_override_replaces_the_gateway_in_place() -> None:
    directory = reference_dir(REFERENCE_CURRENT)
    env = {**env_example(directory), "COMPOSE_FILE": "docker-compose.yml:docker-compose.kong.yml"}
    project = ComposeProject.load(directory, env)
    gateway = project.resolve(env)["api-gw"]
    assert project.container_name("api-gw", env) == "supabase-kong"
    assert gateway["image"] == "kong/kong:3.9.3"
    # !override: the envoy environment, ports, volumes and entrypoint are gone, not merged
    assert "ANON_KEY" not in gateway["environment"]
    assert gateway["environment"]["SUPABASE_ANON_KEY"] == env["ANON_KEY"]
    assert gateway["environment"]["KONG_DATABASE"] == "off"
    assert gateway["ports"] == ["8000:8000/tcp", "8443:8443/tcp"]
    assert gateway["volumes"] == [
        "./volumes/api/kong.yml:/home/kong/temp.yml:ro,z",
        "./volumes/api/kong-entrypoint.sh:/home/kong/kong-entrypoint.sh:ro,z",
    ]
    assert gateway["entrypoint"] == ["/bin/sh", "/home/kong/kong-entrypoint.sh"]
    assert project.healthcheck("api-gw", env) == {
        "test": ["CMD", "kong", "health"],
        "interval": "5s",
        "timeout": "5s",
        "retries": 5,
    }
    # what the override does not mention is kept from the base file
    assert gateway["networks"] == {"default": {"aliases": ["envoy", "kong"]}}
    assert project.dependencies("api-gw") == {"studio"}
    assert set(changed(project, env, DASHBOARD_PASSWORD="pw")) == {"api-gw"}
    assert set(changed(project, env, ANON_KEY="k")) == {
        "studio",
        "api-gw",
        "realtime",
        "storage",
        "functions",
    }
    assert set(changed(project, env, API_EXTERNAL_URL="https://x.test")) == {"auth", "api-gw"}


def test_november_2025_layout() -> None:
    directory = reference_dir(REFERENCE_2025_11)
    env = env_example(directory)
    assert "COMPOSE_FILE" not in env
    project = ComposeProject.load(directory, env)
    assert project.files == (directory / "docker-compose.yml",)
    assert project.name == "supabase"
    assert "kong" in project.service_names()
    assert "api-gw" not in project.service_names()
    assert set(changed(project, env, POSTGRES_PASSWORD="n3w")) == {
        "db",
        "auth",
        "rest",
        "realtime",
        "storage",
        "meta",
        "studio",
        "functions",
        "supavisor",
        "analytics",
    }
    assert set(changed(project, env, JWT_SECRET="x" * 40)) == {
        "db",  # JWT_SECRET, still passed to db in this layout
        "studio",
        "auth",
        "rest",
        "realtime",
        "storage",
        "functions",
        "supavisor",
    }
    assert set(changed(project, env, ANON_KEY="k")) == {
        "studio",
        "kong",
        "realtime",  # through its healthcheck
        "storage",
        "functions",
    }
    assert project.restart_levels(project.service_names()) == [
        ["imgproxy", "vector"],
        ["db"],
        ["analytics"],
        ["auth", "functions", "kong", "meta", "realtime", "rest", "studio", "supavisor"],
        ["storage"],
    ]
    assert project.container_name("kong", env) == "supabase-kong"


# -- our own fixture project: renamed services and an override file --------------------

RENAMED_ENV = {
    "POSTGRES_PASSWORD": "pw1",
    "JWT_SECRET": "j" * 40,
    "ANON_KEY": "anon",
    "POSTGRES_DB": "ignored",
}


@pytest.fixture
def renamed() -> ComposeProject:
    return ComposeProject.load(FIXTURES / "renamed", RENAMED_ENV)


def test_default_files_include_the_override(renamed: ComposeProject) -> None:
    directory = FIXTURES / "renamed"
    assert renamed.files == (directory / "compose.yaml", directory / "compose.override.yaml")
    assert renamed.name == "renamed"  # no name: and no COMPOSE_PROJECT_NAME
    assert renamed.service_names() == ["database", "gotrue", "gateway", "worker"]


def test_environment_list_and_mapping_forms_merge_by_key(renamed: ComposeProject) -> None:
    raw = renamed.raw["services"]
    assert raw["database"]["environment"] == {
        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}",
        "PGPASSWORD": "${POSTGRES_PASSWORD}",
        "POSTGRES_DB": "app",  # bare in compose.yaml, set by the override
    }
    assert raw["gotrue"]["environment"] == {
        "DB_URL": "postgres://auth:${POSTGRES_PASSWORD}@database/app",
        "JWT_SECRET": "${JWT_SECRET:?set JWT_SECRET in .env}",
        "SITE_URL": "https://example.test",  # list form over mapping form
        "MAILER": "${SMTP_HOST:+smtp}",
        "EXTRA_FLAG": "1",
    }
    assert raw["gateway"]["labels"] == {
        "com.example.tier": "edge-override",
        "com.example.owner": "platform",
    }


def test_override_replaces_command_and_healthcheck_test(renamed: ComposeProject) -> None:
    resolved = renamed.resolve(RENAMED_ENV)
    assert resolved["gateway"]["command"] == ["kong", "start", "--v"]
    assert renamed.healthcheck("gotrue", RENAMED_ENV) == {"test": ["CMD", "true"], "interval": "5s"}
    assert renamed.healthcheck("gateway", RENAMED_ENV) is None


def test_sequences_append_then_deduplicate(renamed: ComposeProject) -> None:
    resolved = renamed.resolve(RENAMED_ENV)
    # the same port twice, once: de-duplicated
    assert resolved["database"]["ports"] == ["127.0.0.1:5432:5432"]
    # the same target twice: the override's source wins, in place
    assert resolved["database"]["volumes"] == ["./data-override:/var/lib/postgresql/data"]
    assert resolved["gateway"]["ports"] == ["8000:8000"]


def test_depends_on_forms_merge_and_take_defaults(renamed: ComposeProject) -> None:
    assert renamed.raw["services"]["gateway"]["depends_on"] == {
        "gotrue": {"condition": "service_healthy", "required": True},
        "database": {"condition": "service_started", "required": True},
    }
    assert renamed.dependencies("gateway") == {"gotrue", "database"}
    assert renamed.dependencies("worker") == {"gotrue"}  # network_mode: service:gotrue


def test_renamed_services_changes_and_order(renamed: ComposeProject) -> None:
    env = RENAMED_ENV
    assert changed(renamed, env, POSTGRES_PASSWORD="pw2") == ["database", "gotrue"]
    assert changed(renamed, env, JWT_SECRET="k" * 40) == ["gotrue"]
    assert changed(renamed, env, ANON_KEY="other") == ["gateway"]
    assert changed(renamed, env, TZ="UTC") == ["worker"]  # a bare `- TZ` inherits from env
    assert changed(renamed, env, HOSTNAME="h") == []  # only ever written as $$HOSTNAME
    assert renamed.restart_levels(renamed.service_names()) == [
        ["database"],
        ["gotrue"],
        ["gateway", "worker"],
    ]
    # worker -> gotrue (outside the set) -> database
    assert renamed.restart_levels(["worker", "database"]) == [["database"], ["worker"]]


def test_dash_default_keeps_an_empty_value(renamed: ComposeProject) -> None:
    unset = renamed.resolve(RENAMED_ENV)
    empty = renamed.resolve({**RENAMED_ENV, "DB_PORT": "", "SITE_URL": ""})
    assert unset["database"]["ports"] == ["127.0.0.1:5432:5432"]
    assert empty["database"]["ports"] == ["127.0.0.1::5432"]
    # SITE_URL comes from the override, not from ${SITE_URL-...}
    assert empty["gotrue"]["environment"]["SITE_URL"] == "https://example.test"


def test_resolved_values(renamed: ComposeProject) -> None:
    resolved = renamed.resolve({**RENAMED_ENV, "SMTP_HOST": "mail", "TZ": "Europe/Paris"})
    assert resolved["gotrue"]["environment"]["MAILER"] == "smtp"
    assert resolved["gotrue"]["environment"]["DB_URL"] == "postgres://auth:pw1@database/app"
    assert resolved["worker"]["environment"] == {"TZ": "Europe/Paris"}
    assert resolved["worker"]["command"] == 'sh -c "echo $HOSTNAME ${TZ}; sleep infinity"'
    assert renamed.resolve(RENAMED_ENV)["worker"]["environment"] == {"TZ": None}
    no_smtp = renamed.resolve({**RENAMED_ENV, "SMTP_HOST": ""})
    assert no_smtp["gotrue"]["environment"]["MAILER"] == ""


def test_container_name_is_interpolated(renamed: ComposeProject) -> None:
    assert renamed.container_name("database", RENAMED_ENV) == "acme-pg"
    assert renamed.container_name("database", {**RENAMED_ENV, "STACK": ""}) == "acme-pg"
    assert renamed.container_name("database", {**RENAMED_ENV, "STACK": "prod"}) == "prod-pg"
    assert renamed.container_name("gateway", RENAMED_ENV) is None


def test_required_variable_missing_fails_load_and_names_only_the_key() -> None:
    env = {key: value for key, value in RENAMED_ENV.items() if key != "JWT_SECRET"}
    with pytest.raises(ComposeError) as caught:
        ComposeProject.load(FIXTURES / "renamed", env)
    message = str(caught.value)
    assert "JWT_SECRET" in message
    assert "services.gotrue.environment.JWT_SECRET" in message
    assert "compose.yaml" in message
    assert "pw1" not in message and "anon" not in message


def test_unknown_service_is_a_compose_error(renamed: ComposeProject) -> None:
    with pytest.raises(ComposeError, match="unknown service"):
        renamed.container_name("nope", RENAMED_ENV)
    with pytest.raises(ComposeError, match="unknown service"):
        renamed.restart_levels(["database", "nope"])
    with pytest.raises(ComposeError, match="unknown service"):
        renamed.dependencies("nope")


# -- files and names -----------------------------------------------------------------

MINIMAL = "services:\n  app:\n    image: busybox\n"


def test_compose_yaml_wins_over_docker_compose_yml(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "docker-compose.yml": "services:\n  old:\n    image: a\n",
            "compose.yaml": MINIMAL,
            "docker-compose.override.yml": "services:\n  extra:\n    image: b\n",
        },
    )
    project = ComposeProject.load(tmp_path, {})
    # the override is the first existing override name, whichever the main file was
    assert project.files == (tmp_path / "compose.yaml", tmp_path / "docker-compose.override.yml")
    assert project.service_names() == ["app", "extra"]


def test_compose_file_with_a_custom_separator(tmp_path: Path) -> None:
    write(tmp_path, {"a.yml": MINIMAL, "sub/b.yml": "services:\n  app:\n    image: other\n"})
    env = {"COMPOSE_FILE": "a.yml;sub/b.yml", "COMPOSE_PATH_SEPARATOR": ";"}
    project = ComposeProject.load(tmp_path, env)
    assert project.files == (tmp_path / "a.yml", tmp_path / "sub" / "b.yml")
    assert project.resolve(env)["app"]["image"] == "other"


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no compose file"):
        ComposeProject.load(tmp_path, {})
    write(tmp_path, {"docker-compose.yml": MINIMAL})
    env = {"COMPOSE_FILE": "docker-compose.yml:docker-compose.logs.yml"}
    with pytest.raises(ComposeError, match=r"not found: .*docker-compose\.logs\.yml"):
        ComposeProject.load(tmp_path, env)
    with pytest.raises(ComposeError, match="empty entry"):
        ComposeProject.load(tmp_path, {"COMPOSE_FILE": "docker-compose.yml:"})


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services:\n  app:\n    image: [busybox\n  other: x\n"})
    with pytest.raises(ComposeError, match=r"compose\.yaml:\d+:\d+: "):
        ComposeProject.load(tmp_path, {})


def test_duplicate_keys_are_an_error_as_in_compose(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"compose.yaml": "services:\n  app:\n    image: a\n    image: b\n"},
    )
    with pytest.raises(ComposeError, match=r"compose\.yaml:4:5: duplicate key image"):
        ComposeProject.load(tmp_path, {})


def test_yaml_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services:\n  app:\n    password: 'hunter2\n"})
    with pytest.raises(ComposeError) as caught:
        ComposeProject.load(tmp_path, {})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "top level must be a mapping"),
        ("services: [a]\n", "services must be a mapping"),
        ("services:\n  app: 3\n", "services.app must be a mapping"),
        ("services:\n  app:\n    extends: base\n", "extends is not supported"),
        ("include:\n  - other.yaml\nservices: {}\n", "include is not supported"),
        ("services:\n  app:\n    environment: 5\n", "must be a list or a mapping"),
        ("services:\n  app:\n    environment:\n      A: [1]\n", "must be a string"),
    ],
)
def test_unsupported_shapes(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, {"compose.yaml": text})
    with pytest.raises(ComposeError, match=message):
        ComposeProject.load(tmp_path, {})


def test_project_name_precedence(tmp_path: Path) -> None:
    directory = write(
        tmp_path / "My Stack.Prod", {"compose.yaml": "name: ${STACK:-Main_Stack}\n" + MINIMAL}
    )
    assert ComposeProject.load(directory, {}).name == "main_stack"
    assert ComposeProject.load(directory, {"STACK": "Blue.Green"}).name == "bluegreen"
    # COMPOSE_PROJECT_NAME beats name: (compose-go withNamePrecedenceLoad)
    assert ComposeProject.load(directory, {"COMPOSE_PROJECT_NAME": "ops"}).name == "ops"
    assert ComposeProject.load(directory, {"COMPOSE_PROJECT_NAME": ""}).name == "main_stack"
    with pytest.raises(ComposeError, match="COMPOSE_PROJECT_NAME"):
        ComposeProject.load(directory, {"COMPOSE_PROJECT_NAME": "Not Valid"})
    # no name: the directory's base name, normalised
    (directory / "compose.yaml").write_text(MINIMAL)
    assert ComposeProject.load(directory, {}).name == "mystackprod"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("supabase", "supabase"), ("My App", "myapp"), ("_-x.Y", "xy"), ("a_b-c", "a_b-c"), ("", "")],
)
def test_normalise_project_name(raw: str, normalised: str) -> None:
    assert normalise_project_name(raw) == normalised


# -- merge rules ---------------------------------------------------------------------


def test_reset_and_override_tags(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  app:
                    image: a
                    ports: ["80:80", "443:443"]
                    environment: {KEEP: "1", DROP: "2"}
                    depends_on: [db]
                  db:
                    image: postgres
                  scratch:
                    image: busybox
            """,
            "compose.override.yaml": """\
                services:
                  app:
                    ports: !reset []
                    environment:
                      DROP: !reset
                      NEW: "3"
                    depends_on: !override
                      other:
                        condition: service_healthy
                  other:
                    image: x
                  scratch: !reset
            """,
        },
    )
    project = ComposeProject.load(tmp_path, {})
    app = project.resolve({})["app"]
    assert "ports" not in app
    assert app["environment"] == {"KEEP": "1", "NEW": "3"}
    assert app["depends_on"] == {"other": {"condition": "service_healthy", "required": True}}
    assert project.service_names() == ["app", "db", "other"]


def test_yaml_core_schema_as_compose_reads_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                x-values: {a: yes, b: on, c: 0755, d: 1:30, e: 0o17, f: 0x1F, g: true, h: ~, i: 1.5}
                services:
                  app:
                    image: a
                    environment:
                      FLAG: yes
                      PORT: 4000
                      ON: true
                    override: !override 5
            """
        },
    )
    raw = ComposeProject.load(tmp_path, {}).raw
    assert raw["x-values"] == {
        "a": "yes",
        "b": "on",
        "c": 755,
        "d": "1:30",
        "e": 15,
        "f": 31,
        "g": True,
        "h": None,
        "i": 1.5,
    }
    assert raw["services"]["app"]["environment"] == {"FLAG": "yes", "PORT": "4000", "ON": "true"}
    assert raw["services"]["app"]["override"] == 5


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                x-common: &common
                  image: base
                  environment: {SHARED: "${SHARED}"}
                services:
                  one:
                    <<: *common
                  two:
                    <<: *common
                    image: own
            """
        },
    )
    project = ComposeProject.load(tmp_path, {"SHARED": "s"})
    resolved = project.resolve({"SHARED": "s"})
    assert resolved["one"] == {"image": "base", "environment": {"SHARED": "s"}}
    assert resolved["two"]["image"] == "own"
    assert project.changed_services({"SHARED": "s"}, {"SHARED": "t"}) == ["one", "two"]


def test_logging_merges_only_for_the_same_driver(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  same:
                    image: a
                    logging: {driver: json-file, options: {max-size: 1m}}
                  other:
                    image: a
                    logging: {driver: json-file, options: {max-size: 1m}}
            """,
            "compose.override.yaml": """\
                services:
                  same:
                    logging: {driver: json-file, options: {max-file: "3"}}
                  other:
                    logging: {driver: syslog}
            """,
        },
    )
    resolved = ComposeProject.load(tmp_path, {}).resolve({})
    assert resolved["same"]["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "1m", "max-file": "3"},
    }
    assert resolved["other"]["logging"] == {"driver": "syslog"}


def test_unknown_dependency_and_optional_dependency(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services:\n  app:\n    image: a\n    depends_on: [db]\n"})
    with pytest.raises(ComposeError, match="app depends on undefined service db"):
        ComposeProject.load(tmp_path, {})
    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    image: a\n    depends_on:\n      db:\n        required: false\n"
    )
    project = ComposeProject.load(tmp_path, {})
    assert project.dependencies("app") == set()


def test_dependency_cycle_is_a_compose_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  a: {image: x, depends_on: [b]}
                  b: {image: x, depends_on: [c]}
                  c: {image: x, depends_on: [a], environment: {V: "${V}"}}
                  d: {image: x, depends_on: [d]}
                  e: {image: x}
            """
        },
    )
    project = ComposeProject.load(tmp_path, {})
    with pytest.raises(ComposeError, match="dependency cycle: a -> b -> c -> a"):
        project.restart_levels(["a"])
    with pytest.raises(ComposeError, match="dependency cycle"):
        project.changed_services({"V": "1"}, {"V": "2"})
    with pytest.raises(ComposeError, match="dependency cycle: d -> d"):
        project.restart_levels(["d", "e"])
    assert project.restart_levels(["e"]) == [["e"]]


def test_implicit_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": """\
                services:
                  base: {image: x}
                  data: {image: x}
                  linked: {image: x, links: ["base:alias"]}
                  shared: {image: x, volumes_from: ["data:ro", "container:elsewhere"]}
                  ns: {image: x, ipc: "service:base", pid: "host"}
            """
        },
    )
    project = ComposeProject.load(tmp_path, {})
    assert project.dependencies("linked") == {"base"}
    assert project.dependencies("shared") == {"data"}
    assert project.dependencies("ns") == {"base"}


def test_a_service_loading_dotenv_through_env_file_changes_with_any_key(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SMTP_PASS=a\nOTHER=b\n")
    (tmp_path / "docker-compose.yml").write_text(
        dedent(
            """
            services:
              mailer:
                image: x
                env_file: .env
              worker:
                image: x
                env_file: [{path: ./other.env, required: false}]
              api:
                image: x
            """
        )
    )
    project = ComposeProject.load(tmp_path, {"SMTP_PASS": "a", "OTHER": "b"})

    changed = project.changed_services({"SMTP_PASS": "a"}, {"SMTP_PASS": "c"})

    assert changed == ["mailer"]
    assert project.changed_services({"SMTP_PASS": "a"}, {"SMTP_PASS": "a"}) == []
