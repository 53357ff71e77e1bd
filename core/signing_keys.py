"""The asymmetric signing key (ES256) of a deployment, and how it is rotated.

`JWT_KEYS` is a JSON array of private JWKs for Auth: exactly one has "sign" in `key_ops`
(GoTrue signs with it; zero or two is a startup error), the others verify only. `JWT_JWKS`
is `{"keys": [...]}` with their public halves for everyone else. Both also hold JWT_SECRET
as an `oct` key, which this module leaves exactly as it is. Every verifier finds a key by
`kid` (reference/zero-logout-jwt.md, section 2), so several EC keys can be trusted at once.

A planned rotation goes through three phases, each a rotation of its own:

    standby  the new key is published everywhere, verify-only; the current one still signs
    rotate   the new key signs (and re-signs ANON/SERVICE_ROLE_KEY_ASYMMETRIC); the old one
             stays, verify-only, so sessions it signed keep working
    revoke   the old key is removed, once the longest token it signed has expired

A compromise rotation does all of it at once: the old key and every API key signed by it
stop working immediately.

Keys are made the way upstream's `utils/add-new-auth-keys.sh` makes them. Nothing here
reads files; errors never quote a key.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.jwtkeys import API_KEY_LIFETIME_S, JwkError

__all__ = [
    "ASYMMETRIC_KEYS",
    "SIGNING_KEYS",
    "KeySet",
    "Phase",
    "api_keys_signed_by",
    "kid_of",
    "new_ec_key",
    "sign_es256",
    "verify_es256",
]

SIGNING_KEYS = ("JWT_KEYS", "JWT_JWKS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC")
"""The .env keys a signing-key rotation changes."""
ASYMMETRIC_KEYS = {"ANON_KEY_ASYMMETRIC": "anon", "SERVICE_ROLE_KEY_ASYMMETRIC": "service_role"}
"""The API keys signed by the signing key, and their roles (the gateway sends them on)."""

_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


class Phase(StrEnum):
    STANDBY = "standby"
    ROTATE = "rotate"
    REVOKE = "revoke"
    REPLACE = "replace"
    """Compromise: standby, rotate and revoke at once."""


def new_ec_key() -> dict[str, Any]:
    """A P-256 private JWK shaped as add-new-auth-keys.sh makes it (kid a random UUID)."""
    private = ec.generate_private_key(ec.SECP256R1())
    raw = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    return {
        "kty": "EC",
        "kid": str(uuid.uuid4()),
        "use": "sig",
        "key_ops": ["sign", "verify"],
        "alg": "ES256",
        "ext": True,
        "crv": raw["crv"],
        "x": raw["x"],
        "y": raw["y"],
        "d": raw["d"],
    }


def kid_of(jwk: dict[str, Any]) -> str:
    return str(jwk.get("kid", ""))


def _is_asymmetric(jwk: dict[str, Any]) -> bool:
    return jwk.get("kty") in ("EC", "RSA", "OKP")


def _signs(jwk: dict[str, Any]) -> bool:
    ops = jwk.get("key_ops")
    return isinstance(ops, list) and "sign" in ops


def _with_ops(jwk: dict[str, Any], ops: list[str]) -> dict[str, Any]:
    return {**jwk, "key_ops": ops}


def _public(jwk: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
    return {**public, "key_ops": ["verify"]}


@dataclass(frozen=True)
class KeySet:
    """JWT_KEYS, read: which key signs, which verify only, and the legacy `oct` key."""

    keys: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, jwt_keys: str) -> KeySet:
        """Raises JwkError when JWT_KEYS is not what GoTrue would start with."""
        try:
            doc = json.loads(jwt_keys)
        except ValueError:
            raise JwkError("JWT_KEYS is not valid JSON") from None
        if not isinstance(doc, list) or not all(isinstance(k, dict) for k in doc):
            raise JwkError("JWT_KEYS is not a JSON array of JWKs")
        keys = tuple(doc)
        signing = [k for k in keys if _signs(k)]
        if len(signing) != 1:
            raise JwkError(
                f'JWT_KEYS has {len(signing)} keys with "sign" in key_ops; GoTrue needs exactly 1'
            )
        asymmetric = [k for k in keys if _is_asymmetric(k)]
        kids = [kid_of(k) for k in asymmetric]
        if any(not kid for kid in kids) or len(set(kids)) != len(kids):
            raise JwkError("every asymmetric key in JWT_KEYS needs its own kid")
        if any("alg" not in k for k in keys):
            raise JwkError('every key in JWT_KEYS needs an "alg" (GoTrue trusts only those)')
        if any("d" not in k for k in asymmetric):
            raise JwkError("an asymmetric key in JWT_KEYS has no private part (d)")
        return cls(keys)

    @property
    def signing(self) -> dict[str, Any]:
        return next(k for k in self.keys if _signs(k))

    @property
    def asymmetric(self) -> list[dict[str, Any]]:
        return [k for k in self.keys if _is_asymmetric(k)]

    @property
    def others(self) -> list[dict[str, Any]]:
        """Keys a rotation leaves exactly as they are (the legacy `oct` key)."""
        return [k for k in self.keys if not _is_asymmetric(k)]

    @property
    def has_asymmetric_signer(self) -> bool:
        return _is_asymmetric(self.signing)

    def standby(self, new: dict[str, Any]) -> KeySet:
        """The new key joins, verify-only, after the current signer."""
        return KeySet((*self.asymmetric, _with_ops(new, ["verify"]), *self.others))

    def promote(self, kid: str) -> KeySet:
        """The key `kid` signs; every other asymmetric key verifies only. The order stays,
        so JWT_JWKS (public halves, all verify-only) stays the same text and the services
        that read only it need no restart."""
        if kid not in [kid_of(k) for k in self.asymmetric]:
            raise JwkError("the key to promote is not in JWT_KEYS")
        promoted = (
            _with_ops(k, ["sign", "verify"] if kid_of(k) == kid else ["verify"])
            for k in self.asymmetric
        )
        return KeySet((*promoted, *self.others))

    def only(self, kid: str) -> KeySet:
        """Every asymmetric key but `kid` removed; `kid` signs."""
        chosen = [k for k in self.asymmetric if kid_of(k) == kid]
        if not chosen:
            raise JwkError("the key to keep is not in JWT_KEYS")
        return KeySet((_with_ops(chosen[0], ["sign", "verify"]), *self.others))

    def jwt_keys(self) -> str:
        """JWT_KEYS, compact as JSON.stringify writes it."""
        return json.dumps(list(self.keys), separators=(",", ":"))

    def jwt_jwks(self) -> str:
        """JWT_JWKS: every key's public half (the `oct` key as it is, as upstream does)."""
        public = [_public(k) if _is_asymmetric(k) else k for k in self.keys]
        return json.dumps({"keys": public}, separators=(",", ":"))


def sign_es256(claims: dict[str, Any], jwk: dict[str, Any]) -> str:
    """An ES256 JWT with the key's kid in its header."""
    key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwk))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise JwkError("the signing key has no private part (d)")
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid_of(jwk)})


def api_keys_signed_by(jwk: dict[str, Any], now: int | None = None) -> dict[str, str]:
    """ANON_KEY_ASYMMETRIC and SERVICE_ROLE_KEY_ASYMMETRIC as add-new-auth-keys.sh signs
    them: {role, iss: "supabase", iat, exp: iat + 5 years}."""
    iat = int(time.time()) if now is None else now
    return {
        key: sign_es256(
            {"role": role, "iss": "supabase", "iat": iat, "exp": iat + API_KEY_LIFETIME_S}, jwk
        )
        for key, role in ASYMMETRIC_KEYS.items()
    }


def verify_es256(token: str, jwt_jwks: str) -> dict[str, Any]:
    """The claims of an ES256 token whose kid is in JWT_JWKS and whose signature verifies.

    Raises:
        JwkError: malformed, unknown kid, or a bad signature (the token is not quoted).
    """
    try:
        header = jwt.get_unverified_header(token)
        keys = json.loads(jwt_jwks)["keys"]
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        raise JwkError("not an ES256 JWT, or JWT_JWKS unreadable") from None
    match = [k for k in keys if isinstance(k, dict) and kid_of(k) == header.get("kid")]
    if header.get("alg") != "ES256" or not match:
        raise JwkError("its kid is not in JWT_JWKS")
    try:
        key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(match[0]))
        public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=["ES256"], options={"verify_exp": False}
        )
    except (jwt.PyJWTError, ValueError):
        raise JwkError("its signature does not verify with JWT_JWKS") from None
    return claims
