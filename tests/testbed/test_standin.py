"""The stand-ins' own logic and the template's shape, without Docker.

The JWT checks are cross-checked against PyJWT and cryptography, so the stdlib
verification the containers run is known to agree with real libraries.
"""

from __future__ import annotations

import base64
import json
import re
import time

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import REFERENCE_CURRENT, reference_dir
from tests.testbed import standin
from tests.testbed.testbed import PORT_OFFSETS, TEMPLATE, _new_api_keys, read_env

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


def test_seal_opens_only_with_its_key() -> None:
    for text in ("", "x", "p" * 32, "a longer secret value " * 5):
        assert standin.unseal("key-1", standin.seal("key-1", text)) == text
    with pytest.raises(ValueError, match="wrong key"):
        standin.unseal("key-2", standin.seal("key-1", "secret"))


def test_hs256_tokens_verify_with_their_secret_only() -> None:
    token = jwt.encode({"role": "anon", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert standin.verify_jwt(token, standin.load_keys(SECRET))["role"] == "anon"
    with pytest.raises(standin.JwtError, match="signature"):
        standin.verify_jwt(token, standin.load_keys(SECRET + "x"))
    expired = jwt.encode({"role": "anon", "exp": time.time() - 1}, SECRET, algorithm="HS256")
    with pytest.raises(standin.JwtError, match="expired"):
        standin.verify_jwt(expired, standin.load_keys(SECRET))


def test_es256_tokens_verify_against_the_jwks() -> None:
    signer, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    oct_key = {"kty": "oct", "k": _b64url(SECRET.encode()), "alg": "HS256"}
    jwks = json.dumps({"keys": [_ec_jwk(signer, "k1"), oct_key]})
    token = jwt.encode({"role": "service_role"}, signer, algorithm="ES256", headers={"kid": "k1"})
    assert standin.verify_jwt(token, standin.load_keys(jwks))["role"] == "service_role"

    legacy = jwt.encode({"role": "anon"}, SECRET, algorithm="HS256")
    assert standin.verify_jwt(legacy, standin.load_keys(jwks))["role"] == "anon"

    forged = jwt.encode({"role": "service_role"}, other, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(standin.JwtError):
        standin.verify_jwt(forged, standin.load_keys(jwks))
    head, _, sig = token.split(".")
    tampered = f"{head}.{_b64url(json.dumps({'role': 'anon'}).encode())}.{sig}"
    with pytest.raises(standin.JwtError):
        standin.verify_jwt(tampered, standin.load_keys(jwks))


def test_generated_api_keys_are_consistent() -> None:
    keys = _new_api_keys(SECRET)
    assert re.fullmatch(r"sb_publishable_[\w-]{22}_[\w-]{8}", keys["SUPABASE_PUBLISHABLE_KEY"])
    assert re.fullmatch(r"sb_secret_[\w-]{22}_[\w-]{8}", keys["SUPABASE_SECRET_KEY"])
    public = standin.load_keys(keys["JWT_JWKS"])
    claims = standin.verify_jwt(keys["SERVICE_ROLE_KEY_ASYMMETRIC"], public)
    assert claims["role"] == "service_role"
    assert standin.verify_jwt(keys["ANON_KEY_ASYMMETRIC"], public)["role"] == "anon"
    assert '"d"' not in keys["JWT_JWKS"] and '"d"' in keys["JWT_KEYS"]


def _gateway() -> standin.Gateway:
    env = read_env(TEMPLATE / ".env")
    env["TESTBED_UPSTREAMS"] = "rest=http://127.0.0.1:9,studio=http://127.0.0.1:9"
    return standin.Gateway(env)


def _request(path: str, headers: dict[str, str]) -> standin.Request:
    return standin.Request("GET", path, {k.lower(): v for k, v in headers.items()}, b"")


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


def test_template_keys_are_signed_with_the_template_secret() -> None:
    env = read_env(TEMPLATE / ".env")
    keys = standin.load_keys(env["JWT_SECRET"])
    assert standin.verify_jwt(env["ANON_KEY"], keys)["role"] == "anon"
    assert standin.verify_jwt(env["SERVICE_ROLE_KEY"], keys)["role"] == "service_role"


def _rendered_template() -> dict[str, object]:
    text = (TEMPLATE / "docker-compose.yml").read_text()
    for token in ("PROJECT_NAME", "CONTAINER_PREFIX", "IMAGE"):
        text = text.replace(f"@@{token}@@", "x")
    for name in PORT_OFFSETS:
        text = text.replace(f"@@PORT_{name.upper().replace('-', '_')}@@", "1")
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
