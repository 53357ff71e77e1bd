"""core.catalogue: the rotatable secrets, their keys, and the new values they produce."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from core import secretgen
from core.catalogue import (
    CATALOGUE,
    DB_ROLES,
    REALTIME_DB_ENC_KEY_REASON,
    SESSIONS_KEPT,
    SESSIONS_REVOKED,
    Mode,
    Risk,
    RotationOptions,
    Secret,
    Source,
    describe_impact,
    get_secret,
    secret_names,
)
from core.errors import (
    InputError,
    InvalidSecretValue,
    SecretNotConfigured,
    SecretRefused,
    UnknownSecret,
)
from core.jwtkeys import (
    API_KEY_LIFETIME_S,
    JwkError,
    api_key_payload,
    b64url,
    decode_hs256,
    make_opaque_key,
    oct_secrets,
    opaque_key_checksum_ok,
    sign_hs256,
)
from core.signing_keys import KeySet, Phase, kid_of, verify_es256
from tests.conftest import REFERENCE_CURRENT
from tests.unit.test_jwtkeys import upstream_shaped_jwk_sets

ROTATABLE = [
    "postgres-password",
    "jwt-secret",
    "jwt-signing-key",
    "api-keys",
    "dashboard-password",
    "s3-protocol-keys",
    "smtp",
    "openai-api-key",
    "secret-key-base",
    "vault-enc-key",
    "pg-meta-crypto-key",
    "logflare-tokens",
    "opaque-api-keys",
    "all",
]

DEFAULT_JWT_SECRET = "your-super-secret-jwt-token-with-at-least-32-characters-long"


def deployment_env(*, new_keys: bool = True) -> dict[str, str]:
    """A `.env` as upstream's defaults make it; with `new_keys`, after add-new-auth-keys.sh."""
    issued = int(time.time()) - 1000
    env = {
        "POSTGRES_PASSWORD": "your-super-secret-and-long-postgres-password",
        "JWT_SECRET": DEFAULT_JWT_SECRET,
        "ANON_KEY": sign_hs256(api_key_payload("anon", issued), DEFAULT_JWT_SECRET),
        "SERVICE_ROLE_KEY": sign_hs256(api_key_payload("service_role", issued), DEFAULT_JWT_SECRET),
        "SUPABASE_PUBLISHABLE_KEY": "",
        "SUPABASE_SECRET_KEY": "",
        "JWT_KEYS": "",
        "JWT_JWKS": "",
        "ANON_KEY_ASYMMETRIC": "",
        "SERVICE_ROLE_KEY_ASYMMETRIC": "",
        "DASHBOARD_USERNAME": "supabase",
        "DASHBOARD_PASSWORD": "this_password_is_insecure_and_should_be_updated",
        "SECRET_KEY_BASE": "UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq",
        "REALTIME_DB_ENC_KEY": "your16charkey123",
        "VAULT_ENC_KEY": "your-32-character-encryption-key",
        "PG_META_CRYPTO_KEY": "your-encryption-key-32-chars-min",
        "LOGFLARE_PUBLIC_ACCESS_TOKEN": "your-super-secret-and-long-logflare-key-public",
        "LOGFLARE_PRIVATE_ACCESS_TOKEN": "your-super-secret-and-long-logflare-key-private",
        "S3_PROTOCOL_ACCESS_KEY_ID": "625729a08b95bf1b7ff351a663f3a23c",
        "S3_PROTOCOL_ACCESS_KEY_SECRET": "850181e4652dd023b7a98c58ae0d2d34"
        "bd487ee0cc3254aed6eda37307425907",
        "SMTP_HOST": "supabase-mail",
        "SMTP_USER": "fake_mail_user",
        "SMTP_PASS": "fake_mail_password",
    }
    if new_keys:
        jwt_keys, jwt_jwks, private = upstream_shaped_jwk_sets(DEFAULT_JWT_SECRET)
        kid = json.loads(jwt_keys)[0]["kid"]
        for key, role in (
            ("ANON_KEY_ASYMMETRIC", "anon"),
            ("SERVICE_ROLE_KEY_ASYMMETRIC", "service_role"),
        ):
            env[key] = jwt.encode(
                api_key_payload(role, issued), private, algorithm="ES256", headers={"kid": kid}
            )
        env |= {
            "JWT_KEYS": jwt_keys,
            "JWT_JWKS": jwt_jwks,
            "SUPABASE_PUBLISHABLE_KEY": make_opaque_key("sb_publishable_"),
            "SUPABASE_SECRET_KEY": make_opaque_key("sb_secret_"),
        }
    return env


def assert_no_value_in(exc: BaseException, *values: str) -> None:
    text = f"{exc} {exc!r} {exc.args!r}"
    for value in values:
        if value:
            assert value not in text


# --- names -----------------------------------------------------------------------------------


def test_the_catalogue_holds_exactly_the_rotatable_names_and_the_refused_one() -> None:
    assert secret_names() == ROTATABLE
    assert set(CATALOGUE) == {*ROTATABLE, "realtime-db-enc-key"}
    for name, secret in CATALOGUE.items():
        assert secret.name == name


def test_unknown_name_lists_the_valid_names_without_echoing_the_input() -> None:
    typed = "pasted-Secret-Value-123456"
    with pytest.raises(UnknownSecret) as caught:
        get_secret(typed)
    for name in ROTATABLE:
        assert name in str(caught.value)
    assert "realtime-db-enc-key" not in str(caught.value)
    assert_no_value_in(caught.value, typed)
    assert isinstance(caught.value, InputError)


def test_enums_are_plain_strings() -> None:
    assert [s.value for s in Source] == ["generated", "given"]
    assert [r.value for r in Risk] == ["normal", "critical"]
    assert isinstance(Risk.CRITICAL, str)
    assert f"{Risk.CRITICAL}" == "critical"
    assert json.dumps({"risk": Risk.CRITICAL}) == '{"risk": "critical"}'


class TestRealtimeDbEncKeyIsRefused:
    def test_it_is_found_but_not_offered(self) -> None:
        secret = get_secret("realtime-db-enc-key")
        assert secret.refused == REALTIME_DB_ENC_KEY_REASON
        assert not secret.rotatable
        assert "realtime-db-enc-key" not in secret_names()
        assert "REALTIME_DB_ENC_KEY encrypts rows Realtime stored" in REALTIME_DB_ENC_KEY_REASON

    def test_generating_raises_with_the_reason(self) -> None:
        with pytest.raises(SecretRefused) as caught:
            get_secret("realtime-db-enc-key").new_values(deployment_env())
        assert str(caught.value) == REALTIME_DB_ENC_KEY_REASON

    def test_validating_raises_too(self) -> None:
        with pytest.raises(SecretRefused):
            get_secret("realtime-db-enc-key").validate({"REALTIME_DB_ENC_KEY": "x" * 16})

    def test_no_group_touches_it(self) -> None:
        assert all(
            "REALTIME_DB_ENC_KEY" not in s.env_keys for s in CATALOGUE.values() if s.rotatable
        )


# --- entries ---------------------------------------------------------------------------------

ENTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], Risk, Source, bool]] = {
    "postgres-password": (
        ("POSTGRES_PASSWORD",),
        ("POSTGRES_PASSWORD",),
        Risk.CRITICAL,
        Source.GENERATED,
        False,
    ),
    "jwt-secret": (
        ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"),
        ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"),
        Risk.CRITICAL,
        Source.GENERATED,
        False,  # sessions are rows: they survive unless revoked (a compromise rotation)
    ),
    "jwt-signing-key": (
        ("JWT_KEYS", "JWT_JWKS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"),
        ("JWT_KEYS", "JWT_JWKS"),
        Risk.CRITICAL,
        Source.GENERATED,
        False,
    ),
    "api-keys": (
        ("ANON_KEY", "SERVICE_ROLE_KEY"),
        ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"),
        Risk.CRITICAL,
        Source.GENERATED,
        False,
    ),
    "dashboard-password": (
        ("DASHBOARD_PASSWORD",),
        ("DASHBOARD_PASSWORD",),
        Risk.NORMAL,
        Source.GENERATED,
        False,
    ),
    "s3-protocol-keys": (
        ("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET"),
        ("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET"),
        Risk.NORMAL,
        Source.GENERATED,
        False,
    ),
    "smtp": (
        ("SMTP_USER", "SMTP_PASS"),
        ("SMTP_HOST", "SMTP_PASS"),
        Risk.NORMAL,
        Source.GIVEN,
        False,
    ),
    "openai-api-key": (
        ("OPENAI_API_KEY",),
        ("OPENAI_API_KEY",),
        Risk.NORMAL,
        Source.GIVEN,
        False,
    ),
    "secret-key-base": (
        ("SECRET_KEY_BASE",),
        ("SECRET_KEY_BASE",),
        Risk.NORMAL,
        Source.GENERATED,
        False,
    ),
    "vault-enc-key": (
        ("VAULT_ENC_KEY",),
        ("VAULT_ENC_KEY",),
        Risk.CRITICAL,
        Source.GENERATED,
        False,
    ),
    "pg-meta-crypto-key": (
        ("PG_META_CRYPTO_KEY",),
        ("PG_META_CRYPTO_KEY",),
        Risk.NORMAL,
        Source.GENERATED,
        False,
    ),
    "logflare-tokens": (
        ("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN"),
        ("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN"),
        Risk.NORMAL,
        Source.GENERATED,
        False,
    ),
    "opaque-api-keys": (
        ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"),
        ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"),
        Risk.CRITICAL,
        Source.GENERATED,
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_keys_risk_and_source(name: str) -> None:
    env_keys, required, risk, source, logs_out = ENTRIES[name]
    secret = get_secret(name)
    assert secret.env_keys == env_keys
    assert secret.required_keys == required
    assert secret.risk is risk
    assert secret.source is source
    assert secret.logs_out_users is logs_out
    assert secret.refused is None and secret.members == ()
    assert secret.title and secret.impact and secret.checklist


def test_every_changed_key_has_rules_or_a_composite_check() -> None:
    composite = {"ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"}
    composite |= {"ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"}
    for secret in CATALOGUE.values():
        for key in secret.env_keys:
            assert key in secretgen.RULES or key in composite, (secret.name, key)


def test_postgres_password_rotates_the_twelve_roles_of_db_passwd_sh_in_order() -> None:
    roles = get_secret("postgres-password").db_roles
    assert roles == DB_ROLES
    assert roles == (
        "anon",
        "authenticated",
        "authenticator",
        "dashboard_user",
        "pgbouncer",
        "postgres",
        "service_role",
        "supabase_admin",
        "supabase_auth_admin",
        "supabase_functions_admin",
        "supabase_replication_admin",
        "supabase_storage_admin",
    )
    script = REFERENCE_CURRENT / "utils" / "db-passwd.sh"
    if script.is_file():
        upstream = re.findall(r"^alter user (\w+) with password", script.read_text(), re.M)
        assert tuple(upstream) == roles


def test_only_postgres_password_and_all_carry_roles() -> None:
    with_roles = {s.name for s in CATALOGUE.values() if s.db_roles}
    assert with_roles == {"postgres-password", "all"}
    resets = {s.name for s in CATALOGUE.values() if s.resets_pooler_tenant}
    assert resets == {"postgres-password", "vault-enc-key", "all"}


# --- generated single values ------------------------------------------------------------------

SIMPLE = [
    "postgres-password",
    "dashboard-password",
    "s3-protocol-keys",
    "secret-key-base",
    "vault-enc-key",
    "pg-meta-crypto-key",
    "logflare-tokens",
]


@pytest.mark.parametrize("name", SIMPLE)
def test_new_values_change_every_key_and_meet_every_rule(name: str) -> None:
    env = deployment_env()
    secret = get_secret(name)
    seen: set[str] = set()
    for _ in range(200):
        values = secret.new_values(env)
        assert tuple(values) == secret.env_keys
        for key, value in values.items():
            assert value != env[key]
            secretgen.check(key, value)
            seen.add(value)
    assert len(seen) == 200 * len(secret.env_keys)


def test_postgres_password_needs_no_url_encoding() -> None:
    for _ in range(200):
        value = get_secret("postgres-password").new_values(deployment_env())["POSTGRES_PASSWORD"]
        assert re.fullmatch(r"[A-Za-z0-9]{32}", value)


def test_logflare_tokens_are_distinct() -> None:
    for _ in range(200):
        values = get_secret("logflare-tokens").new_values(deployment_env())
        assert values["LOGFLARE_PUBLIC_ACCESS_TOKEN"] != values["LOGFLARE_PRIVATE_ACCESS_TOKEN"]


def test_vault_enc_key_is_exactly_32_characters() -> None:
    for _ in range(200):
        assert len(get_secret("vault-enc-key").new_values(deployment_env())["VAULT_ENC_KEY"]) == 32


@pytest.mark.parametrize("name", [*SIMPLE, "jwt-secret", "api-keys", "opaque-api-keys", "smtp"])
@pytest.mark.parametrize("empty", [True, False], ids=["empty", "absent"])
def test_a_missing_required_key_is_named(name: str, empty: bool) -> None:
    secret = get_secret(name)
    env = deployment_env()
    missing = secret.required_keys[-1]
    if empty:
        env[missing] = ""
    else:
        del env[missing]
    with pytest.raises(SecretNotConfigured) as caught:
        secret.new_values(env, {"SMTP_PASS": "new-pass-1234"} if name == "smtp" else None)
    assert missing in str(caught.value)
    assert_no_value_in(caught.value, *(v for v in deployment_env().values() if len(v) > 8))
    assert secret.missing_keys(env) == [missing]
    assert not secret.is_configured(env)


def test_given_values_are_refused_for_generated_secrets() -> None:
    with pytest.raises(InvalidSecretValue, match="generated by rotator") as caught:
        get_secret("postgres-password").new_values(
            deployment_env(), {"POSTGRES_PASSWORD": "MyOwnChoice12345"}
        )
    assert_no_value_in(caught.value, "MyOwnChoice12345")


# --- jwt-secret --------------------------------------------------------------------------------


class TestJwtSecret:
    def test_keys_verify_with_the_new_secret_and_fail_with_the_old(self) -> None:
        env = deployment_env(new_keys=False)
        values = get_secret("jwt-secret").new_values(env)
        assert set(values) == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"}
        secretgen.check("JWT_SECRET", values["JWT_SECRET"])
        for key in ("ANON_KEY", "SERVICE_ROLE_KEY"):
            decode_hs256(values[key], values["JWT_SECRET"])
            with pytest.raises(jwt.InvalidSignatureError):
                decode_hs256(values[key], env["JWT_SECRET"])

    def test_claims_and_header_are_exactly_upstreams(self) -> None:
        now = int(time.time())
        values = get_secret("jwt-secret").new_values(deployment_env(), now=now)
        for key, role in (("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")):
            assert jwt.get_unverified_header(values[key]) == {"alg": "HS256", "typ": "JWT"}
            claims = decode_hs256(values[key], values["JWT_SECRET"])
            assert list(claims.items()) == [
                ("role", role),
                ("iss", "supabase"),
                ("iat", now),
                ("exp", now + API_KEY_LIFETIME_S),
            ]

    def test_jwk_sets_get_the_new_oct_key_and_keep_the_ec_key(self) -> None:
        env = deployment_env()
        values = get_secret("jwt-secret").new_values(env)
        assert set(values) == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"}
        new_k = b64url(values["JWT_SECRET"].encode())
        old_k = b64url(env["JWT_SECRET"].encode())
        for key in ("JWT_KEYS", "JWT_JWKS"):
            assert oct_secrets(values[key]) == [new_k]
            assert values[key] == env[key].replace(old_k, new_k)
        kid = json.loads(env["JWT_KEYS"])[0]["kid"]
        key_set = jwt.PyJWKSet.from_json(values["JWT_JWKS"])
        for key in ("ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"):
            assert key not in values
            jwt.decode(env[key], key_set[kid], algorithms=["ES256"])

    def test_changed_keys_follow_the_configuration(self) -> None:
        secret = get_secret("jwt-secret")
        assert secret.changed_keys(deployment_env()) == secret.env_keys
        assert secret.changed_keys(deployment_env(new_keys=False)) == (
            "JWT_SECRET",
            "ANON_KEY",
            "SERVICE_ROLE_KEY",
        )

    def test_a_jwk_set_it_cannot_rewrite_is_named_not_quoted(self) -> None:
        env = deployment_env()
        env["JWT_KEYS"] = "[" + env["JWT_SECRET"]
        with pytest.raises(InvalidSecretValue) as caught:
            get_secret("jwt-secret").new_values(env)
        assert caught.value.key == "JWT_KEYS"
        assert_no_value_in(caught.value, env["JWT_SECRET"], env["JWT_KEYS"])

    def test_many_rotations_meet_the_rules(self) -> None:
        env = deployment_env()
        secret = get_secret("jwt-secret")
        for _ in range(200):
            values = secret.new_values(env)
            secret.validate(values, current=env)
            assert not values["JWT_SECRET"].startswith("@")
            assert len(values["JWT_SECRET"]) >= 32


# --- api-keys ----------------------------------------------------------------------------------


class TestApiKeys:
    def test_keys_are_resigned_with_the_current_secret(self) -> None:
        env = deployment_env()
        now = int(time.time())
        values = get_secret("api-keys").new_values(env, now=now)
        assert set(values) == {"ANON_KEY", "SERVICE_ROLE_KEY"}
        for key, role in (("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")):
            assert values[key] != env[key]
            claims = decode_hs256(values[key], env["JWT_SECRET"])
            assert claims == {
                "role": role,
                "iss": "supabase",
                "iat": now,
                "exp": now + API_KEY_LIFETIME_S,
            }

    def test_the_upstream_demo_keys_are_replaced_by_unexpiring_ones(self) -> None:
        path = REFERENCE_CURRENT / ".env.example"
        if not path.is_file():
            pytest.skip("upstream .env.example not found")
        env = deployment_env(new_keys=False)
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"):
                env[key] = value
        values = get_secret("api-keys").new_values(env)
        claims = decode_hs256(values["ANON_KEY"], env["JWT_SECRET"])
        assert claims["exp"] > 1799535600

    def test_a_weak_current_secret_is_refused_and_not_quoted(self) -> None:
        env = deployment_env()
        env["JWT_SECRET"] = "short-secret-value"
        with pytest.raises(InvalidSecretValue) as caught:
            get_secret("api-keys").new_values(env)
        assert caught.value.key == "JWT_SECRET"
        assert "rotate jwt-secret" in caught.value.rule
        assert_no_value_in(caught.value, env["JWT_SECRET"])

    def test_validate_needs_the_secret_to_check_signatures(self) -> None:
        env = deployment_env()
        secret = get_secret("api-keys")
        values = secret.new_values(env)
        secret.validate(values, current=env)
        with pytest.raises(InvalidSecretValue, match="without JWT_SECRET"):
            secret.validate(values)
        other = dict(env, JWT_SECRET="another-secret-that-is-long-enough-0123456789")
        with pytest.raises(InvalidSecretValue, match="signed with JWT_SECRET") as caught:
            secret.validate(values, current=other)
        assert_no_value_in(caught.value, values["ANON_KEY"], values["SERVICE_ROLE_KEY"])

    def test_a_key_for_the_wrong_role_is_refused(self) -> None:
        env = deployment_env()
        swapped = {"ANON_KEY": env["SERVICE_ROLE_KEY"]}
        with pytest.raises(InvalidSecretValue, match="role=anon"):
            get_secret("api-keys").validate(swapped, current={"JWT_SECRET": env["JWT_SECRET"]})

    def test_an_expired_key_is_refused(self) -> None:
        env = deployment_env()
        old = int(time.time()) - API_KEY_LIFETIME_S - 5
        values = {"ANON_KEY": sign_hs256(api_key_payload("anon", old), env["JWT_SECRET"])}
        with pytest.raises(InvalidSecretValue, match="exp in the future"):
            get_secret("api-keys").validate(values, current=env)


# --- opaque-api-keys ---------------------------------------------------------------------------


def test_opaque_keys_have_the_upstream_format_and_differ() -> None:
    env = deployment_env()
    secret = get_secret("opaque-api-keys")
    for _ in range(200):
        values = secret.new_values(env)
        assert values["SUPABASE_PUBLISHABLE_KEY"].startswith("sb_publishable_")
        assert values["SUPABASE_SECRET_KEY"].startswith("sb_secret_")
        for key, value in values.items():
            assert opaque_key_checksum_ok(value)
            assert value != env[key]
    assert "SUPABASE_PUBLISHABLE_KEY" not in get_secret("jwt-secret").env_keys


def test_opaque_key_of_the_other_kind_is_refused() -> None:
    swapped = {"SUPABASE_SECRET_KEY": make_opaque_key("sb_publishable_")}
    with pytest.raises(InvalidSecretValue, match="sb_secret_") as caught:
        get_secret("opaque-api-keys").validate(swapped)
    assert_no_value_in(caught.value, swapped["SUPABASE_SECRET_KEY"])


# --- smtp ----------------------------------------------------------------------------------------


class TestSmtp:
    def test_it_is_given_not_generated(self) -> None:
        secret = get_secret("smtp")
        assert secret.source is Source.GIVEN
        assert secret.given_keys == ("SMTP_PASS",)
        assert secret.optional_given_keys == ("SMTP_USER",)

    def test_given_password_is_returned(self) -> None:
        values = get_secret("smtp").new_values(deployment_env(), {"SMTP_PASS": "n3w pa$$ 'word'"})
        assert values == {"SMTP_PASS": "n3w pa$$ 'word'"}

    def test_a_new_user_is_optional(self) -> None:
        env = deployment_env()
        secret = get_secret("smtp")
        given = {"SMTP_PASS": "new-pass-1234", "SMTP_USER": "new-user"}
        assert secret.new_values(env, given) == given
        for user in ("", env["SMTP_USER"]):
            values = secret.new_values(env, {"SMTP_PASS": "new-pass-1234", "SMTP_USER": user})
            assert values == {"SMTP_PASS": "new-pass-1234"}

    @pytest.mark.parametrize(
        ("given", "key", "rule"),
        [
            (None, "SMTP_PASS", "must be given"),
            ({}, "SMTP_PASS", "must be given"),
            ({"SMTP_PASS": ""}, "SMTP_PASS", "not be empty"),
            ({"SMTP_PASS": "pass-with\nnewline"}, "SMTP_PASS", "line breaks"),
            ({"SMTP_PASS": "fake_mail_password"}, "SMTP_PASS", "differ from the current"),
            ({"SMTP_PASS": "ok-pass-9876", "SMTP_USER": "user\r\nX-Injected"}, "SMTP_USER", "line"),
            (
                {"SMTP_PASS": "ok-pass-9876", "SMTP_HOST": "evil.example"},
                "SMTP_HOST",
                "not a value",
            ),
        ],
    )
    def test_bad_given_values_are_refused_by_key_never_quoted(
        self, given: dict[str, str] | None, key: str, rule: str
    ) -> None:
        with pytest.raises(InvalidSecretValue) as caught:
            get_secret("smtp").new_values(deployment_env(), given)
        assert caught.value.key == key
        assert rule in caught.value.rule
        assert_no_value_in(caught.value, *(given or {}).values())


# --- all -----------------------------------------------------------------------------------------


class TestAll:
    def test_members_are_the_complete_rotation_in_order(self) -> None:
        secret = get_secret("all")
        assert secret.members == (
            "postgres-password",
            "jwt-secret",
            "jwt-signing-key",
            "opaque-api-keys",
            "dashboard-password",
            "secret-key-base",
            "vault-enc-key",
            "pg-meta-crypto-key",
            "logflare-tokens",
            "s3-protocol-keys",
        )
        assert secret.risk is Risk.CRITICAL
        assert secret.signs_sessions
        assert secret.db_roles == DB_ROLES
        for name in secret.members:
            member = get_secret(name)
            assert member.source is Source.GENERATED and member.rotatable and not member.members

    def test_member_keys_make_up_its_keys_and_only_the_jwk_sets_are_shared(self) -> None:
        secret = get_secret("all")
        keys = [key for name in secret.members for key in get_secret(name).env_keys]
        shared = {key for key in keys if keys.count(key) > 1}
        assert shared == {"JWT_KEYS", "JWT_JWKS"}  # jwt-secret's oct key, the signing key
        assert secret.env_keys == tuple(keys)
        assert "SMTP_PASS" not in keys and "REALTIME_DB_ENC_KEY" not in keys

    def test_checklist_gathers_every_members_items_once(self) -> None:
        secret = get_secret("all")
        assert len(secret.checklist) == len(set(secret.checklist))
        for name in secret.members:
            assert set(get_secret(name).checklist) <= set(secret.checklist)

    def test_it_rotates_every_configured_member_in_one_go(self) -> None:
        env = deployment_env()
        secret = get_secret("all")
        assert secret.skipped_members(env) == []
        now = int(time.time())
        values = secret.new_values(env, now=now)
        assert set(values) == set(secret.env_keys)
        assert set(values) == set(secret.changed_keys(env))
        for key, value in values.items():
            assert value != env[key]
        secret.validate(values, current=env)
        decode_hs256(values["ANON_KEY"], values["JWT_SECRET"])
        assert oct_secrets(values["JWT_JWKS"]) == [b64url(values["JWT_SECRET"].encode())]
        # The signing key is replaced at once: the old kid is gone, the API keys re-signed.
        old_kid = json.loads(env["JWT_KEYS"])[0]["kid"]
        assert old_kid not in values["JWT_KEYS"] and old_kid not in values["JWT_JWKS"]
        verify_es256(values["SERVICE_ROLE_KEY_ASYMMETRIC"], values["JWT_JWKS"])
        with pytest.raises(JwkError):
            verify_es256(env["SERVICE_ROLE_KEY_ASYMMETRIC"], values["JWT_JWKS"])

    def test_unconfigured_members_are_skipped_and_reported(self) -> None:
        env = deployment_env(new_keys=False)
        del env["LOGFLARE_PRIVATE_ACCESS_TOKEN"]
        secret = get_secret("all")
        assert secret.skipped_members(env) == [
            "jwt-signing-key",
            "opaque-api-keys",
            "logflare-tokens",
        ]
        assert "opaque-api-keys" not in secret.configured_members(env)
        values = secret.new_values(env)
        skipped = {"SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY", "JWT_KEYS", "JWT_JWKS"}
        skipped |= {"ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"}
        skipped |= {"LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN"}
        assert set(values) == set(secret.env_keys) - skipped
        assert set(values) == set(secret.changed_keys(env))

    def test_it_needs_the_database_and_jwt_core(self) -> None:
        env = deployment_env()
        env["POSTGRES_PASSWORD"] = ""
        with pytest.raises(SecretNotConfigured, match="POSTGRES_PASSWORD"):
            get_secret("all").new_values(env)

    def test_other_secrets_skip_nothing(self) -> None:
        env = deployment_env(new_keys=False)
        assert get_secret("jwt-secret").skipped_members(env) == []

    def test_validate_sends_each_key_to_its_member(self) -> None:
        env = deployment_env()
        secret = get_secret("all")
        values = secret.new_values(env)
        bad = dict(values, VAULT_ENC_KEY="not-32-chars")
        with pytest.raises(InvalidSecretValue, match="exactly 32") as caught:
            secret.validate(bad, current=env)
        assert caught.value.key == "VAULT_ENC_KEY"
        with pytest.raises(InvalidSecretValue, match="not a key"):
            secret.validate({"SMTP_PASS": "x" * 20}, current=env)


# --- validate ------------------------------------------------------------------------------


class TestValidate:
    def test_a_key_the_secret_does_not_change_is_refused(self) -> None:
        with pytest.raises(InvalidSecretValue, match="not a key that dashboard-password"):
            get_secret("dashboard-password").validate({"POSTGRES_PASSWORD": "abcdef0123456789"})

    def test_an_unchanged_value_is_refused(self) -> None:
        env = deployment_env()
        value = {"SECRET_KEY_BASE": env["SECRET_KEY_BASE"]}
        with pytest.raises(InvalidSecretValue, match="differ from the current") as caught:
            get_secret("secret-key-base").validate(value, current=env)
        assert_no_value_in(caught.value, env["SECRET_KEY_BASE"])

    def test_equal_logflare_tokens_are_refused(self) -> None:
        token = secretgen.logflare_token()
        values = {"LOGFLARE_PUBLIC_ACCESS_TOKEN": token, "LOGFLARE_PRIVATE_ACCESS_TOKEN": token}
        with pytest.raises(InvalidSecretValue, match="must differ from") as caught:
            get_secret("logflare-tokens").validate(values)
        assert_no_value_in(caught.value, token)

    @pytest.mark.parametrize(
        ("mutate", "rule"),
        [
            (lambda d: d["keys"].pop(), 'exactly one "oct"'),
            (lambda d: d["keys"][1].update(k="AAAA"), "must hold JWT_SECRET"),
            (lambda d: d["keys"][0].update(d="AAAA"), "private key"),
            (lambda d: d["keys"][0].update(x="AAAA"), "non-oct key"),
        ],
    )
    def test_jwk_set_rules(self, mutate: Callable[[Any], object], rule: str) -> None:
        env = deployment_env()
        values = get_secret("jwt-secret").new_values(env)
        doc = json.loads(values["JWT_JWKS"])
        mutate(doc)
        values["JWT_JWKS"] = json.dumps(doc)
        with pytest.raises(InvalidSecretValue, match=re.escape(rule)) as caught:
            get_secret("jwt-secret").validate(values, current=env)
        assert caught.value.key == "JWT_JWKS"
        assert_no_value_in(
            caught.value, values["JWT_SECRET"], b64url(values["JWT_SECRET"].encode())
        )

    def test_jwt_keys_must_be_an_array(self) -> None:
        env = deployment_env()
        values = get_secret("jwt-secret").new_values(env)
        values["JWT_KEYS"] = json.dumps({"keys": json.loads(values["JWT_KEYS"])})
        with pytest.raises(InvalidSecretValue, match="array"):
            get_secret("jwt-secret").validate(values, current=env)


def test_every_error_names_keys_never_values() -> None:
    """One sweep over every rotatable secret: a bad value of each key, never echoed."""
    env = deployment_env()
    for name in ROTATABLE:
        secret = get_secret(name)
        for key in secret.env_keys:
            bad = "Leaked-Value-0123\n$@" + key
            with pytest.raises(InvalidSecretValue) as caught:
                secret.validate({key: bad}, current=env)
            assert caught.value.key == key
            assert_no_value_in(caught.value, bad, "Leaked-Value-0123")


def test_secret_is_a_frozen_record() -> None:
    secret = get_secret("jwt-secret")
    with pytest.raises(AttributeError):
        secret.name = "other"  # type: ignore[misc]
    assert isinstance(secret, Secret)


# --- jwt-signing-key ------------------------------------------------------------------------


def _phase(env: dict[str, str], phase: Phase) -> dict[str, str]:
    values = get_secret("jwt-signing-key").new_values(env, options=RotationOptions(phase=phase))
    return {**env, **values}


class TestSigningKey:
    def test_it_is_configured_only_with_an_asymmetric_signer(self) -> None:
        secret = get_secret("jwt-signing-key")
        assert secret.is_configured(deployment_env())
        assert "JWT_KEYS" in secret.unconfigured_reason(deployment_env(new_keys=False))
        with pytest.raises(SecretNotConfigured, match="jwt-signing-key"):
            secret.new_values(deployment_env(new_keys=False))

    def test_the_three_phases_add_promote_and_drop_a_key_and_keep_the_legacy_secret(
        self,
    ) -> None:
        env = deployment_env()
        first = kid_of(KeySet.parse(env["JWT_KEYS"]).signing)

        standby = _phase(env, Phase.STANDBY)
        keys = KeySet.parse(standby["JWT_KEYS"])
        second = next(kid_of(k) for k in keys.asymmetric if kid_of(k) != first)
        assert kid_of(keys.signing) == first  # the old key still signs
        assert {kid_of(k) for k in json.loads(standby["JWT_JWKS"])["keys"] if "kid" in k} == {
            first,
            second,
        }
        assert standby["ANON_KEY_ASYMMETRIC"] == env["ANON_KEY_ASYMMETRIC"]

        rotated = _phase(standby, Phase.ROTATE)
        keys = KeySet.parse(rotated["JWT_KEYS"])
        assert kid_of(keys.signing) == second
        assert rotated["JWT_JWKS"] == standby["JWT_JWKS"]  # both still trusted
        for key in ("ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"):
            assert verify_es256(rotated[key], rotated["JWT_JWKS"])
            assert jwt.get_unverified_header(rotated[key])["kid"] == second
        verify_es256(env["ANON_KEY_ASYMMETRIC"], rotated["JWT_JWKS"])  # old: still verifies

        revoked = _phase(rotated, Phase.REVOKE)
        keys = KeySet.parse(revoked["JWT_KEYS"])
        assert [kid_of(k) for k in keys.asymmetric] == [second]
        with pytest.raises(JwkError):
            verify_es256(env["ANON_KEY_ASYMMETRIC"], revoked["JWT_JWKS"])
        for state in (standby, rotated, revoked):
            assert oct_secrets(state["JWT_KEYS"]) == [b64url(DEFAULT_JWT_SECRET.encode())]
            assert oct_secrets(state["JWT_JWKS"]) == [b64url(DEFAULT_JWT_SECRET.encode())]
            assert '"d"' not in state["JWT_JWKS"]

    def test_a_phase_out_of_order_is_refused_by_name(self) -> None:
        env = deployment_env()
        with pytest.raises(InvalidSecretValue, match="no standby key"):
            _phase(env, Phase.ROTATE)
        with pytest.raises(InvalidSecretValue, match="no old key"):
            _phase(env, Phase.REVOKE)
        standby = _phase(env, Phase.STANDBY)
        with pytest.raises(InvalidSecretValue, match="already holds a second key"):
            _phase(standby, Phase.STANDBY)

    def test_a_compromise_replaces_the_key_and_the_api_keys_at_once(self) -> None:
        env = deployment_env()
        values = get_secret("jwt-signing-key").new_values(
            env, options=RotationOptions(mode=Mode.COMPROMISE)
        )
        assert set(values) == set(get_secret("jwt-signing-key").env_keys)
        assert len(KeySet.parse(values["JWT_KEYS"]).asymmetric) == 1
        with pytest.raises(JwkError):
            verify_es256(env["SERVICE_ROLE_KEY_ASYMMETRIC"], values["JWT_JWKS"])

    @pytest.mark.parametrize(
        ("damage", "key", "rule"),
        [
            (lambda v: v.update(JWT_JWKS=json.dumps({"keys": []})), "JWT_JWKS", "public half"),
            (lambda v: v.update(ANON_KEY_ASYMMETRIC="x.y.z"), "ANON_KEY_ASYMMETRIC", "ES256"),
        ],
    )
    def test_values_that_do_not_fit_together_are_refused(
        self, damage: Callable[[dict[str, str]], object], key: str, rule: str
    ) -> None:
        env = deployment_env()
        secret = get_secret("jwt-signing-key")
        values = secret.new_values(env, options=RotationOptions(mode=Mode.COMPROMISE))
        damage(values)
        with pytest.raises(InvalidSecretValue, match=rule) as caught:
            secret.validate(values, current=env)
        assert caught.value.key == key


class TestImpact:
    def test_sessions_are_revoked_by_default_only_in_a_compromise(self) -> None:
        jwt_secret = get_secret("jwt-secret")
        assert not RotationOptions().sessions_revoked(jwt_secret)
        assert RotationOptions(mode=Mode.COMPROMISE).sessions_revoked(jwt_secret)
        assert not RotationOptions(mode=Mode.COMPROMISE, revoke_sessions=False).sessions_revoked(
            jwt_secret
        )
        assert not RotationOptions(mode=Mode.COMPROMISE).sessions_revoked(
            get_secret("dashboard-password")
        )

    def test_the_impact_says_what_users_notice_in_each_case(self) -> None:
        signing = get_secret("jwt-signing-key")
        text, logs_out = describe_impact(signing, RotationOptions(phase=Phase.ROTATE))
        assert text.endswith(SESSIONS_KEPT) and "keep verifying" in text and not logs_out
        text, logs_out = describe_impact(signing, RotationOptions(mode=Mode.COMPROMISE))
        assert text.startswith(SESSIONS_REVOKED) and logs_out
        text, logs_out = describe_impact(get_secret("jwt-secret"), RotationOptions())
        assert text.endswith(SESSIONS_KEPT) and not logs_out
        text, _ = describe_impact(get_secret("dashboard-password"), RotationOptions())
        assert SESSIONS_KEPT not in text  # it signs no session: nothing to say about them
