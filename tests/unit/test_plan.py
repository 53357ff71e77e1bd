"""`rotator plan SECRET --json` on the upstream layouts and on a renamed deployment.

The expected services below were read off the compose files by hand, key by key:
which services' resolved definitions mention the secret's `.env` keys. The code
under test reads the same files; nothing in rotator lists service names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml

from core.catalogue import CATALOGUE, DB_ROLES, RotationOptions, describe_impact, get_secret
from core.cli import main
from tests.conftest import REFERENCE_2025_11, REFERENCE_CURRENT, reference_dir

pytestmark = pytest.mark.compose  # plans come from `docker compose config`

RENAMED = Path(__file__).resolve().parents[1] / "fixtures" / "renamed-deployment"

POSTGRES_ROLES = list(DB_ROLES)

# --- helpers ----------------------------------------------------------------------------


def deploy_reference(reference: Path, target: Path, compose_file: str | None = None) -> Path:
    """Copy an upstream layout (read-only, `.env.example`) into a deployment directory."""
    source = reference_dir(reference)
    for path in sorted(source.glob("docker-compose*.yml")):
        shutil.copyfile(path, target / path.name)
    env = (source / ".env.example").read_text()
    if compose_file is not None:
        lines = [line for line in env.splitlines() if not line.startswith("COMPOSE_FILE=")]
        env = "\n".join([*lines, f"COMPOSE_FILE={compose_file}", ""])
    (target / ".env").write_text(env)
    return target


def deploy_renamed(target: Path) -> Path:
    for name in ("compose.yaml", "compose.override.yaml"):
        shutil.copyfile(RENAMED / name, target / name)
    shutil.copyfile(RENAMED / "env", target / ".env")
    return target


def plan_json(capsys: pytest.CaptureFixture[str], secret: str, project: Path) -> dict[str, Any]:
    code = main(["plan", secret, "--project", str(project), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    plan: dict[str, Any] = json.loads(out)
    return plan


def compose_files(project: Path) -> list[Path]:
    for line in (project / ".env").read_text().splitlines():
        if line.startswith("COMPOSE_FILE="):
            return [project / name for name in line.split("=", 1)[1].split(":")]
    found = [project / n for n in ("compose.yaml", "compose.override.yaml")]
    return [p for p in found if p.exists()] or [project / "docker-compose.yml"]


def direct_dependencies(project: Path) -> dict[str, dict[str, str]]:
    """Service -> {dependency: condition} from its depends_on, from the files themselves
    (a list means service_started, as compose reads it)."""
    direct: dict[str, dict[str, str]] = {}
    for path in compose_files(project):
        document = yaml.safe_load(path.read_text()) or {}
        for name, service in (document.get("services") or {}).items():
            deps = (service or {}).get("depends_on") or []
            if isinstance(deps, list):
                deps = {dep: {"condition": "service_started"} for dep in deps}
            found = direct.setdefault(name, {})
            for dep, entry in deps.items():
                found[dep] = (entry or {}).get("condition", "service_started")
    return direct


def assert_dependents_first(project: Path, plan: dict[str, Any]) -> None:
    """Every planned service before the planned ones it needs healthy (their running
    containers serve it meanwhile: core.restart), after those it needs started (compose
    starts those first in the same call), and the database last."""
    services, last = plan["services"], plan["restart_last"]
    direct = direct_dependencies(project)
    position = {name: index for index, name in enumerate(services)}
    for name in set(services) - set(last):
        for dep, condition in direct[name].items():
            if dep not in position or dep in last:
                continue
            if condition == "service_started":
                assert position[dep] < position[name], f"{name} comes before {dep}"
            else:
                assert position[dep] > position[name], f"{name} comes after {dep}"
    assert services[len(services) - len(last) :] == last
    assert len(last) <= 1  # the database service, whatever its name


def assert_plan_shape(plan: dict[str, Any], secret: str) -> None:
    assert plan["secret"] == secret
    assert plan["impact"] == describe_impact(get_secret(secret), RotationOptions())[0]
    assert plan["impact"].strip()
    for key in ("env_keys", "services", "db_roles"):
        assert isinstance(plan[key], list), key
    flattened = [s for level in plan["restart_levels"] for s in level]
    assert flattened == plan["services"]


# --- the current upstream layout (docker-compose.yml, service api-gw) ---------------------

CURRENT: dict[str, tuple[list[str], list[str]]] = {
    # secret: (env_keys, services in restart order)
    "postgres-password": (
        ["POSTGRES_PASSWORD"],
        # everything on db at once (db runs on, with the new password already; storage
        # after rest, which compose starts first), db last; functions waits for the
        # gateway, which is not recreated
        ["studio", "auth", "functions", "meta", "realtime", "rest", "supavisor", "storage", "db"],
    ),
    "jwt-secret": (
        # JWT_KEYS and JWT_JWKS are empty in .env.example, so they are left alone
        ["ANON_KEY", "JWT_SECRET", "SERVICE_ROLE_KEY"],
        # JWT_SECRET: studio auth rest realtime storage functions supavisor;
        # ANON_KEY/SERVICE_ROLE_KEY: also api-gw (and realtime's health check)
        # functions before the gateway it waits for, the gateway before Studio
        ["auth", "realtime", "rest", "supavisor", "storage", "functions", "api-gw", "studio"],
    ),
    "api-keys": (
        ["ANON_KEY", "SERVICE_ROLE_KEY"],
        # functions before the gateway it waits for, the gateway before Studio
        ["realtime", "storage", "functions", "api-gw", "studio"],
    ),
    "dashboard-password": (["DASHBOARD_PASSWORD"], ["api-gw"]),
    "s3-protocol-keys": (
        ["S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET"],
        ["storage"],
    ),
    "smtp": (["SMTP_PASS"], ["auth"]),
    "openai-api-key": (["OPENAI_API_KEY"], ["studio"]),
    "secret-key-base": (["SECRET_KEY_BASE"], ["realtime", "supavisor"]),
    "vault-enc-key": (["VAULT_ENC_KEY"], ["supavisor"]),
    "pg-meta-crypto-key": (["PG_META_CRYPTO_KEY"], ["meta", "studio"]),
    # only docker-compose.logs.yml consumes the Logflare tokens
    "logflare-tokens": (["LOGFLARE_PRIVATE_ACCESS_TOKEN", "LOGFLARE_PUBLIC_ACCESS_TOKEN"], []),
    "all": (
        [
            "ANON_KEY",
            "DASHBOARD_PASSWORD",
            "JWT_SECRET",
            "LOGFLARE_PRIVATE_ACCESS_TOKEN",
            "LOGFLARE_PUBLIC_ACCESS_TOKEN",
            "PG_META_CRYPTO_KEY",
            "POSTGRES_PASSWORD",
            "S3_PROTOCOL_ACCESS_KEY_ID",
            "S3_PROTOCOL_ACCESS_KEY_SECRET",
            "SECRET_KEY_BASE",
            "SERVICE_ROLE_KEY",
            "VAULT_ENC_KEY",
        ],
        # every service but imgproxy, which holds no secret; db last
        [
            "auth",
            "meta",
            "realtime",
            "rest",
            "supavisor",
            "functions",
            "storage",
            "api-gw",
            "studio",
            "db",
        ],
    ),
}


@pytest.mark.parametrize("secret", sorted(CURRENT))
def test_plan_on_the_current_layout_names_the_keys_services_and_roles(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_CURRENT, tmp_path)

    plan = plan_json(capsys, secret, project)

    assert_plan_shape(plan, secret)
    keys, services = CURRENT[secret]
    assert plan["env_keys"] == keys
    assert plan["services"] == services
    has_roles = secret in ("postgres-password", "all")
    assert plan["db_roles"] == (POSTGRES_ROLES if has_roles else [])
    assert_dependents_first(project, plan)


def test_every_rotatable_catalogue_secret_is_covered_on_the_current_layout() -> None:
    rotatable = {name for name, secret in CATALOGUE.items() if secret.rotatable}
    # .env.example leaves the new keys empty: those two are refused there (tested below)
    assert rotatable == set(CURRENT) | {"opaque-api-keys", "jwt-signing-key"}


def test_logflare_tokens_without_the_logs_override_change_env_and_say_nothing_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_CURRENT, tmp_path)

    plan = plan_json(capsys, "logflare-tokens", project)

    assert plan["services"] == []
    assert plan["restart_levels"] == []
    assert any("nothing is recreated" in note for note in plan["notes"]), plan["notes"]


LOGS = "docker-compose.yml:docker-compose.logs.yml"


@pytest.mark.parametrize(
    ("secret", "services"),
    [
        # analytics has both tokens, vector the public one, studio the private one;
        # studio and vector wait for analytics in the override: they go first, while
        # the running analytics serves them
        ("logflare-tokens", ["studio", "vector", "analytics"]),
        # analytics connects to the database too, and studio now waits for analytics
        (
            "postgres-password",
            [
                "auth",
                "meta",
                "realtime",
                "rest",
                "supavisor",
                "storage",
                "studio",
                "functions",
                "analytics",
                "db",
            ],
        ),
        ("pg-meta-crypto-key", ["meta", "studio"]),
    ],
)
def test_plan_with_the_logs_override_in_compose_file(
    secret: str, services: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_CURRENT, tmp_path, compose_file=LOGS)

    plan = plan_json(capsys, secret, project)

    assert_plan_shape(plan, secret)
    assert plan["services"] == services
    # whether supabase_read_only_user changes, and db's restart, last
    expected_notes = 2 if plan["db_roles"] else 0
    assert len(plan["notes"]) == expected_notes, plan["notes"]
    assert_dependents_first(project, plan)


def test_opaque_api_keys_left_empty_in_env_example_are_refused_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_CURRENT, tmp_path)

    code = main(["plan", "opaque-api-keys", "--project", str(project), "--json"])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "opaque-api-keys is not configured" in err
    assert "SUPABASE_PUBLISHABLE_KEY" in err and "SUPABASE_SECRET_KEY" in err


def test_realtime_db_enc_key_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_CURRENT, tmp_path)

    code = main(["plan", "realtime-db-enc-key", "--project", str(project)])

    _, err = capsys.readouterr()
    assert code == 2
    assert "destroys" in err


# --- the 2025-11 layout (service kong, everything waits for analytics) --------------------

OLDER: dict[str, list[str]] = {
    # db waits for vector, analytics for db, nearly everything else for analytics
    "postgres-password": [
        "auth",
        "functions",
        "meta",
        "realtime",
        "rest",
        "studio",
        "supavisor",
        "storage",
        "analytics",
        "db",
    ],
    # db's environment carries JWT_SECRET in this layout, so it is recreated too
    "jwt-secret": [
        "auth",
        "functions",
        "kong",
        "realtime",
        "rest",
        "studio",
        "supavisor",
        "storage",
        "db",
    ],
    "api-keys": ["functions", "kong", "realtime", "storage", "studio"],
    "dashboard-password": ["kong"],
    "smtp": ["auth"],
    "secret-key-base": ["realtime", "supavisor"],
    "vault-enc-key": ["supavisor"],
    "pg-meta-crypto-key": ["meta", "studio"],
    # the logs services are in the main file here; studio waits for analytics;
    # analytics waits for vector only through db, which keeps running
    "logflare-tokens": ["vector", "studio", "analytics"],
}


@pytest.mark.parametrize("secret", sorted(OLDER))
def test_plan_on_the_2025_11_layout_names_its_services(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_2025_11, tmp_path)

    plan = plan_json(capsys, secret, project)

    assert_plan_shape(plan, secret)
    assert plan["services"] == OLDER[secret]
    assert plan["db_roles"] == (POSTGRES_ROLES if secret == "postgres-password" else [])
    assert_dependents_first(project, plan)


@pytest.mark.parametrize("secret", ["s3-protocol-keys", "opaque-api-keys"])
def test_secrets_the_2025_11_layout_does_not_have_are_refused(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_2025_11, tmp_path)

    code = main(["plan", secret, "--project", str(project), "--json"])

    _, err = capsys.readouterr()
    assert code == 2
    assert f"{secret} is not configured" in err


def test_all_on_the_2025_11_layout_skips_what_is_not_configured_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_reference(REFERENCE_2025_11, tmp_path)

    plan = plan_json(capsys, "all", project)

    assert "s3-protocol-keys" not in plan["members"]
    assert "opaque-api-keys" not in plan["members"]
    assert any(n.startswith("s3-protocol-keys is skipped") for n in plan["notes"])
    assert "imgproxy" not in plan["services"]
    assert plan["services"][:3] == ["vector", "auth", "functions"]
    assert plan["db_roles"] == POSTGRES_ROLES
    assert_dependents_first(project, plan)


# --- a deployment built the same way, with other names --------------------------------------

RENAMED_EXPECTED: dict[str, list[str]] = {
    "postgres-password": ["gotrue", "logs", "pooler", "postgrest", "pg"],
    "jwt-secret": ["gotrue", "live", "postgrest", "edge", "console"],
    "api-keys": ["live", "edge", "console"],
    "dashboard-password": ["edge"],  # only through the override file
    "s3-protocol-keys": ["files"],
    "smtp": ["gotrue"],  # list-form environment
    "secret-key-base": ["live", "pooler"],  # not cron: `$${SECRET_KEY_BASE}` is literal
    "vault-enc-key": ["pooler"],  # a label, `${VAULT_ENC_KEY-none}`
    "pg-meta-crypto-key": ["console"],
    "logflare-tokens": ["console", "logs"],  # console waits for logs (override): first
}


@pytest.mark.parametrize("secret", sorted(RENAMED_EXPECTED))
def test_plan_on_a_renamed_deployment_with_an_override_file(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_renamed(tmp_path)

    plan = plan_json(capsys, secret, project)

    assert_plan_shape(plan, secret)
    assert plan["services"] == RENAMED_EXPECTED[secret]
    assert "cron" not in plan["services"]
    assert_dependents_first(project, plan)


def test_a_service_shadowed_by_a_set_default_is_not_recreated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # cron's FALLBACK is ${CRON_SCHEDULE:-${JWT_SECRET}}; unset CRON_SCHEDULE and it follows
    project = deploy_renamed(tmp_path)
    env = (project / ".env").read_text().replace("CRON_SCHEDULE=@hourly\n", "")
    (project / ".env").write_text(env)

    plan = plan_json(capsys, "jwt-secret", project)

    assert "cron" in plan["services"]


def test_plan_without_json_is_text_for_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy_renamed(tmp_path)

    code = main(["plan", "dashboard-password", "--project", str(project)])

    out, _ = capsys.readouterr()
    assert code == 0
    assert "Plan: rotate dashboard-password" in out
    assert "[edge]" in out
    assert describe_impact(get_secret("dashboard-password"), RotationOptions())[0] in out


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("20s", 20), ("1m30s", 90), ("500ms", 0), ("1m500ms", 60), ("2h", 7200), (15, 15)],
)
def test_compose_durations_count_milliseconds_as_milliseconds(
    duration: object, seconds: int
) -> None:
    from core.plan import _seconds

    assert _seconds(duration) == seconds


# --- what compose reads beyond the main file, on both upstream layouts ---------------------

LAYOUTS = {"current": REFERENCE_CURRENT, "2025-11": REFERENCE_2025_11}
GATEWAY = {"current": "api-gw", "2025-11": "kong"}


def with_override(
    layout: str,
    target: Path,
    override: str,
    env_lines: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """An upstream layout plus our own override file (in COMPOSE_FILE) and extra files."""
    target.mkdir(parents=True, exist_ok=True)
    project = deploy_reference(
        LAYOUTS[layout], target, compose_file="docker-compose.yml:docker-compose.extra.yml"
    )
    (project / "docker-compose.extra.yml").write_text(dedent(override))
    for name, text in (files or {}).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(dedent(text))
    with (project / ".env").open("a") as env:
        env.write(env_lines)
    return project


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_key_built_from_the_rotated_one_in_env_brings_its_consumers_into_the_plan(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the guide's "update DATABASE_URL" step, written as compose allows: .env refers to itself
    project = with_override(
        layout,
        tmp_path,
        """\
        services:
          reports:
            image: example/reports:1
            depends_on: {db: {condition: service_healthy}}
            environment: {DATABASE_URL: "${DATABASE_URL}"}
        """,
        "DATABASE_URL=postgres://postgres:${POSTGRES_PASSWORD}@db:5432/postgres\n",
    )

    plan = plan_json(capsys, "postgres-password", project)

    assert "reports" in plan["services"]
    assert plan["services"][-1] == "db"  # after reports, which runs on the new one
    assert plan["restart_last"] == ["db"]
    assert plan["env_keys"] == ["POSTGRES_PASSWORD"]  # DATABASE_URL follows by itself


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_gateway_disabled_by_a_profile_is_neither_planned_nor_recreated(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # current: Envoy is api-gw, a Kong beside it is kept behind a profile; 2025-11: the
    # file's kong is put behind a profile, and an Envoy api-gw takes its place
    override = {
        "current": """\
            services:
              kong:
                image: kong:2.8.1
                profiles: [kong]
                environment: {SUPABASE_ANON_KEY: "${ANON_KEY}", PW: "${DASHBOARD_PASSWORD}"}
            """,
        "2025-11": """\
            services:
              kong:
                profiles: [kong]
              api-gw:
                image: envoyproxy/envoy:v1.33
                environment: {ANON_KEY: "${ANON_KEY}", DASHBOARD_PASSWORD: "${DASHBOARD_PASSWORD}"}
            """,
    }[layout]
    project = with_override(layout, tmp_path / "off", override)
    enabled = with_override(layout, tmp_path / "on", override, "COMPOSE_PROFILES=kong\n")

    assert plan_json(capsys, "dashboard-password", project)["services"] == ["api-gw"]
    assert plan_json(capsys, "dashboard-password", enabled)["services"] == ["api-gw", "kong"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_values_reaching_a_service_through_an_extra_env_file_bring_it_into_the_plan(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # imgproxy holds no secret upstream
    project = with_override(
        layout,
        tmp_path,
        "services:\n  imgproxy:\n    env_file: [./config/imgproxy.env]\n",
        files={"config/imgproxy.env": "STORAGE_KEY=${SERVICE_ROLE_KEY}\n"},
    )

    assert "imgproxy" in plan_json(capsys, "api-keys", project)["services"]
    assert "imgproxy" not in plan_json(capsys, "dashboard-password", project)["services"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_included_and_extended_services_are_planned(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = with_override(
        layout,
        tmp_path,
        """\
        include:
          - extra/metrics.yaml
        services:
          rest-replica:
            extends: {file: docker-compose.yml, service: rest}
            container_name: supabase-rest-replica
        """,
        files={
            "extra/metrics.yaml": """\
                services:
                  metrics:
                    image: example/metrics:1
                    environment: {PG_URL: "postgres://postgres:${POSTGRES_PASSWORD}@db/postgres"}
                """
        },
    )

    password = plan_json(capsys, "postgres-password", project)["services"]
    jwt = plan_json(capsys, "jwt-secret", project)["services"]
    assert {"metrics", "rest-replica"} <= set(password)
    assert "rest-replica" in jwt and "metrics" not in jwt
    assert GATEWAY[layout] not in password
