"""The JWTs and API keys of a Supabase deployment, made and checked the way upstream does.

Upstream makes them in three scripts of `supabase/docker/utils/`:

- `generate-keys.sh`: `ANON_KEY` and `SERVICE_ROLE_KEY`, HS256 JWTs signed with
  `JWT_SECRET`, header `{"alg":"HS256","typ":"JWT"}`, payload
  `{"role":…,"iss":"supabase","iat":now,"exp":now+5*365*86400}`, both compact JSON.
  PyJWT writes exactly these bytes (sorted compact header, compact payload in dict order),
  so `sign_hs256(api_key_payload(role, now), secret)` equals the script's output.
- `add-new-auth-keys.sh`: `JWT_KEYS`, a JSON *array* of signing JWKs, and `JWT_JWKS`, a JSON
  *object* `{"keys": [...]}`, both written compact (`JSON.stringify`). Each holds one EC
  P-256 key (`kid` a UUID, shared by both; `d` only in `JWT_KEYS`) followed by one
  symmetric key `{"kty":"oct","k":base64url(JWT_SECRET),"alg":"HS256"}` with no `kid`.
- `rotate-new-api-keys.sh`: the opaque keys `sb_publishable_…` / `sb_secret_…`.

Nothing here reads or writes files; values never appear in exception messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
from jwt.types import Options

__all__ = [
    "API_KEY_LIFETIME_S",
    "HS256_MIN_SECRET_BYTES",
    "OPAQUE_PREFIXES",
    "PUBLISHABLE_PREFIX",
    "SECRET_PREFIX",
    "JwkError",
    "api_key_payload",
    "b64url",
    "decode_hs256",
    "make_opaque_key",
    "oct_secrets",
    "opaque_key_checksum_ok",
    "replace_oct_key",
    "sign_hs256",
    "token_expiry",
]

API_KEY_LIFETIME_S = 5 * 365 * 86400
"""Lifetime of a generated API key JWT: five years of 365 days, as `generate-keys.sh`."""

HS256_MIN_SECRET_BYTES = 32
"""HS256 needs a key of at least the digest size (RFC 7518 3.2); PostgREST refuses less."""

PUBLISHABLE_PREFIX = "sb_publishable_"
SECRET_PREFIX = "sb_secret_"  # noqa: S105 (a prefix, not a secret)
OPAQUE_PREFIXES = (PUBLISHABLE_PREFIX, SECRET_PREFIX)

_PROJECT_REF = "supabase-self-hosted"
"""The `PROJECT_REF` the upstream scripts hash into every opaque key's checksum."""
_OPAQUE_RANDOM_CHARS = 22
_OPAQUE_CHECKSUM_CHARS = 8

_API_ROLES = ("anon", "service_role")

# One PyJWT instance that raises on short HMAC keys instead of warning: a warning would
# pass unnoticed in production and fail the tests (pytest turns warnings into errors).
_jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})


class JwkError(ValueError):
    """A JWT_KEYS / JWT_JWKS value that cannot be read or rewritten. Never quotes the value."""


def b64url(data: bytes) -> str:
    """Base64url without padding, as Node's `Buffer.toString("base64url")`."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- HS256 API keys --------------------------------------------------------------------


def api_key_payload(role: str, now: int) -> dict[str, Any]:
    """The claims `generate-keys.sh` signs, in its order: role, iss, iat, exp."""
    if role not in _API_ROLES:
        raise ValueError(f"role must be one of {', '.join(_API_ROLES)}")
    return {"role": role, "iss": "supabase", "iat": now, "exp": now + API_KEY_LIFETIME_S}


def sign_hs256(payload: dict[str, Any], secret: str) -> str:
    """A compact HS256 JWT with header `{"alg":"HS256","typ":"JWT"}`.

    Raises:
        jwt.InvalidKeyError: the secret is shorter than 32 bytes.
    """
    return _jwt.encode(payload, secret, algorithm="HS256")


def decode_hs256(token: str, secret: str, *, check_times: bool = True) -> dict[str, Any]:
    """The verified claims of an HS256 token.

    `check_times=False` skips `exp`/`iat`/`nbf` (to check a token's signature and shape
    regardless of the clock).

    Raises:
        jwt.InvalidSignatureError: signed with another secret.
        jwt.ExpiredSignatureError: expired (when `check_times`).
        jwt.InvalidKeyError: the secret is shorter than 32 bytes.
        jwt.InvalidTokenError: any other reason the token is not valid.
    """
    options: Options = {}
    if not check_times:
        options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    claims: dict[str, Any] = _jwt.decode(token, secret, algorithms=["HS256"], options=options)
    return claims


def token_expiry(token: str) -> int | None:
    """The unverified `exp` of a JWT, or None if absent or the token is malformed.

    For warnings only (the demo keys expire 2027-01-09): nothing is verified.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int):
        return None
    return exp


# --- JWT_KEYS / JWT_JWKS -----------------------------------------------------------------


def _key_list(doc: Any) -> list[Any]:
    """The JWK list of a JWT_KEYS array or a JWT_JWKS `{"keys": [...]}` object."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
        keys: list[Any] = doc["keys"]
        return keys
    raise JwkError('not a JWK array nor an object with a "keys" array')


def _parse(jwk_json: str) -> Any:
    try:
        return json.loads(jwk_json)
    except ValueError:
        raise JwkError("not valid JSON") from None


def oct_secrets(jwk_json: str) -> list[str]:
    """The `k` (still base64url) of every symmetric (`oct`) key in a JWK set."""
    keys = _key_list(_parse(jwk_json))
    found: list[str] = []
    for key in keys:
        if isinstance(key, dict) and key.get("kty") == "oct":
            k = key.get("k")
            if not isinstance(k, str):
                raise JwkError('an "oct" key has no string "k"')
            found.append(k)
    return found


def replace_oct_key(jwk_json: str, new_secret: str) -> str:
    """The JWK set with its one `oct` key's `k` set to base64url(new_secret).

    Everything else is kept: the EC key (so its `kid`, which the asymmetric API keys carry,
    stays valid), member order, and the text itself wherever possible (the old `k` string is
    swapped in place; only if that is ambiguous is the JSON re-serialised compact, as
    `JSON.stringify`). The oct key's own `kid`, if a hand-made set has one, is kept too.
    A set with no `oct` key is returned unchanged: it does not embed the secret.

    Raises:
        JwkError: not a JWK set, or more than one `oct` key (which one is JWT_SECRET?).
    """
    doc = _parse(jwk_json)
    keys = _key_list(doc)
    octs = [k for k in keys if isinstance(k, dict) and k.get("kty") == "oct"]
    if not octs:
        return jwk_json
    if len(octs) > 1:
        raise JwkError('holds more than one "oct" key; cannot tell which is JWT_SECRET')
    old_k = octs[0].get("k")
    if not isinstance(old_k, str):
        raise JwkError('the "oct" key has no string "k"')
    new_k = b64url(new_secret.encode("utf-8"))
    octs[0]["k"] = new_k

    old_literal = json.dumps(old_k)
    if jwk_json.count(old_literal) == 1:
        result = jwk_json.replace(old_literal, json.dumps(new_k))
        if json.loads(result) == doc:
            return result
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# --- opaque API keys ---------------------------------------------------------------------


def _opaque_checksum(intermediate: str) -> str:
    digest = hashlib.sha256(f"{_PROJECT_REF}|{intermediate}".encode()).digest()
    return b64url(digest)[:_OPAQUE_CHECKSUM_CHARS]


def make_opaque_key(prefix: str) -> str:
    """`prefix` + 22 random base64url chars + `_` + 8-char checksum, as upstream.

    Upstream: `randomBytes(17).toString("base64url").slice(0, 22)`, checksum
    `sha256("supabase-self-hosted|" + prefix + random)` in base64url, first 8 chars.
    """
    if prefix not in OPAQUE_PREFIXES:
        raise ValueError(f"prefix must be one of {', '.join(OPAQUE_PREFIXES)}")
    random_part = b64url(secrets.token_bytes(17))[:_OPAQUE_RANDOM_CHARS]
    intermediate = prefix + random_part
    return f"{intermediate}_{_opaque_checksum(intermediate)}"


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def opaque_key_checksum_ok(key: str) -> bool:
    """True when `key` has the upstream shape and its checksum matches."""
    prefix = next((p for p in OPAQUE_PREFIXES if key.startswith(p)), None)
    if prefix is None:
        return False
    expected_len = len(prefix) + _OPAQUE_RANDOM_CHARS + 1 + _OPAQUE_CHECKSUM_CHARS
    if len(key) != expected_len or key[-_OPAQUE_CHECKSUM_CHARS - 1] != "_":
        return False
    intermediate = key[: -_OPAQUE_CHECKSUM_CHARS - 1]
    if not set(intermediate[len(prefix) :]) <= _B64URL_ALPHABET:
        return False
    return hmac.compare_digest(_opaque_checksum(intermediate), key[-_OPAQUE_CHECKSUM_CHARS:])
