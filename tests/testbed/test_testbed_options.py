"""The testbed's options, on one deployment: the asymmetric keys wired in (as
add-new-auth-keys.sh leaves it), the logs override (analytics, vector), a password for
supabase_read_only_user, and the template's own database SQL (what runs where ../shared is
absent). Tests run in file order; the last one changes the Logflare tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import jwt
import psycopg
import pytest

from tests.conftest import service_missing
from tests.testbed.client_probe import probe
from tests.testbed.testbed import (
    DEFAULT_IMAGE,
    Testbed,
    _replace_env_values,
    _request,
    image_exists,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    engine = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if engine.returncode != 0:
        service_missing("no Docker engine (docker info failed)")
    if not image_exists():
        service_missing(f"image {DEFAULT_IMAGE} not built (tests/testbed/build-images.sh)")
    tb = Testbed.create(
        tmp_path_factory.mktemp("options"),
        project_name=f"tbopt-{os.getpid()}",
        new_api_keys=True,
        logs=True,
        read_only_password=True,
        upstream_sql=False,
    )
    try:
        tb.up(timeout=180)
        yield tb
    finally:
        tb.down()


def test_the_templates_own_sql_sets_up_the_same_database(testbed: Testbed) -> None:
    assert "testbed's own" in testbed.sql_source
    schemas = testbed.psql(
        "select nspname from pg_namespace where nspname in"
        " ('supabase_functions', 'net', '_realtime') order by 1"
    ).split()
    assert schemas == ["_realtime", "net", "supabase_functions"]
    assert testbed.psql(
        "select nspname from pg_namespace where nspname like '\\_%' order by 1", dbname="_supabase"
    ).split() == ["_analytics", "_supavisor"]


def test_the_logs_override_joins_through_compose_file(testbed: Testbed) -> None:
    assert testbed.env()["COMPOSE_FILE"] == "docker-compose.yml:docker-compose.logs.yml"
    states = testbed.container_states()
    assert states["analytics"] == "healthy" and states["vector"] == "healthy"


def test_auth_signs_with_the_ec_key_and_every_verifier_takes_it(testbed: Testbed) -> None:
    env = testbed.env()
    signing = next(k for k in json.loads(env["JWT_KEYS"]) if "sign" in k.get("key_ops", []))
    report = probe(testbed, "asymmetric keys")
    assert not report.failures(), report.text()
    assert f"ES256, kid {signing['kid'][:8]}" in report.text()
    published = testbed.http("GET", "/auth/v1/.well-known/jwks.json").json()["keys"]
    assert [k["kid"] for k in published] == [signing["kid"]]
    assert all("d" not in k and k["kty"] == "EC" for k in published)  # never the oct key


def test_the_publishable_key_reaches_rest_as_the_asymmetric_anon_key(testbed: Testbed) -> None:
    env = testbed.env()
    rows = testbed.http("GET", "/rest/v1/items", {"apikey": env["SUPABASE_PUBLISHABLE_KEY"]})
    assert rows.status == 200 and len(rows.json()) >= 2
    assert (
        testbed.http("GET", "/rest/v1/items", {"apikey": env["ANON_KEY_ASYMMETRIC"]}).status == 401
    )
    assert testbed.http("GET", "/pg/tables", {"apikey": env["SUPABASE_SECRET_KEY"]}).status == 200


def test_the_read_only_user_can_log_in_when_given_the_password(testbed: Testbed) -> None:
    env = testbed.env()
    host, port = testbed.db_address()
    with psycopg.connect(
        host=host,
        port=port,
        user="supabase_read_only_user",
        dbname="postgres",
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=5,
    ) as conn:
        assert conn.execute("select count(*) from public.items").fetchone() == (2,)


def _ingest(testbed: Testbed, key: str) -> int:
    url = testbed.service_url("analytics") + "/api/logs?source_name=test"
    return _request(
        "POST", url, {"x-api-key": key, "content-type": "application/json"}, b'[{"message": "hi"}]'
    ).status


def _query(testbed: Testbed, key: str) -> int:
    url = testbed.service_url("analytics") + "/api/endpoints/query/logs.all"
    return _request("GET", url, {"x-api-key": key}, None).status


def test_analytics_accepts_its_tokens_and_the_legacy_user_key(testbed: Testbed) -> None:
    env = testbed.env()
    public, private = env["LOGFLARE_PUBLIC_ACCESS_TOKEN"], env["LOGFLARE_PRIVATE_ACCESS_TOKEN"]
    assert testbed.psql("select api_key from _analytics.users", dbname="_supabase") == public + "\n"
    assert (_ingest(testbed, public), _ingest(testbed, private)) == (200, 200)
    assert (_query(testbed, public), _query(testbed, private)) == (200, 200)  # api_key: legacy
    assert (_ingest(testbed, "nope" * 8), _query(testbed, "nope" * 8)) == (401, 401)
    assert testbed.get("vector", "/sink").json() == {"analytics_status": 200}


def test_new_logflare_tokens_leave_the_first_public_token_alive(testbed: Testbed) -> None:
    """Addendum A3: a recreate revokes the old tokens, but users.api_key keeps the first."""
    env_file = testbed.directory / ".env"
    old = testbed.env()
    new = {"LOGFLARE_PUBLIC_ACCESS_TOKEN": "p" * 32, "LOGFLARE_PRIVATE_ACCESS_TOKEN": "q" * 32}
    env_file.write_text(_replace_env_values(env_file.read_text(), new))
    testbed.run_compose("up", "-d", "analytics", "vector", "studio", timeout=180)
    testbed.wait_healthy(timeout=120)
    assert _ingest(testbed, new["LOGFLARE_PUBLIC_ACCESS_TOKEN"]) == 200
    assert _query(testbed, new["LOGFLARE_PRIVATE_ACCESS_TOKEN"]) == 200
    assert _query(testbed, old["LOGFLARE_PRIVATE_ACCESS_TOKEN"]) == 401  # revoked
    assert _ingest(testbed, old["LOGFLARE_PUBLIC_ACCESS_TOKEN"]) == 200  # users.api_key
    assert testbed.get("vector", "/sink").json() == {"analytics_status": 200}
    forged = jwt.encode({"role": "anon"}, "z" * 40, algorithm="HS256")
    assert _ingest(testbed, forged) == 401
