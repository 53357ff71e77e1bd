"""core.jwtkeys: API-key JWTs, JWK sets and opaque keys, byte for byte as upstream makes them.

Where the upstream scripts and their tools (sh, openssl, node) are present, the tests run
them and compare; otherwise those tests skip and the Python fixtures below (built in the
same shape as `add-new-auth-keys.sh` output) carry the checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from core.jwtkeys import (
    API_KEY_LIFETIME_S,
    PUBLISHABLE_PREFIX,
    SECRET_PREFIX,
    JwkError,
    api_key_payload,
    b64url,
    decode_hs256,
    make_opaque_key,
    oct_secrets,
    opaque_key_checksum_ok,
    replace_oct_key,
    sign_hs256,
    token_expiry,
)
from tests.conftest import REFERENCE_CURRENT

SECRET = "0123456789abcdefghijklmnopqrstuvwxyzABCD"  # 40 chars, like upstream's
OTHER_SECRET = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponm"
DEMO_JWT_SECRET = "your-super-secret-jwt-token-with-at-least-32-characters-long"


# --- fixtures in upstream's shape ------------------------------------------------------------


def upstream_shaped_jwk_sets(jwt_secret: str) -> tuple[str, str, ec.EllipticCurvePrivateKey]:
    """(JWT_KEYS, JWT_JWKS, EC private key) as `add-new-auth-keys.sh` builds them."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    kid = str(uuid.uuid4())
    oct_key = {"kty": "oct", "k": b64url(jwt_secret.encode()), "alg": "HS256"}
    common = {"kty": "EC", "kid": kid, "use": "sig"}
    signing = {
        **common,
        "key_ops": ["sign", "verify"],
        "alg": "ES256",
        "ext": True,
        "crv": jwk["crv"],
        "x": jwk["x"],
        "y": jwk["y"],
        "d": jwk["d"],
    }
    public = {
        **common,
        "key_ops": ["verify"],
        "alg": "ES256",
        "ext": True,
        "crv": jwk["crv"],
        "x": jwk["x"],
        "y": jwk["y"],
    }
    jwt_keys = json.dumps([signing, oct_key], separators=(",", ":"))
    jwt_jwks = json.dumps({"keys": [public, oct_key]}, separators=(",", ":"))
    return jwt_keys, jwt_jwks, private


def _upstream_hs256(payload_json: str, secret: str) -> str:
    """generate-keys.sh's gen_token, in Python: base64url(header).base64url(payload).hmac."""
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = b64url(payload_json.encode())
    signing_input = f"{header}.{body}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _read_env_example() -> dict[str, str]:
    path = REFERENCE_CURRENT / ".env.example"
    if not path.is_file():
        pytest.skip(f"upstream .env.example not found at {path}")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


# --- HS256 API keys --------------------------------------------------------------------------


class TestApiKeyJwts:
    def test_payload_has_exactly_the_claims_of_generate_keys_sh_in_its_order(self) -> None:
        payload = api_key_payload("anon", 1_700_000_000)
        assert list(payload.items()) == [
            ("role", "anon"),
            ("iss", "supabase"),
            ("iat", 1_700_000_000),
            ("exp", 1_700_000_000 + 5 * 3600 * 24 * 365),
        ]
        assert API_KEY_LIFETIME_S == 157_680_000

    def test_payload_refuses_other_roles(self) -> None:
        with pytest.raises(ValueError, match="anon, service_role"):
            api_key_payload("authenticated", 1)

    @pytest.mark.parametrize("role", ["anon", "service_role"])
    def test_signed_key_is_byte_identical_to_the_upstream_construction(self, role: str) -> None:
        now = int(time.time())
        upstream_payload = (
            f'{{"role":"{role}","iss":"supabase","iat":{now},"exp":{now + 157_680_000}}}'
        )
        token = sign_hs256(api_key_payload(role, now), SECRET)
        assert token == _upstream_hs256(upstream_payload, SECRET)
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}

    def test_key_verifies_with_its_secret_and_not_with_another(self) -> None:
        token = sign_hs256(api_key_payload("service_role", int(time.time())), SECRET)
        assert decode_hs256(token, SECRET)["role"] == "service_role"
        with pytest.raises(jwt.InvalidSignatureError):
            decode_hs256(token, OTHER_SECRET)

    def test_a_short_secret_is_refused_not_warned_about(self) -> None:
        # pytest turns warnings into errors; the contract is an exception either way.
        with pytest.raises(jwt.InvalidKeyError):
            sign_hs256(api_key_payload("anon", 1), "too-short")
        token = sign_hs256(api_key_payload("anon", int(time.time())), SECRET)
        with pytest.raises(jwt.InvalidKeyError):
            decode_hs256(token, "too-short")

    def test_expired_key_fails_unless_times_are_skipped(self) -> None:
        long_ago = int(time.time()) - API_KEY_LIFETIME_S - 10
        token = sign_hs256(api_key_payload("anon", long_ago), SECRET)
        with pytest.raises(jwt.ExpiredSignatureError):
            decode_hs256(token, SECRET)
        assert decode_hs256(token, SECRET, check_times=False)["iat"] == long_ago

    def test_decode_refuses_other_algorithms(self) -> None:
        token = jwt.encode({"role": "anon"}, key="", algorithm="none")
        with pytest.raises(jwt.InvalidTokenError):
            decode_hs256(token, SECRET)

    def test_token_expiry_reads_exp_without_verifying(self) -> None:
        token = sign_hs256(api_key_payload("anon", 1_000), OTHER_SECRET)
        assert token_expiry(token) == 1_000 + API_KEY_LIFETIME_S

    @pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
    def test_token_expiry_of_a_malformed_token_is_none(self, token: str) -> None:
        assert token_expiry(token) is None

    def test_token_expiry_without_exp_is_none(self) -> None:
        assert token_expiry(sign_hs256({"role": "anon"}, SECRET)) is None


class TestUpstreamDemoKeys:
    """The `.env.example` demo keys: valid with the default secret, expiring 2027-01-09."""

    @pytest.mark.parametrize(
        ("key", "role"), [("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")]
    )
    def test_demo_key_verifies_against_the_default_jwt_secret(self, key: str, role: str) -> None:
        env = _read_env_example()
        assert env["JWT_SECRET"] == DEMO_JWT_SECRET
        claims = decode_hs256(env[key], env["JWT_SECRET"], check_times=False)
        assert claims == {
            "role": role,
            "iss": "supabase-demo",
            "iat": 1641769200,
            "exp": 1799535600,
        }
        with pytest.raises(jwt.InvalidSignatureError):
            decode_hs256(env[key], SECRET, check_times=False)

    def test_demo_keys_expire_on_2027_01_09(self) -> None:
        env = _read_env_example()
        assert token_expiry(env["ANON_KEY"]) == 1799535600  # 2027-01-09T23:00:00Z


def _run_upstream(script: str, cwd: Path) -> dict[str, str]:
    path = REFERENCE_CURRENT / "utils" / script
    if not path.is_file():
        pytest.skip(f"upstream {script} not found")
    out = subprocess.run(
        ["sh", str(path)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if re.match(r"^[A-Z_]+=", line))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_keys_match_generate_keys_sh_byte_for_byte(tmp_path: Path) -> None:
    out = _run_upstream("generate-keys.sh", tmp_path)
    for key, role in (("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")):
        iat = jwt.decode(out[key], options={"verify_signature": False})["iat"]
        assert sign_hs256(api_key_payload(role, iat), out["JWT_SECRET"]) == out[key]


# --- JWT_KEYS / JWT_JWKS -----------------------------------------------------------------------


def _es256_token(private: ec.EllipticCurvePrivateKey, kid: str) -> str:
    payload = api_key_payload("anon", int(time.time()))
    return jwt.encode(payload, private, algorithm="ES256", headers={"kid": kid})


class TestReplaceOctKey:
    @pytest.mark.parametrize("which", ["JWT_KEYS", "JWT_JWKS"])
    def test_only_the_oct_k_changes_and_the_text_is_kept(self, which: str) -> None:
        jwt_keys, jwt_jwks, _ = upstream_shaped_jwk_sets(SECRET)
        old = jwt_keys if which == "JWT_KEYS" else jwt_jwks
        new = replace_oct_key(old, OTHER_SECRET)
        old_k, new_k = b64url(SECRET.encode()), b64url(OTHER_SECRET.encode())
        assert new == old.replace(old_k, new_k)
        assert oct_secrets(new) == [new_k]

    def test_ec_key_is_preserved_and_still_verifies_the_asymmetric_keys(self) -> None:
        jwt_keys, jwt_jwks, private = upstream_shaped_jwk_sets(SECRET)
        new_keys = json.loads(replace_oct_key(jwt_keys, OTHER_SECRET))
        new_jwks = replace_oct_key(jwt_jwks, OTHER_SECRET)
        assert new_keys[0] == json.loads(jwt_keys)[0]
        assert json.loads(new_jwks)["keys"][0] == json.loads(jwt_jwks)["keys"][0]
        kid = new_keys[0]["kid"]
        key_set = jwt.PyJWKSet.from_json(new_jwks)
        token = _es256_token(private, kid)
        assert jwt.decode(token, key_set[kid], algorithms=["ES256"])["role"] == "anon"

    def test_new_oct_key_verifies_tokens_signed_with_the_new_secret(self) -> None:
        _, jwt_jwks, _ = upstream_shaped_jwk_sets(SECRET)
        oct_jwk = json.loads(replace_oct_key(jwt_jwks, OTHER_SECRET))["keys"][1]
        token = sign_hs256(api_key_payload("anon", int(time.time())), OTHER_SECRET)
        assert jwt.decode(token, jwt.PyJWK(oct_jwk), algorithms=["HS256"])["role"] == "anon"
        old_token = sign_hs256(api_key_payload("anon", int(time.time())), SECRET)
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(old_token, jwt.PyJWK(oct_jwk), algorithms=["HS256"])

    def test_formatting_of_a_hand_edited_set_is_kept(self) -> None:
        _, jwt_jwks, _ = upstream_shaped_jwk_sets(SECRET)
        pretty = json.dumps(json.loads(jwt_jwks), indent=2)
        new = replace_oct_key(pretty, OTHER_SECRET)
        assert new == pretty.replace(b64url(SECRET.encode()), b64url(OTHER_SECRET.encode()))

    def test_an_ambiguous_text_is_reserialised_compact(self) -> None:
        old_k = b64url(SECRET.encode())
        doc = [{"kty": "oct", "k": old_k, "alg": "HS256"}, {"kty": "EC", "note": old_k}]
        new = replace_oct_key(json.dumps(doc), OTHER_SECRET)
        expected = [{"kty": "oct", "k": b64url(OTHER_SECRET.encode()), "alg": "HS256"}, doc[1]]
        assert new == json.dumps(expected, separators=(",", ":"))

    def test_a_set_without_an_oct_key_is_unchanged(self) -> None:
        doc = json.dumps({"keys": [{"kty": "EC", "kid": "a"}]})
        assert replace_oct_key(doc, OTHER_SECRET) == doc

    def test_two_oct_keys_are_refused(self) -> None:
        doc = json.dumps([{"kty": "oct", "k": "YQ"}, {"kty": "oct", "k": "Yg"}])
        with pytest.raises(JwkError, match="more than one"):
            replace_oct_key(doc, OTHER_SECRET)

    @pytest.mark.parametrize("text", ["not json " + SECRET, '{"nokeys": 1}', '"' + SECRET + '"'])
    def test_malformed_sets_are_refused_without_quoting_them(self, text: str) -> None:
        with pytest.raises(JwkError) as caught:
            replace_oct_key(text, OTHER_SECRET)
        assert SECRET not in str(caught.value)
        assert OTHER_SECRET not in str(caught.value)


def _upstream_node_script() -> str:
    path = REFERENCE_CURRENT / "utils" / "add-new-auth-keys.sh"
    if not path.is_file():
        pytest.skip("upstream add-new-auth-keys.sh not found")
    match = re.search(r"\$node_runner -e '(.*?)' \"\$jwt_secret\"", path.read_text(), re.S)
    assert match, "add-new-auth-keys.sh no longer has the node script this test reads"
    return match.group(1)


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_sets_made_by_add_new_auth_keys_sh_are_rewritten_and_stay_valid() -> None:
    out_text = subprocess.run(
        ["node", "-e", _upstream_node_script(), SECRET],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    out = dict(line.split("=", 1) for line in out_text.splitlines())
    assert oct_secrets(out["JWT_KEYS"]) == oct_secrets(out["JWT_JWKS"]) == [b64url(SECRET.encode())]

    new_keys = replace_oct_key(out["JWT_KEYS"], OTHER_SECRET)
    new_jwks = replace_oct_key(out["JWT_JWKS"], OTHER_SECRET)
    new_k = b64url(OTHER_SECRET.encode())
    assert new_keys == out["JWT_KEYS"].replace(b64url(SECRET.encode()), new_k)
    assert new_jwks == out["JWT_JWKS"].replace(b64url(SECRET.encode()), new_k)
    kid = jwt.get_unverified_header(out["ANON_KEY_ASYMMETRIC"])["kid"]
    claims = jwt.decode(
        out["ANON_KEY_ASYMMETRIC"], jwt.PyJWKSet.from_json(new_jwks)[kid], algorithms=["ES256"]
    )
    assert claims["role"] == "anon"
    # upstream's opaque keys pass our checksum: the two implementations agree
    assert opaque_key_checksum_ok(out["SUPABASE_PUBLISHABLE_KEY"])
    assert opaque_key_checksum_ok(out["SUPABASE_SECRET_KEY"])


# --- opaque keys ---------------------------------------------------------------------------------

_OPAQUE = re.compile(r"^(sb_publishable_|sb_secret_)([A-Za-z0-9_-]{22})_([A-Za-z0-9_-]{8})$")


def _checksum(intermediate: str) -> str:
    digest = hashlib.sha256(f"supabase-self-hosted|{intermediate}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:8]


class TestOpaqueKeys:
    @pytest.mark.parametrize("prefix", [PUBLISHABLE_PREFIX, SECRET_PREFIX])
    def test_keys_have_upstream_shape_and_checksum(self, prefix: str) -> None:
        seen = set()
        for _ in range(200):
            key = make_opaque_key(prefix)
            match = _OPAQUE.match(key)
            assert match and match.group(1) == prefix
            assert match.group(3) == _checksum(match.group(1) + match.group(2))
            assert opaque_key_checksum_ok(key)
            seen.add(key)
        assert len(seen) == 200

    def test_other_prefixes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="sb_publishable_"):
            make_opaque_key("sb_other_")

    def test_tampered_keys_fail_the_checksum(self) -> None:
        key = make_opaque_key(SECRET_PREFIX)
        flipped_random = key[:12] + ("A" if key[12] != "A" else "B") + key[13:]
        flipped_checksum = key[:-1] + ("A" if key[-1] != "A" else "B")
        for bad in (
            flipped_random,
            flipped_checksum,
            key.replace(SECRET_PREFIX, PUBLISHABLE_PREFIX),
            key[:-9] + "-" + key[-8:],
            key + "x",
            "",
            "sb_secret_",
        ):
            assert not opaque_key_checksum_ok(bad), bad
