"""core.secretgen: generated values meet every rule; rules refuse what breaks consumers."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterator

import pytest

from core import secretgen
from core.errors import InvalidSecretValue
from core.jwtkeys import make_opaque_key

ROUNDS = 200

# Each generator's exact output format (stricter than the rules, which any consumer-safe
# value passes).
FORMATS = {
    "POSTGRES_PASSWORD": r"[0-9a-f]{32}",
    "JWT_SECRET": r"[A-Za-z0-9_-]{40}",
    "DASHBOARD_PASSWORD": r"[0-9a-f]{32}",
    "SECRET_KEY_BASE": r"[A-Za-z0-9_-]{64}",
    "VAULT_ENC_KEY": r"[0-9a-f]{32}",
    "PG_META_CRYPTO_KEY": r"[A-Za-z0-9_-]{43}",
    "LOGFLARE_PUBLIC_ACCESS_TOKEN": r"[A-Za-z0-9_-]{43}",
    "LOGFLARE_PRIVATE_ACCESS_TOKEN": r"[A-Za-z0-9_-]{43}",
    "S3_PROTOCOL_ACCESS_KEY_ID": r"[0-9a-f]{32}",
    "S3_PROTOCOL_ACCESS_KEY_SECRET": r"[0-9a-f]{64}",
}


def test_every_generator_has_a_format_and_rules() -> None:
    assert set(secretgen.GENERATORS) == set(FORMATS)
    assert set(secretgen.GENERATORS) <= set(secretgen.RULES)


@pytest.mark.parametrize("key", sorted(FORMATS))
def test_generated_values_meet_their_format_and_rules(key: str) -> None:
    values = [secretgen.GENERATORS[key]() for _ in range(ROUNDS)]
    for value in values:
        assert re.fullmatch(FORMATS[key], value)
        secretgen.check(key, value)
    assert len(set(values)) == ROUNDS


@pytest.mark.parametrize("key", sorted(FORMATS))
def test_fresh_values_meet_rules_and_differ_from_the_old_one(key: str) -> None:
    old = secretgen.GENERATORS[key]()
    for _ in range(ROUNDS):
        value = secretgen.fresh(key, old)
        assert value != old
        secretgen.check(key, value)


def test_jwt_secret_never_starts_with_at_nor_holds_dollar() -> None:
    for _ in range(ROUNDS):
        value = secretgen.jwt_secret()
        assert not value.startswith("@")
        assert "$" not in value


def test_postgres_password_is_letters_and_digits_only() -> None:
    allowed = set(string.ascii_letters + string.digits)
    for _ in range(ROUNDS):
        assert set(secretgen.postgres_password()) <= allowed


def _sequence(values: list[str]) -> Iterator[str]:
    yield from values


def test_dashboard_password_is_redrawn_when_all_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = _sequence(["1" * 32, "2" * 31 + "a"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    assert secretgen.dashboard_password() == "2" * 31 + "a"


def test_fresh_redraws_a_value_equal_to_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = "a" * 32, "b" * 32
    draws = _sequence([old, new])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    assert secretgen.fresh("POSTGRES_PASSWORD", old) == new


def test_fresh_gives_up_on_a_generator_stuck_on_the_old_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = "c" * 32
    monkeypatch.setattr(secrets, "token_hex", lambda n: old)
    with pytest.raises(InvalidSecretValue) as caught:
        secretgen.fresh("VAULT_ENC_KEY", old)
    assert caught.value.key == "VAULT_ENC_KEY"
    assert old not in str(caught.value)


def test_fresh_refuses_a_generated_value_that_breaks_a_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "token_hex", lambda n: "short")
    with pytest.raises(InvalidSecretValue, match="exactly 32"):
        secretgen.fresh("VAULT_ENC_KEY")


GOOD = "Abcdefghij0123456789Abcdefghij0123456789Abcdefghij0123456789Abcd"  # 64 letters+digits

BAD_VALUES = [
    ("POSTGRES_PASSWORD", "pass@word:with/url#chars1234", "letters and digits"),
    ("POSTGRES_PASSWORD", "abc123", "at least 16"),
    ("POSTGRES_PASSWORD", "", "not be empty"),
    ("JWT_SECRET", "tooShortSecret", "at least 32"),
    ("JWT_SECRET", "@/etc/secret-file-that-is-long-enough-to-pass", "'@'"),
    ("JWT_SECRET", "a$" + GOOD, "'$'"),
    ("JWT_SECRET", "with space " + GOOD, "without spaces"),
    ("DASHBOARD_PASSWORD", "1234567890123456789012", "at least one letter"),
    ("DASHBOARD_PASSWORD", "has_special_chars_in_it", "letters and digits"),
    ("DASHBOARD_PASSWORD", "abc1", "at least 16"),
    ("SECRET_KEY_BASE", GOOD[:63], "at least 64"),
    ("VAULT_ENC_KEY", GOOD[:33], "exactly 32"),
    ("VAULT_ENC_KEY", GOOD[:31], "exactly 32"),
    ("PG_META_CRYPTO_KEY", GOOD[:31], "at least 32"),
    ("LOGFLARE_PUBLIC_ACCESS_TOKEN", GOOD[:31], "at least 32"),
    ("LOGFLARE_PRIVATE_ACCESS_TOKEN", GOOD[:40] + "'", "quotes"),
    ("S3_PROTOCOL_ACCESS_KEY_ID", "AKIA/with/slash/1234", "letters and digits"),
    ("S3_PROTOCOL_ACCESS_KEY_SECRET", GOOD[:31], "at least 32"),
    ("S3_PROTOCOL_ACCESS_KEY_SECRET", GOOD[:40] + "\\", "backslash"),
    ("SUPABASE_PUBLISHABLE_KEY", "sb_publishable_" + "A" * 22 + "_AAAAAAAA", "checksum"),
    # Generated keys are random: a fixed id keeps the test's name the same in every
    # process (pytest-xdist's workers must collect the same names).
    pytest.param(
        "SUPABASE_SECRET_KEY",
        make_opaque_key("sb_publishable_"),
        "'sb_secret_'",
        id="SUPABASE_SECRET_KEY-a publishable key-'sb_secret_'",
    ),
    ("SMTP_PASS", "", "not be empty"),
    ("SMTP_PASS", "line\nbreak-password", "line breaks"),
    ("SMTP_PASS", "carriage\rreturn", "line breaks"),
    ("SMTP_PASS", " leading-space", "whitespace"),
    ("SMTP_USER", "user\x00nul", "control"),
]


@pytest.mark.parametrize(("key", "value", "rule"), BAD_VALUES)
def test_rules_refuse_values_that_break_a_consumer(key: str, value: str, rule: str) -> None:
    with pytest.raises(InvalidSecretValue) as caught:
        secretgen.check(key, value)
    assert caught.value.key == key
    assert rule in caught.value.rule
    if value:
        assert value not in str(caught.value)
        assert value not in repr(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("POSTGRES_PASSWORD", GOOD[:16]),
        ("JWT_SECRET", "your-super-secret-jwt-token-with-at-least-32-characters-long"),
        ("JWT_SECRET", "x" * 31 + "@"),
        ("DASHBOARD_PASSWORD", "a" + "1" * 15),
        ("SECRET_KEY_BASE", "UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq"),
        ("VAULT_ENC_KEY", "your-32-character-encryption-key"),
        pytest.param(  # a random key: a fixed id (see BAD_VALUES)
            "SUPABASE_SECRET_KEY", make_opaque_key("sb_secret_"), id="SUPABASE_SECRET_KEY-generated"
        ),
        ("SMTP_PASS", "provider pass with $pecial 'chars'"),
        ("SMTP_USER", "apikey"),
    ],
)
def test_rules_accept_values_every_consumer_takes(key: str, value: str) -> None:
    secretgen.check(key, value)


def test_rules_never_hold_a_value_and_name_a_requirement() -> None:
    for key, rules in secretgen.RULES.items():
        assert rules, key
        for rule in rules:
            assert rule.description.startswith("must"), (key, rule.description)


def test_check_of_a_key_without_rules_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        secretgen.check("ANON_KEY", "x")
