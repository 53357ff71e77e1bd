"""A .env that does not fit together is refused before anything changes."""

from __future__ import annotations

import pytest

from core.consistency import inconsistencies, platform_warnings, refuse_inconsistent
from core.errors import PreflightFailed
from core.jwtkeys import api_key_payload, sign_hs256
from core.signing_keys import KeySet, api_keys_signed_by, new_ec_key

SECRET = "a-jwt-secret-of-at-least-thirty-two-characters"
OTHER = "another-jwt-secret-of-at-least-thirty-two-chars"


def _env(secret_for_keys: str = SECRET) -> dict[str, str]:
    return {
        "JWT_SECRET": SECRET,
        "ANON_KEY": sign_hs256(api_key_payload("anon", 1_700_000_000), secret_for_keys),
        "SERVICE_ROLE_KEY": sign_hs256(
            api_key_payload("service_role", 1_700_000_000), secret_for_keys
        ),
    }


def test_keys_signed_with_the_secret_fit() -> None:
    assert inconsistencies(_env()) == []


def test_keys_signed_with_another_secret_are_named_never_quoted() -> None:
    env = _env(OTHER)
    found = inconsistencies(env)
    assert [key for key, _ in found] == ["ANON_KEY", "SERVICE_ROLE_KEY"]
    with pytest.raises(PreflightFailed, match="not signed with JWT_SECRET") as refused:
        refuse_inconsistent(env, ["DASHBOARD_PASSWORD"])
    for value in env.values():
        assert value not in str(refused.value)


def test_a_rotation_that_replaces_the_faulty_keys_may_mend_them() -> None:
    refuse_inconsistent(_env(OTHER), ["ANON_KEY", "SERVICE_ROLE_KEY"])  # api-keys, jwt-secret


def test_a_key_for_the_wrong_role_is_named() -> None:
    env = _env()
    env["ANON_KEY"] = env["SERVICE_ROLE_KEY"]
    assert [key for key, _ in inconsistencies(env)] == ["ANON_KEY"]


def test_asymmetric_keys_must_verify_with_the_published_set() -> None:
    first, second = new_ec_key(), new_ec_key()
    env = _env() | {
        "JWT_KEYS": KeySet((first,)).jwt_keys(),
        "JWT_JWKS": KeySet((first,)).jwt_jwks(),
        **api_keys_signed_by(first),
    }
    assert inconsistencies(env) == []
    env |= api_keys_signed_by(second)  # signed by a key nobody publishes
    assert {key for key, _ in inconsistencies(env)} == {
        "ANON_KEY_ASYMMETRIC",
        "SERVICE_ROLE_KEY_ASYMMETRIC",
    }
    env["JWT_JWKS"] = KeySet((second,)).jwt_jwks()
    assert [key for key, _ in inconsistencies(env)] == ["JWT_KEYS"]  # JWT_KEYS' key unpublished


def test_a_platform_that_rewrites_secrets_is_named() -> None:
    assert platform_warnings(_env()) == []
    warnings = platform_warnings(_env() | {"SERVICE_PASSWORD_POSTGRES": "x"})
    assert len(warnings) == 1 and "Coolify" in warnings[0]
