"""The stand-ins' token rules, one row per cell of zero-logout-jwt.md's section 2 table.

Tokens are made with PyJWT and cryptography, so the rules are checked against tokens real
libraries make. Columns: GoTrue (`GoTrueKeys`), PostgREST, Realtime, Storage and the edge
functions' main/index.ts; rows: the token kinds that table distinguishes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.testbed.standin import tokens
from tests.testbed.standin.tokens import (
    GoTrueKeys,
    JwtError,
    KeyConfigError,
    b64url,
    parse_key_set,
    postgrest_keys,
    verify_functions,
    verify_postgrest,
    verify_realtime,
    verify_storage,
)

SECRET = "the-legacy-jwt-secret-with-at-least-32-chars"
OTHER = "another-jwt-secret-of-at-least-32-characters"
EC1, EC2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
CLAIMS = {"role": "authenticated", "sub": "5b6a7e0e-8c2f-4c55-9e55-1a0c2c1c0a01"}


def ec_jwk(
    key: ec.EllipticCurvePrivateKey,
    kid: str | None,
    *,
    private: bool = False,
    ops: list[str] | None = None,
) -> dict[str, Any]:
    numbers = key.private_numbers()
    jwk: dict[str, Any] = {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
        "x": b64url(numbers.public_numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.public_numbers.y.to_bytes(32, "big")),
    }
    if kid:
        jwk["kid"] = kid
    if private:
        jwk["d"] = b64url(numbers.private_value.to_bytes(32, "big"))
    jwk["key_ops"] = ops or (["sign", "verify"] if private else ["verify"])
    return jwk


def oct_jwk(secret: str, kid: str | None = None, alg: str | None = "HS256") -> dict[str, Any]:
    jwk: dict[str, Any] = {"kty": "oct", "k": b64url(secret.encode())}
    if alg:
        jwk["alg"] = alg
    if kid:
        jwk["kid"] = kid
    return jwk


def hs(secret: str, kid: str | None = None) -> str:
    claims = {**CLAIMS, "exp": time.time() + 600}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid} if kid else None)


def es(key: ec.EllipticCurvePrivateKey, kid: str | None) -> str:
    claims = {**CLAIMS, "exp": time.time() + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid} if kid else None)


def jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


# The upstream shapes (add-new-auth-keys.sh): JWT_KEYS with the EC private key and the
# legacy secret as a kid-less `oct` key; JWT_JWKS with the public half and the same `oct`.
UPSTREAM_KEYS = json.dumps([ec_jwk(EC1, "k1", private=True), oct_jwk(SECRET)])
UPSTREAM_JWKS = jwks(ec_jwk(EC1, "k1"), oct_jwk(SECRET))
TWO_EC_JWKS = jwks(ec_jwk(EC1, "k1"), ec_jwk(EC2, "k2"), oct_jwk(SECRET))


def gotrue(keys: str = UPSTREAM_KEYS, secret: str = SECRET) -> Callable[[str], object]:
    return GoTrueKeys(secret, keys).verify


def postgrest(spec: str = UPSTREAM_JWKS) -> Callable[[str], object]:
    keys = postgrest_keys(spec)
    return lambda t: verify_postgrest(t, keys)


def realtime(spec: str = UPSTREAM_JWKS, secret: str = SECRET) -> Callable[[str], object]:
    return lambda t: verify_realtime(t, secret, parse_key_set(spec))


def storage(spec: str = UPSTREAM_JWKS, secret: str = SECRET) -> Callable[[str], object]:
    return lambda t: verify_storage(t, secret, parse_key_set(spec))


def functions(spec: str = UPSTREAM_JWKS, secret: str = SECRET) -> Callable[[str], object]:
    return lambda t: verify_functions(t, secret, parse_key_set(spec))


TWO_EC_KEYS = json.dumps(
    [
        ec_jwk(EC1, "k1", private=True),
        ec_jwk(EC2, "k2", private=True, ops=["verify"]),
        oct_jwk(SECRET),
    ]
)
ROWS: list[tuple[str, Callable[[], Callable[[str], object]], Callable[[], str], bool]] = [
    # ES256 with a kid present in the set: everyone, by kid.
    ("es256 kid / gotrue", gotrue, lambda: es(EC1, "k1"), True),
    ("es256 kid / postgrest", postgrest, lambda: es(EC1, "k1"), True),
    ("es256 kid / realtime", realtime, lambda: es(EC1, "k1"), True),
    ("es256 kid / storage", storage, lambda: es(EC1, "k1"), True),
    ("es256 kid / functions", functions, lambda: es(EC1, "k1"), True),
    # Two EC keys with distinct kids: a token of the second verifies everywhere.
    ("two ec / gotrue (verify-only key)", lambda: gotrue(TWO_EC_KEYS), lambda: es(EC2, "k2"), True),
    ("two ec / postgrest", lambda: postgrest(TWO_EC_JWKS), lambda: es(EC2, "k2"), True),
    ("two ec / realtime", lambda: realtime(TWO_EC_JWKS), lambda: es(EC2, "k2"), True),
    ("two ec / storage", lambda: storage(TWO_EC_JWKS), lambda: es(EC2, "k2"), True),
    ("two ec / functions", lambda: functions(TWO_EC_JWKS), lambda: es(EC2, "k2"), True),
    # ES256 with a kid nobody has.
    ("es256 unknown kid / gotrue", gotrue, lambda: es(EC2, "k9"), False),
    ("es256 unknown kid / postgrest", postgrest, lambda: es(EC2, "k9"), False),
    # ES256 without a kid: only PostgREST tries every key.
    ("es256 no kid / gotrue", gotrue, lambda: es(EC1, None), False),
    ("es256 no kid / postgrest", postgrest, lambda: es(EC1, None), True),
    ("es256 no kid / realtime", realtime, lambda: es(EC1, None), False),
    ("es256 no kid / storage (set keys have kids)", storage, lambda: es(EC1, None), False),
    (
        "es256 no kid / storage (kid-less key)",
        lambda: storage(jwks({**ec_jwk(EC1, None)})),
        lambda: es(EC1, None),
        True,
    ),
    (
        "es256 no kid / functions, two EC keys",
        lambda: functions(TWO_EC_JWKS),
        lambda: es(EC1, None),
        False,
    ),
    ("es256 no kid / functions, one EC key", functions, lambda: es(EC1, None), True),
    # HS256 without a kid (legacy anon/service_role keys, legacy sessions).
    ("hs256 no kid / gotrue, HS256 in JWT_KEYS", gotrue, lambda: hs(SECRET), True),
    (
        "hs256 no kid / gotrue, no HS256 in JWT_KEYS",
        lambda: gotrue(json.dumps([ec_jwk(EC1, "k1", private=True)])),
        lambda: hs(SECRET),
        False,
    ),
    ("hs256 no kid / gotrue, JWT_KEYS empty", lambda: gotrue(""), lambda: hs(SECRET), True),
    (
        "hs256 no kid / postgrest, every oct key tried",
        lambda: postgrest(jwks(oct_jwk(OTHER), oct_jwk(SECRET))),
        lambda: hs(SECRET),
        True,
    ),
    ("hs256 no kid / postgrest, plain secret", lambda: postgrest(SECRET), lambda: hs(SECRET), True),
    (
        "hs256 no kid / realtime, only API_JWT_SECRET",
        lambda: realtime(secret=OTHER),
        lambda: hs(SECRET),
        False,
    ),
    (
        "hs256 no kid / storage, only AUTH_JWT_SECRET",
        lambda: storage(secret=OTHER),
        lambda: hs(SECRET),
        False,
    ),
    (
        "hs256 no kid / functions, only JWT_SECRET",
        lambda: functions(secret=OTHER),
        lambda: hs(SECRET),
        False,
    ),
    # HS256 with a kid.
    (
        "hs256 kid / gotrue, oct key with that kid",
        lambda: gotrue(json.dumps([ec_jwk(EC1, "k1", private=True), oct_jwk(OTHER, "h1")])),
        lambda: hs(OTHER, "h1"),
        True,
    ),
    (
        "hs256 unknown kid / gotrue, falls back to the secret",
        gotrue,
        lambda: hs(SECRET, "h9"),
        True,
    ),
    (
        "hs256 kid / postgrest, only the oct key with that kid",
        postgrest,
        lambda: hs(SECRET, "h1"),
        False,
    ),
    (
        "hs256 kid / postgrest, oct key with that kid",
        lambda: postgrest(jwks(oct_jwk(SECRET, "h1"))),
        lambda: hs(SECRET, "h1"),
        True,
    ),
    (
        "hs256 unknown kid / realtime, falls back to API_JWT_SECRET",
        realtime,
        lambda: hs(SECRET, "h9"),
        True,
    ),
    (
        "hs256 kid / realtime, oct key with that kid",
        lambda: realtime(jwks(oct_jwk(OTHER, "h1")), secret=SECRET),
        lambda: hs(OTHER, "h1"),
        True,
    ),
    (
        "hs256 kid / storage, a kid-less oct key captures it",
        lambda: storage(jwks(oct_jwk(OTHER), oct_jwk(SECRET, "h1"))),
        lambda: hs(SECRET, "h1"),
        False,
    ),
    (
        "hs256 kid / storage, no oct key: AUTH_JWT_SECRET",
        lambda: storage(jwks(ec_jwk(EC1, "k1"))),
        lambda: hs(SECRET, "h1"),
        True,
    ),
    (
        "hs256 kid / functions, JWT_SECRET whatever the kid",
        functions,
        lambda: hs(SECRET, "h1"),
        True,
    ),
    (
        "hs256 kid / functions, the JWKS's oct key is ignored",
        lambda: functions(jwks(oct_jwk(OTHER, "h1"))),
        lambda: hs(OTHER, "h1"),
        False,
    ),
    # Functions refuse a JWKS with private members (jose).
    (
        "es256 / functions, private JWK in SUPABASE_JWKS",
        lambda: functions(jwks(ec_jwk(EC1, "k1", private=True))),
        lambda: es(EC1, "k1"),
        False,
    ),
    # GoTrue's ValidMethods: only the algs of its keys.
    (
        "es256 kid / gotrue, JWT_KEYS empty (HS256 only)",
        lambda: gotrue(""),
        lambda: es(EC1, "k1"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("verifier", "token", "accepted"), [pytest.param(v, t, a, id=name) for name, v, t, a in ROWS]
)
def test_verification_table(
    verifier: Callable[[], Callable[[str], object]], token: Callable[[], str], accepted: bool
) -> None:
    verify = verifier()
    if accepted:
        assert verify(token())
    else:
        with pytest.raises(JwtError):
            verify(token())


def test_tampered_and_expired_tokens_are_refused_everywhere() -> None:
    good = es(EC1, "k1")
    head, _, sig = good.split(".")
    tampered = f"{head}.{b64url(json.dumps({'role': 'service_role'}).encode())}.{sig}"
    expired = jwt.encode({**CLAIMS, "exp": time.time() - 3600}, SECRET, algorithm="HS256")
    for make in (gotrue, postgrest, realtime, storage, functions):
        verify = make()
        for token in (tampered, expired, "not.a.token"):
            with pytest.raises(JwtError):
                verify(token)


def test_gotrue_signs_with_the_one_sign_key_and_names_its_kid() -> None:
    keys = GoTrueKeys(SECRET, UPSTREAM_KEYS)
    token = keys.sign(CLAIMS)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": "JWT", "kid": "k1"}
    assert jwt.decode(token, EC1.public_key(), algorithms=["ES256"])["sub"] == CLAIMS["sub"]
    legacy = GoTrueKeys(SECRET, "")
    token = legacy.sign(CLAIMS)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == CLAIMS["sub"]
    public = keys.public_jwks()["keys"]
    assert [k["kid"] for k in public] == ["k1"] and all("d" not in k for k in public)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            json.dumps([ec_jwk(EC1, "k1", private=True), ec_jwk(EC2, "k2", private=True)]),
            "multiple signing keys",
        ),
        (json.dumps([ec_jwk(EC1, "k1"), oct_jwk(SECRET)]), "no signing key"),
        ("[not json", "invalid JSON"),
    ],
)
def test_gotrue_refuses_to_start_without_exactly_one_signing_key(keys: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        GoTrueKeys(SECRET, keys)


def test_postgrest_refuses_a_short_secret() -> None:
    with pytest.raises(KeyConfigError, match="at least 32 characters"):
        postgrest_keys("too-short")


def test_signature_check_agrees_with_pyjwt_on_es256() -> None:
    token = es(EC1, "k1")
    parsed = tokens.parse_token(token)
    assert tokens.signature_valid(parsed, tokens.parse_jwk(ec_jwk(EC1, "k1")))
    assert not tokens.signature_valid(parsed, tokens.parse_jwk(ec_jwk(EC2, "k1")))
