"""The stand-ins' own logic and the template's shape, without Docker.

The JWT checks are cross-checked against PyJWT and cryptography, so the stdlib
verification the containers run is known to agree with real libraries.
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import REFERENCE_CURRENT, reference_dir
from tests.testbed.standin import seal
from tests.testbed.standin.gateway import Gateway
from tests.testbed.standin.tokens import GoTrueKeys, parse_key_set, verify_postgrest
from tests.testbed.standin.web import Request
from tests.testbed.testbed import PORT_OFFSETS, TEMPLATE, _new_api_keys, read_env
from tests.testbed.timing import placeholders

SECRET = "a-testbed-jwt-secret-with-at-least-32-chars"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def test_cryptojs_aes_round_trips_and_refuses_another_key() -> None:
    for text in ("x", "postgresql://postgres:p@127.0.0.1:5432/postgres", "p" * 100):
        sealed = seal.cryptojs_encrypt(text, "key-1")
        assert base64.b64decode(sealed).startswith(b"Salted__")
        assert seal.cryptojs_decrypt(sealed, "key-1") == text
    refused = 0
    for i in range(20):  # a wrong key fails the padding or the UTF-8, as crypto-js's does
        try:
            seal.cryptojs_decrypt(seal.cryptojs_encrypt("postgresql://x", "key-1"), f"k{i}")
        except seal.SealError:
            refused += 1
    assert refused == 20


def test_cryptojs_format_matches_openssl() -> None:
    """crypto-js's passphrase mode is OpenSSL's `enc -aes-256-cbc -md md5`."""
    import subprocess

    sealed = seal.cryptojs_encrypt("hello testbed", "pass-phrase")
    opened = subprocess.run(
        [
            "openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-a",
            "-A",
            "-pass",
            "pass:pass-phrase",
        ],
        input=sealed,
        capture_output=True,
        text=True,
        check=True,
    )
    assert opened.stdout == "hello testbed"


def test_vault_needs_a_32_byte_key_and_refuses_another() -> None:
    key = "k" * 32
    assert seal.vault_decrypt(seal.vault_encrypt("pw", key), key) == "pw"
    with pytest.raises(seal.SealError, match="wrong key"):
        seal.vault_decrypt(seal.vault_encrypt("pw", key), "j" * 32)
    with pytest.raises(seal.SealError, match="invalid key size"):
        seal.vault_encrypt("pw", "k" * 31)


def test_realtime_needs_a_16_byte_key() -> None:
    key = "0123456789abcdef"
    assert seal.realtime_decrypt(seal.realtime_encrypt("s", key), key) == "s"
    with pytest.raises(seal.SealError, match="16 bytes"):
        seal.realtime_encrypt("s", "short")


def test_generated_api_keys_are_consistent() -> None:
    keys = _new_api_keys(SECRET)
    assert re.fullmatch(r"sb_publishable_[\w-]{22}_[\w-]{8}", keys["SUPABASE_PUBLISHABLE_KEY"])
    assert re.fullmatch(r"sb_secret_[\w-]{22}_[\w-]{8}", keys["SUPABASE_SECRET_KEY"])
    public = parse_key_set(keys["JWT_JWKS"])
    claims = verify_postgrest(keys["SERVICE_ROLE_KEY_ASYMMETRIC"], public)
    assert claims["role"] == "service_role"
    assert verify_postgrest(keys["ANON_KEY_ASYMMETRIC"], public)["role"] == "anon"
    assert '"d"' not in keys["JWT_JWKS"] and '"d"' in keys["JWT_KEYS"]
    signing = GoTrueKeys(SECRET, keys["JWT_KEYS"])  # exactly one sign key: auth starts
    assert verify_postgrest(signing.sign({"role": "authenticated"}), public)


def _gateway(**extra: str) -> Gateway:
    env = {**read_env(TEMPLATE / ".env"), **extra}
    upstreams = ("rest", "studio", "meta", "auth", "functions", "realtime", "storage")
    env["TESTBED_UPSTREAMS"] = ",".join(f"{u}=http://127.0.0.1:9" for u in upstreams)
    return Gateway(env)


def _request(path: str, headers: dict[str, str]) -> Request:
    return Request("GET", path, {k.lower(): v for k, v in headers.items()}, b"")


def test_gateway_refuses_before_forwarding() -> None:
    gateway, env = _gateway(), read_env(TEMPLATE / ".env")
    assert gateway.handle(_request("/rest/v1/todos", {})).status == 401
    assert gateway.handle(_request("/rest/v1/todos", {"apikey": "sb_nope"})).status == 401
    anon = {"apikey": env["ANON_KEY"]}
    assert gateway.handle(_request("/rest/v1/", anon)).status == 403  # OpenAPI: service role
    assert gateway.handle(_request("/pg/tables", anon)).status == 403
    assert gateway.handle(_request("/", {})).status == 401
    wrong = base64.b64encode(f"{env['DASHBOARD_USERNAME']}:nope".encode()).decode()
    assert gateway.handle(_request("/", {"Authorization": f"Basic {wrong}"})).status == 401


def test_gateway_follows_envoys_key_rules() -> None:
    """lds.template.yaml: sb_ keys only with all four new keys set; the asymmetric JWTs are
    not client keys; the service role (either form) alone reaches /pg/."""
    keys = _new_api_keys(SECRET)
    with_keys = _gateway(**keys)
    # Unreachable upstream (port 9) means the request got past every check: 502.
    assert (
        with_keys.handle(_request("/pg/tables", {"apikey": keys["SUPABASE_SECRET_KEY"]})).status
        == 502
    )
    assert (
        with_keys.handle(_request("/rest/v1/", {"apikey": keys["SUPABASE_SECRET_KEY"]})).status
        == 502
    )
    publishable = {"apikey": keys["SUPABASE_PUBLISHABLE_KEY"]}
    assert with_keys.handle(_request("/pg/tables", publishable)).status == 403
    assert with_keys.handle(_request("/rest/v1/items", publishable)).status == 502
    asymmetric = {"apikey": keys["ANON_KEY_ASYMMETRIC"]}
    assert with_keys.handle(_request("/rest/v1/items", asymmetric)).status == 401
    query_key = f"/rest/v1/items?apikey={keys['SUPABASE_PUBLISHABLE_KEY']}"
    assert with_keys.handle(_request(query_key, {})).status == 502
    assert with_keys.handle(_request("/realtime/v1/api/tenants/x", publishable)).status == 403
    # Without ANON_KEY_ASYMMETRIC there is no translation: the opaque keys are unknown.
    partial = _gateway(**{**keys, "ANON_KEY_ASYMMETRIC": ""})
    assert partial.handle(_request("/rest/v1/items", publishable)).status == 401
    assert partial.handle(_request("/functions/v1/hello", publishable)).status == 502
    assert (
        with_keys.handle(_request("/functions/v1/hello", {"apikey": "sb_secret_nope"})).status
        == 401
    )


def _rendered_template() -> dict[str, object]:
    text = (TEMPLATE / "docker-compose.yml").read_text()
    for token in ("PROJECT_NAME", "CONTAINER_PREFIX", "IMAGE"):
        text = text.replace(f"@@{token}@@", "x")
    for name in PORT_OFFSETS:
        text = text.replace(f"@@PORT_{name.upper().replace('-', '_')}@@", "1")
    for token, value in placeholders("real").items():
        text = text.replace(f"@@{token}@@", value)
    assert re.search(r"@@[A-Z_]+@@", text) is None
    parsed: dict[str, object] = yaml.safe_load(text)
    return parsed


def test_template_has_upstream_shape() -> None:
    upstream_dir = reference_dir(REFERENCE_CURRENT)
    upstream = yaml.safe_load((upstream_dir / "docker-compose.yml").read_text())
    ours = _rendered_template()
    assert "name" in ours
    services = ours["services"]
    assert isinstance(services, dict)
    assert set(services) == set(upstream["services"])
    for name, service in upstream["services"].items():
        mine = services[name]
        assert mine["container_name"] == "x" + service["container_name"]
        assert mine.get("depends_on") == service.get("depends_on"), name
        missing = set(service.get("environment", {})) - set(mine.get("environment", {}))
        # Erlang and DNS settings of the real images mean nothing to a stand-in.
        assert missing <= {
            "ERL_AFLAGS",
            "DNS_NODES",
            "RLIMIT_NOFILE",
            "IMGPROXY_MAX_SRC_RESOLUTION",
        }
    upstream_keys = set(read_env(upstream_dir / ".env.example"))
    assert upstream_keys <= set(read_env(TEMPLATE / ".env"))


def test_template_wires_secrets_like_upstream() -> None:
    upstream = yaml.safe_load((reference_dir(REFERENCE_CURRENT) / "docker-compose.yml").read_text())
    services = _rendered_template()["services"]
    assert isinstance(services, dict)
    for name, service in upstream["services"].items():
        for var, value in service.get("environment", {}).items():
            if "${" in str(value):
                assert services[name]["environment"].get(var) == value, f"{name}.{var}"


def test_logs_override_has_upstream_shape() -> None:
    upstream = yaml.safe_load(
        (reference_dir(REFERENCE_CURRENT) / "docker-compose.logs.yml").read_text()
    )
    text = (TEMPLATE / "docker-compose.logs.yml").read_text()
    for token, value in {"CONTAINER_PREFIX": "x", "IMAGE": "x", **placeholders("real")}.items():
        text = text.replace(f"@@{token}@@", value)
    for name in PORT_OFFSETS:
        text = text.replace(f"@@PORT_{name.upper().replace('-', '_')}@@", "1")
    assert re.search(r"@@[A-Z_]+@@", text) is None
    ours = yaml.safe_load(text)["services"]
    assert set(ours) == set(upstream["services"])
    for name, service in upstream["services"].items():
        mine = ours[name]
        assert mine.get("depends_on") == service.get("depends_on"), name
        if "container_name" in service:
            assert mine["container_name"] == "x" + service["container_name"]
        for var, value in service.get("environment", {}).items():
            if "${" in str(value):
                assert mine["environment"].get(var) == value, f"{name}.{var}"
