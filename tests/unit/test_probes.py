"""Probes prove their label: a real HTTP server answers each status a gateway can give."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.probes import (
    Expect,
    HttpProbe,
    PoolerProbe,
    ProbeSettings,
    SkippedProbe,
    cryptojs_encrypt,
    probes_for,
)
from tests.conftest import service_missing


class Gateway(BaseHTTPRequestHandler):
    """Answers GET /status/<code> with that code."""

    def do_GET(self) -> None:
        code = int(self.path.rsplit("/", 1)[-1])
        body = json.dumps({"status": code}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "accepted_ok", "refused_ok"),
    [
        (200, True, False),
        (204, True, False),
        (401, False, True),
        (403, False, True),
        (404, False, False),  # a missing route proves nothing either way
        (302, False, False),
        (500, False, False),
        (503, False, False),
    ],
)
def test_an_http_probe_passes_only_on_the_answer_its_label_promises(
    gateway: str, status: int, accepted_ok: bool, refused_ok: bool
) -> None:
    path = f"/status/{status}"
    accepted = HttpProbe("p", gateway, path, {"apikey": "k"}, Expect.ACCEPTED).run()
    refused = HttpProbe("p", gateway, path, {"apikey": "k"}, Expect.REFUSED).run()

    assert accepted.ok is accepted_ok
    assert refused.ok is refused_ok
    assert f"HTTP {status}" in accepted.evidence


def test_an_unreachable_gateway_fails_both_ways_and_says_unreachable() -> None:
    probe = HttpProbe("p", "http://127.0.0.1:9", "/x", {}, Expect.REFUSED)
    result = probe.run()
    assert result.ok is False
    assert probe.unreachable(result)


def test_a_pooler_probe_that_reaches_nothing_is_unreachable_not_refused() -> None:
    probe = PoolerProbe("p", "127.0.0.1", 9, "postgres.t", "postgres", "pw", Expect.REFUSED)
    result = probe.run()
    assert result.ok is False
    assert probe.unreachable(result)


ENV = {
    "ANON_KEY": "anon-new",
    "SERVICE_ROLE_KEY": "service-new",
    "JWT_SECRET": "s" * 40,
    "DASHBOARD_USERNAME": "supabase",
    "DASHBOARD_PASSWORD": "dash-new-0123456789",
    "POSTGRES_PASSWORD": "pg-new",
    "PG_META_CRYPTO_KEY": "m" * 32,
    "POOLER_TENANT_ID": "tenant",
    "POOLER_PROXY_PORT_TRANSACTION": "6543",
    "API_GW_HTTP_PORT": "8000",
}


def test_every_changed_key_gets_an_accepted_probe_and_a_refused_one() -> None:
    old = {key: value.replace("new", "old") for key, value in ENV.items()}
    old["JWT_SECRET"] = "o" * 40
    settings = ProbeSettings.for_deployment(ENV, environ={})
    keys = ["ANON_KEY", "SERVICE_ROLE_KEY", "JWT_SECRET", "DASHBOARD_PASSWORD"]

    probes = probes_for(keys, accepted=ENV, refused=old, env=ENV, settings=settings)

    names = [p.name for p in probes]
    for key in ("ANON_KEY as apikey", "SERVICE_ROLE_KEY as admin", "dashboard login"):
        assert sum(key in name for name in names) == 2, (key, names)
    # a token signed with each secret, at each service that verifies tokens itself
    for service in ("PostgREST", "Auth", "Storage"):
        signed = [n for n in names if "JWT_SECRET" in n and service in n]
        assert len(signed) == 2, (service, signed)
    assert {p.expect for p in probes} == {Expect.ACCEPTED, Expect.REFUSED}
    refused_anon = next(
        p for p in probes if isinstance(p, HttpProbe) and p.expect is Expect.REFUSED
    )
    assert refused_anon.headers == {"apikey": "anon-old"}


def test_the_database_password_is_probed_through_the_pooler_and_postgres_meta() -> None:
    old = dict(ENV, POSTGRES_PASSWORD="pg-old")
    settings = ProbeSettings.for_deployment(ENV, environ={})

    probes = probes_for(
        ["POSTGRES_PASSWORD"], accepted=ENV, refused=old, env=ENV, settings=settings
    )

    poolers = [p for p in probes if isinstance(p, PoolerProbe)]
    assert [(p.user, p.port, p.password, p.expect) for p in poolers] == [
        ("postgres.tenant", 6543, "pg-new", Expect.ACCEPTED),
        ("postgres.tenant", 6543, "pg-old", Expect.REFUSED),
    ]
    assert any("postgres-meta" in p.name for p in probes)


def test_preflight_asks_for_the_accepted_half_only() -> None:
    settings = ProbeSettings.for_deployment(ENV, environ={})
    probes = probes_for(
        ["ANON_KEY", "POSTGRES_PASSWORD"],
        accepted=ENV,
        refused=None,
        env=ENV,
        settings=settings,
        accepted_is="current",
    )
    assert probes
    assert all(p.expect is Expect.ACCEPTED for p in probes)


def test_turned_off_probes_are_reported_not_applicable_never_passed() -> None:
    settings = ProbeSettings.for_deployment(ENV, gateway=False, pooler=False, environ={})
    probes = probes_for(
        ["POSTGRES_PASSWORD"], accepted=ENV, refused=None, env=ENV, settings=settings
    )
    assert probes
    assert all(isinstance(p, SkippedProbe) for p in probes)
    assert all(p.run().ok is None for p in probes)


def test_settings_follow_the_deployment_and_the_overrides() -> None:
    default = ProbeSettings.for_deployment(ENV, environ={})
    assert default.gateway_url == "http://127.0.0.1:8000"
    assert default.pooler_address == ("127.0.0.1", 6543)
    moved = ProbeSettings.for_deployment(
        ENV,
        environ={"ROTATOR_GATEWAY_URL": "https://gw.internal/", "ROTATOR_POOLER_ADDRESS": "h:1"},
    )
    assert moved.gateway_url == "https://gw.internal"
    assert moved.pooler_address == ("h", 1)


def test_studio_style_encryption_opens_with_openssl_and_the_right_passphrase_only() -> None:
    """crypto-js's AES.encrypt(text, passphrase) is OpenSSL's salted format (MD5 key
    derivation): openssl itself must open what rotator seals, and only with the key."""
    if shutil.which("openssl") is None:
        service_missing("the openssl command is not installed (scripts/lib.sh installs it)")
    sealed = cryptojs_encrypt("the-crypto-key", "postgresql://postgres:pw@db:5432/postgres")

    def openssl(passphrase: str) -> bytes:
        return subprocess.run(
            ["openssl", "enc", "-d", "-aes-256-cbc", "-md", "md5", "-a", "-A", "-pass",
             f"pass:{passphrase}"],
            input=sealed.encode(), capture_output=True, check=False,
        ).stdout  # fmt: skip

    plain = b"postgresql://postgres:pw@db:5432/postgres"
    assert openssl("the-crypto-key") == plain
    assert openssl("another-key") != plain
    assert sealed != cryptojs_encrypt("the-crypto-key", plain.decode())  # salted each time


def test_signing_keys_are_probed_with_a_token_from_each_key_trusted_and_removed() -> None:
    from core.signing_keys import KeySet, new_ec_key

    legacy = {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}
    first, second = new_ec_key(), new_ec_key()
    before = KeySet((first, legacy)).jwt_keys()
    after = KeySet((first, legacy)).standby(second).promote(second["kid"]).only(second["kid"])
    env = dict(ENV, JWT_KEYS=after.jwt_keys())
    settings = ProbeSettings.for_deployment(env, environ={})

    probes = probes_for(
        ["JWT_KEYS"], accepted=env, refused={"JWT_KEYS": before}, env=env, settings=settings
    )

    accepted = [p.name for p in probes if p.expect is Expect.ACCEPTED]
    refused = [p.name for p in probes if p.expect is Expect.REFUSED]
    assert len(accepted) == 3 and all(second["kid"][:8] in n for n in accepted)
    assert len(refused) == 3 and all(first["kid"][:8] in n for n in refused)
