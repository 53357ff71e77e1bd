"""Is the deployment's .env consistent with itself before anything is rotated?

A `.env` whose API keys are not signed by its own JWT_SECRET (pitfall 6: the secret changed
by hand, the keys left as they were), or whose asymmetric keys do not verify with its own
JWT_JWKS, is already broken; rotating from it would carry the breakage on, and the probes
that prove a rotation could not pass. Rotator refuses such a deployment and says what is
wrong. It also warns when the install is managed by a platform that rewrites secrets on
redeploy (addendum A7), which would silently undo a rotation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import jwt

from core.errors import PreflightFailed
from core.jwtkeys import JwkError, decode_hs256
from core.signing_keys import ASYMMETRIC_KEYS, KeySet, kid_of, verify_es256

__all__ = ["inconsistencies", "platform_warnings", "refuse_inconsistent"]

_HS256_KEYS = {"ANON_KEY": "anon", "SERVICE_ROLE_KEY": "service_role"}

_PLATFORMS = (
    ("SERVICE_PASSWORD_", "Coolify (SERVICE_PASSWORD_* variables)"),
    ("SERVICE_BASE64_", "Coolify (SERVICE_BASE64_* variables)"),
    ("COOLIFY_", "Coolify (COOLIFY_* variables)"),
)


def inconsistencies(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """What in `env` does not fit together: (the key at fault, a sentence naming keys only,
    no values). A rotation that replaces the key at fault mends it instead."""
    found: list[tuple[str, str]] = []
    secret = env.get("JWT_SECRET", "")
    for key, role in _HS256_KEYS.items():
        token = env.get(key, "")
        if not token or not secret:
            continue
        try:
            claims = decode_hs256(token, secret, check_times=False)
        except jwt.InvalidKeyError:
            found.append(
                ("JWT_SECRET", "JWT_SECRET is shorter than 32 bytes, which PostgREST refuses")
            )
            break
        except jwt.PyJWTError:
            found.append((key, f"{key} is not signed with JWT_SECRET (was it changed by hand?)"))
            continue
        if claims.get("role") != role:
            found.append((key, f"{key} carries role {claims.get('role')!r}, not {role!r}"))
    jwks = env.get("JWT_JWKS", "")
    for key in ASYMMETRIC_KEYS:
        token = env.get(key, "")
        if not token:
            continue
        if not jwks:
            found.append((key, f"{key} is set but JWT_JWKS is empty"))
            continue
        try:
            verify_es256(token, jwks)
        except JwkError as exc:
            found.append((key, f"{key} does not verify with JWT_JWKS: {exc}"))
    if env.get("JWT_KEYS"):
        found += [("JWT_KEYS", problem) for problem in _key_sets_agree(env["JWT_KEYS"], jwks)]
    return found


def _key_sets_agree(jwt_keys: str, jwks: str) -> list[str]:
    try:
        keys = KeySet.parse(jwt_keys)
    except JwkError as exc:
        return [str(exc)]
    try:
        published = {kid_of(k) for k in json.loads(jwks)["keys"] if isinstance(k, dict)}
    except (ValueError, KeyError, TypeError):
        return ["JWT_KEYS is set but JWT_JWKS is not a JWK set"]
    missing = [kid_of(k) for k in keys.asymmetric if kid_of(k) not in published]
    if missing:
        return [f"{len(missing)} key(s) of JWT_KEYS are not published in JWT_JWKS"]
    return []


def platform_warnings(env: Mapping[str, str]) -> list[str]:
    """Platforms that regenerate secrets on redeploy, found by the variables they write."""
    seen = []
    for prefix, platform in _PLATFORMS:
        if any(key.startswith(prefix) for key in env) and platform not in seen:
            seen.append(platform)
    return [
        f"this install looks managed by {platform}, which can rewrite secrets on redeploy and "
        "silently undo a rotation: rotate through the platform, or stop it regenerating them"
        for platform in seen
    ]


def refuse_inconsistent(env: Mapping[str, str], rotated: Sequence[str]) -> None:
    """Raise PreflightFailed (exit 2) when `env` is inconsistent in keys this rotation
    leaves as they are. A rotation that replaces every faulty key goes ahead: it mends them
    (api-keys re-signs keys the secret no longer verifies)."""
    kept = [message for key, message in inconsistencies(env) if key not in rotated]
    if kept:
        raise PreflightFailed(
            "the deployment's .env does not fit together: "
            + "; ".join(kept)
            + ". Mend .env first (or rotate the secret at fault). Nothing was changed."
        )
