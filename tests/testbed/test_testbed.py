"""The testbed itself, on the real Docker engine: one deployment for the whole module.

scripts/test builds the image first (tests/testbed/build-images.sh); nothing is built
here. The tests run in file order and each leaves the deployment as it found it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import psycopg
import pytest

from tests.conftest import service_missing
from tests.testbed.client_probe import probe
from tests.testbed.standin.seal import cryptojs_encrypt
from tests.testbed.testbed import DEFAULT_IMAGE, Testbed, fingerprint, image_exists

pytestmark = pytest.mark.docker

LOGIN_ROLES = (
    "postgres",
    "supabase_admin",
    "authenticator",
    "pgbouncer",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "supabase_functions_admin",
    "supabase_replication_admin",
)
# The stand-in that logs in as each role and turns unhealthy when that login is refused.
DEPENDENT = {"supabase_auth_admin": "auth", "authenticator": "rest"}


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    engine = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if engine.returncode != 0:
        service_missing("no Docker engine (docker info failed)")
    if not image_exists():
        service_missing(f"image {DEFAULT_IMAGE} not built (tests/testbed/build-images.sh)")
    tb = Testbed.create(tmp_path_factory.mktemp("testbed"), project_name=f"tbtest-{os.getpid()}")
    try:
        tb.up(timeout=120)
        yield tb
    finally:
        tb.down()


def connect(tb: Testbed, user: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    host, port = tb.db_address()
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", connect_timeout=5
    )


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether `condition` held within `seconds`; a service not listening yet (it is being
    recreated) counts as not yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _answers(testbed: Testbed, service: str) -> bool:
    try:
        testbed.health(service)
    except OSError:
        return False
    return True


def test_every_service_is_up_and_healthy(testbed: Testbed) -> None:
    states = testbed.container_states()
    assert set(states) == {
        "studio", "api-gw", "auth", "rest", "realtime", "storage", "imgproxy", "meta",
        "functions", "db", "supavisor",
    }  # fmt: skip
    assert states.pop("meta") == "running"  # no health check, as upstream
    assert set(states.values()) == {"healthy"}
    for service in ("auth", "rest", "storage", "functions", "meta", "studio", "supavisor"):
        assert testbed.health(service).status == 200, service


def test_gateway_checks_the_api_key(testbed: Testbed) -> None:
    env = testbed.env()
    assert testbed.http("GET", "/rest/v1/items").status == 401
    assert testbed.http("GET", "/rest/v1/items", {"apikey": env["ANON_KEY"] + "x"}).status == 401
    anon = testbed.http("GET", "/rest/v1/items?select=name&order=id", {"apikey": env["ANON_KEY"]})
    assert (anon.status, anon.json()) == (200, [{"name": "first item"}, {"name": "second item"}])
    bearer = {"Authorization": f"Bearer {env['SERVICE_ROLE_KEY']}"}
    assert testbed.get("rest", "/whoami", bearer).json() == {"role": "service_role"}
    # the OpenAPI root and postgres-meta: the service role only (Envoy's RBAC)
    assert testbed.http("GET", "/rest/v1/", {"apikey": env["ANON_KEY"]}).status == 403
    assert testbed.http("GET", "/pg/tables", {"apikey": env["ANON_KEY"]}).status == 403
    tables = testbed.http("GET", "/pg/tables", {"apikey": env["SERVICE_ROLE_KEY"]})
    assert tables.status == 200
    assert {"schema": "public", "name": "items"} in [
        {"schema": t["schema"], "name": t["name"]} for t in tables.json()
    ]


def test_dashboard_needs_basic_auth(testbed: Testbed) -> None:
    env = testbed.env()

    def basic(password: str) -> dict[str, str]:
        pair = f"{env['DASHBOARD_USERNAME']}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    refused = testbed.http("GET", "/")
    assert refused.status == 401 and "WWW-Authenticate" in refused.headers
    assert testbed.http("GET", "/", basic("not-the-password")).status == 401
    assert testbed.http("GET", "/", basic(env["DASHBOARD_PASSWORD"])).status == 200


def test_services_hold_the_env_values(testbed: Testbed) -> None:
    env = testbed.env()
    auth = testbed.fingerprints("auth")
    assert auth["GOTRUE_SMTP_PASS"] == fingerprint(env["SMTP_PASS"])
    assert auth["GOTRUE_JWT_SECRET"] == fingerprint(env["JWT_SECRET"])
    assert testbed.fingerprints("storage")["S3_PROTOCOL_ACCESS_KEY_SECRET"] == fingerprint(
        env["S3_PROTOCOL_ACCESS_KEY_SECRET"]
    )
    assert testbed.fingerprints("supavisor")["VAULT_ENC_KEY"] == fingerprint(env["VAULT_ENC_KEY"])


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_login_roles_accept_only_the_password(testbed: Testbed, role: str) -> None:
    password = testbed.env()["POSTGRES_PASSWORD"]
    with connect(testbed, role, password) as conn:
        assert conn.execute("select current_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(testbed, role, password + "x")


@pytest.mark.parametrize(("role", "service"), DEPENDENT.items())
def test_changed_password_turns_the_dependent_unhealthy(
    testbed: Testbed, role: str, service: str
) -> None:
    password = testbed.env()["POSTGRES_PASSWORD"]
    testbed.psql(f"alter role {role} with password 'rotated0{os.getpid()}'")
    try:
        assert testbed.health(service).status == 503
        assert wait_for(lambda: testbed.container_states()[service] == "unhealthy")
        assert testbed.health("storage").status == 200  # other logins are untouched
    finally:
        testbed.psql(f"alter role {role} with password '{password}'")
    assert wait_for(lambda: testbed.container_states()[service] == "healthy")


def test_realtime_health_check_needs_a_key_signed_with_the_jwt_secret(testbed: Testbed) -> None:
    path = "/api/tenants/realtime-dev/health"
    anon_key = testbed.env()["ANON_KEY"]
    assert testbed.get("realtime", path, {"Authorization": f"Bearer {anon_key}"}).status == 200
    head, claims, _ = anon_key.split(".")
    forged = f"{head}.{claims}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    assert testbed.get("realtime", path, {"Authorization": f"Bearer {forged}"}).status == 403


def test_pooler_keeps_its_tenant_password_until_its_schema_is_dropped(testbed: Testbed) -> None:
    """utils/db-passwd.sh's sequence, and why it drops _supavisor (pitfall 3)."""
    env_file = testbed.directory / ".env"
    original, old = env_file.read_text(), testbed.env()["POSTGRES_PASSWORD"]
    new = "f" * 32

    def set_everywhere(password: str) -> None:
        roles = ("anon", "authenticated", "authenticator", "dashboard_user", "pgbouncer",
                 "postgres", "service_role", "supabase_admin", "supabase_auth_admin",
                 "supabase_functions_admin", "supabase_replication_admin",
                 "supabase_storage_admin")  # fmt: skip
        testbed.psql("".join(f"alter user {r} with password '{password}';" for r in roles))
        env_file.write_text(
            original.replace(f"POSTGRES_PASSWORD={old}", f"POSTGRES_PASSWORD={password}")
        )
        testbed.run_compose("up", "-d")

    def drop_tenants() -> None:
        sql = (
            "drop schema _supavisor cascade; create schema _supavisor authorization supabase_admin"
        )
        testbed.psql(sql, dbname="_supabase")
        testbed.run_compose("up", "-d", "--force-recreate", "supavisor")

    try:
        set_everywhere(new)
        assert wait_for(lambda: testbed.health("auth").status == 200, seconds=60)
        # supavisor was recreated too (its env changed): wait until it answers at all.
        assert wait_for(lambda: _answers(testbed, "supavisor"), seconds=30)
        reason = testbed.health("supavisor").json()["reason"]
        assert "tenant" in reason and "pgbouncer" in reason
        drop_tenants()
        testbed.wait_healthy(timeout=60)
    finally:
        set_everywhere(old)
        drop_tenants()
    testbed.wait_healthy(timeout=60)
    assert Path(env_file).read_text() == original


def test_the_database_is_set_up_like_a_supabase_install(testbed: Testbed) -> None:
    assert (
        testbed.psql(
            "select count(*) from pg_namespace where nspname in"
            " ('auth', 'storage', 'extensions', 'supabase_functions', 'net',"
            " 'realtime', '_realtime', 'pgbouncer', 'graphql_public')"
        )
        == "9\n"
    )
    assert testbed.psql(
        "select nspname || '=' || nspowner::regrole from pg_namespace"
        " where nspname in ('_analytics', '_supavisor') order by 1",
        dbname="_supabase",
    ).split() == ["_analytics=supabase_admin", "_supavisor=supabase_admin"]
    owners = testbed.psql(
        "select nspname || '=' || nspowner::regrole from pg_namespace"
        " where nspname in ('auth', 'storage') order by 1"
    ).split()
    assert owners == ["auth=supabase_auth_admin", "storage=supabase_storage_admin"]
    setting = testbed.psql(
        "select setconfig from pg_db_role_setting s join pg_database d"
        " on d.oid = s.setdatabase where d.datname = 'postgres'"
    )
    assert f"app.settings.jwt_exp={testbed.env()['JWT_EXPIRY']}" in setting
    assert "jwt_secret" not in setting  # removed upstream in 0.8.2
    read_only = testbed.psql(
        "select rolcanlogin, rolpassword is null from pg_authid"
        " where rolname = 'supabase_read_only_user'"
    )
    assert read_only == "t|t\n"  # LOGIN, no password, as upstream leaves it
    if testbed.sql_source.startswith("upstream "):  # webhooks.sql's own migration rows
        versions = testbed.psql("select version from supabase_functions.migrations").split()
        assert "20240115163000_add_retry_to_http_request" in versions


def test_studio_reaches_the_real_postgres_meta_with_its_key(testbed: Testbed) -> None:
    env = testbed.env()
    assert testbed.health("studio").status == 200
    url = (
        f"postgresql://postgres:{env['POSTGRES_PASSWORD']}@127.0.0.1:{testbed.port('db')}/postgres"
    )
    query = b'{"query": "select current_user"}'
    good = testbed.http(
        "POST",
        "/pg/query",
        {
            "apikey": env["SERVICE_ROLE_KEY"],
            "content-type": "application/json",
            "x-connection-encrypted": cryptojs_encrypt(url, env["PG_META_CRYPTO_KEY"]),
        },
        query,
    )
    assert (good.status, good.json()) == (200, [{"current_user": "postgres"}])
    wrong = testbed.http(
        "POST",
        "/pg/query",
        {
            "apikey": env["SERVICE_ROLE_KEY"],
            "content-type": "application/json",
            "x-connection-encrypted": cryptojs_encrypt(url, "another-key-of-32-characters-!!"),
        },
        query,
    )
    assert wrong.status == 500
    assert wrong.json()["error"] in (
        "failed to get upstream connection details",
        "failed to process upstream connection details",
    )
    pair = f"{env['DASHBOARD_USERNAME']}:{env['DASHBOARD_PASSWORD']}".encode()
    dashboard = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    editor = testbed.http("POST", "/api/platform/pg-meta/default/query", dashboard, query)
    assert (editor.status, editor.json()) == (200, [{"current_user": "postgres"}])


def test_the_pooler_admits_tenant_users_and_postgresql_checks_their_password(
    testbed: Testbed,
) -> None:
    env = testbed.env()
    address = {
        "host": "127.0.0.1",
        "port": testbed.port("pooler-transaction"),
        "dbname": env["POSTGRES_DB"],
        "connect_timeout": 5,
    }
    user = f"postgres.{env['POOLER_TENANT_ID']}"
    with psycopg.connect(**address, user=user, password=env["POSTGRES_PASSWORD"]) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**address, user=user, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="Tenant or user not found"):
        psycopg.connect(**address, user="postgres.no-such-tenant", password="x")


def test_the_pooler_takes_new_credentials_from_its_api(testbed: Testbed) -> None:
    env = testbed.env()
    path = f"/api/tenants/{env['POOLER_TENANT_ID']}/update_auth_credentials"
    body = f'{{"db_user": "pgbouncer", "db_password": "{env["POSTGRES_PASSWORD"]}"}}'.encode()
    forged = jwt.encode({"role": "service_role"}, "x" * 40, algorithm="HS256")
    url = testbed.service_url("supavisor") + path
    from tests.testbed.testbed import _request

    refused = _request("POST", url, {"Authorization": f"Bearer {forged}"}, body)
    assert refused.status == 403
    signed = {"Authorization": f"Bearer {env['SERVICE_ROLE_KEY']}"}  # HS256, API_JWT_SECRET
    wrong = b'{"db_user": "pgbouncer", "db_password": "wrong-password-0"}'
    assert _request("POST", url, signed, wrong).status == 200
    try:
        assert wait_for(lambda: testbed.health("supavisor").status == 503)
    finally:
        assert _request("POST", url, signed, body).status == 200
    assert testbed.health("supavisor").status == 200


def test_the_official_client_signs_in_reads_and_refreshes(testbed: Testbed) -> None:
    first = probe(testbed, "first")
    assert not first.failures(), first.text()
    second = probe(testbed, "second", previous=first)
    assert not second.failures(), second.text()
    names = [step.name for step in second.steps]
    assert names[-2:] == ["refresh the session from first", "read items with it"]
    sessions = int(testbed.psql("select count(*) from auth.sessions"))
    assert sessions >= 2
    assert int(testbed.psql("select count(*) from auth.refresh_tokens where revoked")) >= 2


def test_auth_sessions_are_rows_that_logout_deletes(testbed: Testbed) -> None:
    env = testbed.env()
    key = {"apikey": env["ANON_KEY"], "content-type": "application/json"}
    credentials = b'{"email": "logout@example.com", "password": "a-password-9"}'
    session = testbed.http("POST", "/auth/v1/signup", key, credentials).json()
    bearer = {**key, "Authorization": f"Bearer {session['access_token']}"}
    user = testbed.http("GET", "/auth/v1/user", bearer)
    assert (user.status, user.json()["email"]) == (200, "logout@example.com")
    refresh = b'{"refresh_token": "%s"}' % session["refresh_token"].encode()
    renewed = testbed.http("POST", "/auth/v1/token?grant_type=refresh_token", key, refresh)
    assert renewed.status == 200
    reused = testbed.http("POST", "/auth/v1/token?grant_type=refresh_token", key, refresh)
    assert reused.json()["error_code"] == "refresh_token_already_used"
    wrong = b'{"email": "logout@example.com", "password": "not-it-000"}'
    refused = testbed.http("POST", "/auth/v1/token?grant_type=password", key, wrong)
    assert (refused.status, refused.json()["error_code"]) == (400, "invalid_credentials")
    assert testbed.http("POST", "/auth/v1/logout", bearer).status == 204
    after = testbed.http("GET", "/auth/v1/user", bearer)
    assert (after.status, after.json()["error_code"]) == (403, "session_not_found")
    again = b'{"refresh_token": "%s"}' % renewed.json()["refresh_token"].encode()
    gone = testbed.http("POST", "/auth/v1/token?grant_type=refresh_token", key, again)
    assert (gone.status, gone.json()["error_code"]) == (400, "refresh_token_not_found")
