"""JWTs as each Supabase service signs and verifies them.

../shared/reference/zero-logout-jwt.md section 2 is the table this module follows; every
verifier below is one column of it, and tests/testbed/test_tokens.py pins each cell:

- GoTrue (`GoTrueKeys`): JWT_KEYS (a JSON array of JWKs) or, when empty, JWT_SECRET as an
  `oct` key with kid GOTRUE_JWT_KEY_ID; exactly one key with "sign" in key_ops signs (zero
  or two is a startup error) and puts its kid in the header; verification refuses an alg
  no key has (ValidMethods), takes the key with the token's kid, else GOTRUE_JWT_SECRET
  for HS256, else "unrecognized JWT kid".
- PostgREST (`verify_postgrest`): PGRST_JWT_SECRET as a JWKS, a JWK or a text of at least
  32 characters; candidates filtered by kid (when the token has one), alg and kty, each
  tried in turn.
- Realtime (`verify_realtime`): asymmetric tokens need a kid found in API_JWT_JWKS; HS256
  takes the `oct` key with its kid, else API_JWT_SECRET.
- Storage (`verify_storage`): kid-less HS256 only AUTH_JWT_SECRET; kid'd HS256 the first
  `oct` key without a kid or with that kid, else the secret; asymmetric the first key
  whose kid matches (or both lack one) with the right kty and alg.
- Functions (`verify_functions`, main/index.ts): HS256 only JWT_SECRET; ES256/RS256 one
  public key of SUPABASE_JWKS chosen like jose's local JWKS (none or two is an error).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

Claims = dict[str, Any]


class JwtError(Exception):
    """The token is refused; the message says why, in the real service's words."""


class KeyConfigError(Exception):
    """The service cannot start with this key configuration."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Jwk:
    kty: str
    alg: str | None = None
    kid: str | None = None
    use: str | None = None
    key_ops: tuple[str, ...] | None = None
    secret: bytes = b""
    public: ec.EllipticCurvePublicKey | None = None
    private: ec.EllipticCurvePrivateKey | None = None

    @property
    def is_private(self) -> bool:
        return self.kty == "oct" or self.private is not None

    def can_sign(self) -> bool:
        return self.is_private and self.key_ops is not None and "sign" in self.key_ops


def parse_jwk(data: Mapping[str, Any]) -> Jwk:
    kty = str(data.get("kty", ""))
    ops = data.get("key_ops")
    common = {
        "kty": kty,
        "alg": data.get("alg"),
        "kid": data.get("kid") or None,
        "use": data.get("use"),
        "key_ops": tuple(ops) if isinstance(ops, list) else None,
    }
    if kty == "oct":
        return Jwk(**common, secret=b64url_decode(str(data["k"])))
    if kty == "EC":
        if data.get("crv") != "P-256":
            raise KeyConfigError(f"unsupported curve {data.get('crv')!r}")
        x = int.from_bytes(b64url_decode(str(data["x"])), "big")
        y = int.from_bytes(b64url_decode(str(data["y"])), "big")
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        private = None
        if "d" in data:
            d = int.from_bytes(b64url_decode(str(data["d"])), "big")
            private = ec.derive_private_key(d, ec.SECP256R1())
        return Jwk(**common, public=public, private=private)
    return Jwk(**common)  # RSA, OKP...: kept (they count), never match an HS256/ES256 token


def parse_key_set(spec: str) -> list[Jwk]:
    """A JSON array of JWKs, a JWKS ({"keys": [...]}) or one JWK. Invalid JSON raises."""
    try:
        parsed = json.loads(spec)
    except ValueError as exc:
        raise KeyConfigError(f"invalid JSON in the key set: {exc}") from exc
    if isinstance(parsed, list):
        return [parse_jwk(k) for k in parsed]
    if isinstance(parsed, dict) and "keys" in parsed:
        return [parse_jwk(k) for k in parsed["keys"]]
    if isinstance(parsed, dict):
        return [parse_jwk(parsed)]
    raise KeyConfigError("a key set must be a JSON array, a JWKS or a JWK")


@dataclass(frozen=True)
class Token:
    header: dict[str, Any]
    claims: Claims
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return str(kid) if kid else None


def parse_token(token: str) -> Token:
    try:
        head, body, sig = token.split(".")
        header = json.loads(b64url_decode(head))
        claims = json.loads(b64url_decode(body))
        signature = b64url_decode(sig)
    except (ValueError, TypeError) as exc:
        raise JwtError("malformed token") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("malformed token")
    return Token(header, claims, f"{head}.{body}".encode(), signature)


def _kty_for(alg: str) -> str | None:
    if alg.startswith("HS"):
        return "oct"
    if alg.startswith("ES"):
        return "EC"
    if alg.startswith(("RS", "PS")):
        return "RSA"
    if alg == "EdDSA":
        return "OKP"
    return None


def signature_valid(token: Token, key: Jwk) -> bool:
    if token.alg == "HS256" and key.kty == "oct":
        expected = hmac.new(key.secret, token.signing_input, hashlib.sha256).digest()
        return hmac.compare_digest(expected, token.signature)
    if token.alg == "ES256" and key.kty == "EC" and key.public is not None:
        if len(token.signature) != 64:
            return False
        r = int.from_bytes(token.signature[:32], "big")
        s = int.from_bytes(token.signature[32:], "big")
        try:
            key.public.verify(
                encode_dss_signature(r, s), token.signing_input, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            return False
        return True
    return False


def check_claims(claims: Claims, *, skew: float = 0, now: float | None = None) -> Claims:
    moment = time.time() if now is None else now
    if "exp" in claims and float(claims["exp"]) + skew < moment:
        raise JwtError("token is expired")
    if "nbf" in claims and float(claims["nbf"]) - skew > moment:
        raise JwtError("token is not valid yet")
    return claims


def sign(claims: Claims, key: Jwk) -> str:
    """The token GoTrue's SignJWT makes with `key`: its alg (HS256 when it has none), its
    kid in the header when it has one."""
    alg = key.alg or "HS256"
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    if alg == "HS256" and key.kty == "oct":
        signature = hmac.new(key.secret, signing_input.encode(), hashlib.sha256).digest()
    elif alg == "ES256" and key.private is not None:
        der = key.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise KeyConfigError(f"cannot sign {alg} with a {key.kty} key")
    return f"{signing_input}.{b64url(signature)}"


def _verified(token: Token, key: Jwk | None, *, skew: float = 0) -> Claims:
    if key is None or not signature_valid(token, key):
        raise JwtError("signature is invalid")
    return check_claims(token.claims, skew=skew)


# --- GoTrue ------------------------------------------------------------------------


class GoTrueKeys:
    """GOTRUE_JWT_SECRET, GOTRUE_JWT_KEYS and GOTRUE_JWT_KEY_ID as GoTrue reads them."""

    def __init__(self, secret: str, keys_json: str = "", key_id: str = "") -> None:
        self.secret = Jwk("oct", alg="HS256", kid=key_id or None, secret=secret.encode())
        self.key_id = key_id or None
        if keys_json.strip() in ("", "[]"):
            keys = [
                Jwk(
                    "oct",
                    "HS256",
                    key_id or None,
                    key_ops=("sign", "verify"),
                    secret=secret.encode(),
                )
            ]
        else:
            keys = parse_key_set(keys_json)
        # A map keyed by kid: a repeated (or missing) kid silently replaces the earlier key.
        self.by_kid: dict[str, Jwk] = {}
        for key in keys:
            self.by_kid[key.kid or ""] = key
        signing = [k for k in self.by_kid.values() if k.can_sign()]
        if not signing:
            raise KeyConfigError("no signing key detected")
        if len(signing) > 1:
            raise KeyConfigError("multiple signing keys detected, only 1 signing key is supported")
        self.signing_key = signing[0]
        self.valid_methods = {k.alg for k in self.by_kid.values() if k.alg}

    def sign(self, claims: Claims) -> str:
        return sign(claims, self.signing_key)

    def verify(self, raw: str) -> Claims:
        token = parse_token(raw)
        if token.alg not in self.valid_methods:
            raise JwtError(f"signing method {token.alg} is invalid")
        kid = token.kid
        if kid is not None and kid in self.by_kid:
            return _verified(token, self.by_kid[kid])
        if kid is not None and kid == self.key_id:
            return _verified(token, self.secret)
        if token.alg == "HS256":
            return _verified(token, self.secret)
        raise JwtError(f"unrecognized JWT kid {kid} for algorithm {token.alg}")

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """/.well-known/jwks.json: the asymmetric keys' public halves, never an `oct` key."""
        keys = []
        for key in self.by_kid.values():
            if key.kty == "EC" and key.public is not None:
                numbers = key.public.public_numbers()
                keys.append(
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "kid": key.kid,
                        "alg": key.alg,
                        "use": "sig",
                        "key_ops": ["verify"],
                        "x": b64url(numbers.x.to_bytes(32, "big")),
                        "y": b64url(numbers.y.to_bytes(32, "big")),
                    }
                )
        return {"keys": keys}


# --- PostgREST ---------------------------------------------------------------------

POSTGREST_SKEW_S = 30


def postgrest_keys(spec: str) -> list[Jwk]:
    """PGRST_JWT_SECRET: a JWKS, a JWK, or a text of at least 32 characters."""
    text = spec.strip()
    if text.startswith("{"):
        return parse_key_set(text)
    if len(text) < 32:
        raise KeyConfigError("The JWT secret must be at least 32 characters long.")
    return [Jwk("oct", secret=text.encode())]


def verify_postgrest(raw: str, keys: Sequence[Jwk]) -> Claims:
    token = parse_token(raw)
    wanted_kty = _kty_for(token.alg)
    candidates = [
        k
        for k in keys
        if k.use != "enc"
        and (token.kid is None or k.kid == token.kid)
        and (k.alg is None or k.alg == token.alg)
        and k.kty == wanted_kty
    ]
    if not candidates:
        raise JwtError("No suitable key or wrong key type")
    for key in candidates:
        if signature_valid(token, key):
            return check_claims(token.claims, skew=POSTGREST_SKEW_S)
    raise JwtError("JWSError JWSInvalidSignature")


# --- Realtime ----------------------------------------------------------------------


def verify_realtime(raw: str, secret: str, jwks: Sequence[Jwk]) -> Claims:
    token = parse_token(raw)
    alg, kid = token.alg, token.kid
    if alg.startswith(("RS", "ES", "PS")) or alg == "EdDSA":
        if kid is None:
            raise JwtError("error_generating_signer")
        kty = _kty_for(alg)
        key = next((k for k in jwks if k.kty == kty and k.kid == kid), None)
        if key is None:
            raise JwtError("error_generating_signer")
        return _verified(token, key)
    if alg.startswith("HS"):
        if kid is not None:
            key = next((k for k in jwks if k.kty == "oct" and k.kid == kid), None)
            if key is not None:
                return _verified(token, key)
        return _verified(token, Jwk("oct", secret=secret.encode()))
    raise JwtError("error_generating_signer")


# --- Storage -----------------------------------------------------------------------


def verify_storage(raw: str, secret: str, jwks: Sequence[Jwk]) -> Claims:
    token = parse_token(raw)
    alg, kid = token.alg, token.kid
    static = Jwk("oct", alg="HS256", secret=secret.encode())
    if alg == "HS256" and kid is None:
        return _verified(token, static)
    if alg.startswith("HS"):
        key = next((k for k in jwks if k.kty == "oct" and (k.kid is None or k.kid == kid)), None)
        return _verified(token, key or static)
    kty = _kty_for(alg)
    key = next(
        (k for k in jwks if k.kid == kid and k.kty == kty and (k.alg is None or k.alg == alg)),
        None,
    )
    return _verified(token, key or static)


# --- Edge functions (volumes/functions/main/index.ts) -------------------------------


def verify_functions(raw: str, secret: str, jwks: Sequence[Jwk]) -> Claims:
    token = parse_token(raw)
    if token.alg == "HS256":
        return _verified(token, Jwk("oct", secret=secret.encode()))
    if token.alg not in ("ES256", "RS256"):
        raise JwtError(f"unsupported algorithm {token.alg}")
    if any(k.private is not None for k in jwks):
        raise JwtError("JSON Web Key Set members must be public keys")
    kty = _kty_for(token.alg)
    candidates = [
        k
        for k in jwks
        if k.kty == kty
        and (token.kid is None or k.kid == token.kid)
        and (k.alg is None or k.alg == token.alg)
        and (k.use is None or k.use == "sig")
        and (k.key_ops is None or "verify" in k.key_ops)
    ]
    if not candidates:
        raise JwtError("no applicable key found in the JSON Web Key Set")
    if len(candidates) > 1:
        raise JwtError("multiple matching keys found in the JSON Web Key Set")
    return _verified(token, candidates[0])


Verifier = Callable[[str], Claims]
