"""Stored verifiers checked offline: how roles that cannot log in are verified."""

from __future__ import annotations

import hashlib
import secrets

from core.scram import scram_sha256_verifier, verifier_matches


def test_a_scram_verifier_matches_its_password_only() -> None:
    password = secrets.token_hex(16)
    stored = scram_sha256_verifier(password)
    assert verifier_matches(password, stored, "anon")
    assert not verifier_matches(password + "x", stored, "anon")
    assert not verifier_matches("", stored, "anon")


def test_an_md5_verifier_is_salted_with_the_role_name() -> None:
    password = secrets.token_hex(16)
    stored = "md5" + hashlib.md5((password + "anon").encode()).hexdigest()  # noqa: S324
    assert verifier_matches(password, stored, "anon")
    assert not verifier_matches(password, stored, "authenticated")


def test_no_password_or_a_mangled_verifier_matches_nothing() -> None:
    assert not verifier_matches("x", "", "anon")
    assert not verifier_matches("x", "SCRAM-SHA-256$broken", "anon")
    assert not verifier_matches("x", "SCRAM-SHA-256$4096:!!!$a:b", "anon")
