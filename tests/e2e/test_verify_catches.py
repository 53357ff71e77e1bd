"""`rotator verify` fails each of its checks on a deployment broken where that check looks.

One testbed with every key of upstream's .env filled in (add-new-auth-keys.sh run), so
every probe kind has something to probe. Each test breaks one thing the way it breaks in
the field (a value edited in .env and never deployed, a role's password changed behind
.env's back, a service stopped), runs `rotator verify`, and puts the deployment back.
A check that stayed ✓ here would be one that cannot fail.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from core.jwtkeys import api_key_payload, make_opaque_key, sign_hs256
from core.signing_keys import KeySet, api_keys_signed_by, kid_of, new_ec_key
from tests.e2e.conftest import Rig, start_testbed
from tests.e2e.test_rotations import replace_line

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def broken_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from start_testbed(tmp_path_factory, "e2e-verify", new_api_keys=True)


def _hs256_key(role: str) -> str:
    return sign_hs256(api_key_payload(role, int(time.time())), secrets.token_urlsafe(32))


def _foreign_signing_key(current: str) -> str:
    """JWT_KEYS whose signing key no service trusts."""
    new = new_ec_key()
    return KeySet.parse(current).standby(new).only(kid_of(new)).jwt_keys()


def _foreign_asymmetric(key: str) -> Callable[[str], str]:
    return lambda _current: api_keys_signed_by(new_ec_key())[key]


WRONG_VALUES: dict[str, Callable[[str], str]] = {
    "ANON_KEY": lambda _: _hs256_key("anon"),
    "SERVICE_ROLE_KEY": lambda _: _hs256_key("service_role"),
    "SUPABASE_PUBLISHABLE_KEY": lambda _: make_opaque_key("sb_publishable_"),
    "SUPABASE_SECRET_KEY": lambda _: make_opaque_key("sb_secret_"),
    "JWT_SECRET": lambda _: secrets.token_urlsafe(32),
    "JWT_KEYS": _foreign_signing_key,
    "ANON_KEY_ASYMMETRIC": _foreign_asymmetric("ANON_KEY_ASYMMETRIC"),
    "SERVICE_ROLE_KEY_ASYMMETRIC": _foreign_asymmetric("SERVICE_ROLE_KEY_ASYMMETRIC"),
    "PG_META_CRYPTO_KEY": lambda _: secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda _: secrets.token_hex(16),
}
"""Well-formed values the running deployment has never seen."""

FAILING_CHECKS: dict[str, tuple[str, ...]] = {
    "ANON_KEY": ("gateway: ANON_KEY as apikey with the current value",),
    "SERVICE_ROLE_KEY": (
        "gateway: SERVICE_ROLE_KEY as apikey with the current value",
        "gateway: SERVICE_ROLE_KEY as admin (/pg/) with the current value",
    ),
    "SUPABASE_PUBLISHABLE_KEY": ("gateway: SUPABASE_PUBLISHABLE_KEY as apikey",),
    "SUPABASE_SECRET_KEY": (
        "gateway: SUPABASE_SECRET_KEY as apikey",
        "gateway: SUPABASE_SECRET_KEY as admin (/pg/)",
    ),
    "JWT_SECRET": (
        "gateway: a token signed with JWT_SECRET the current secret at PostgREST",
        "gateway: a token signed with JWT_SECRET the current secret at Auth",
        "gateway: a token signed with JWT_SECRET the current secret at Storage",
    ),
    "JWT_KEYS": ("gateway: a token signed with key",),
    "ANON_KEY_ASYMMETRIC": ("gateway: ANON_KEY_ASYMMETRIC as a bearer token the current value",),
    "SERVICE_ROLE_KEY_ASYMMETRIC": (
        "gateway: SERVICE_ROLE_KEY_ASYMMETRIC as a bearer token the current value at Auth",
    ),
    "PG_META_CRYPTO_KEY": ("postgres-meta: a query with Studio's encrypted connection",),
    "POSTGRES_PASSWORD": (
        "database accepts the current password",
        "pooler: login as postgres.",
        "postgres-meta: a query with Studio's encrypted connection",
    ),
}
"""For each key edited in .env alone: the checks that must fail (by the start of their name)."""


def failed_lines(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("✗ ")]


def test_verify_passes_before_anything_is_broken(broken_rig: Rig) -> None:
    done = broken_rig.run("verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert failed_lines(done.stdout) == []
    # Every probed key of the filled-in .env was probed (and passed).
    for key, names in FAILING_CHECKS.items():
        for name in names:
            assert any(line.startswith(f"✓ {name}") for line in done.stdout.splitlines()), (
                f"{key}: no ✓ {name}\n{done.stdout}"
            )


@pytest.mark.parametrize("key", sorted(WRONG_VALUES))
def test_a_value_edited_in_env_and_never_deployed_fails_its_probes(
    broken_rig: Rig, key: str
) -> None:
    original = broken_rig.env_path.read_bytes()
    wrong = WRONG_VALUES[key](broken_rig.tb.env()[key])
    try:
        broken_rig.env_path.write_bytes(replace_line(original, key, wrong))
        done = broken_rig.run("verify")
    finally:
        broken_rig.env_path.write_bytes(original)
    failed = failed_lines(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    for name in FAILING_CHECKS[key]:
        assert any(line.startswith(name) for line in failed), f"{name} passed\n{done.stdout}"
    assert any(line.startswith("containers match .env") and key in line for line in failed)
    assert wrong not in done.stdout + done.stderr


def test_a_role_whose_password_changed_behind_env_is_named(broken_rig: Rig) -> None:
    password = broken_rig.tb.env()["POSTGRES_PASSWORD"]
    stray = secrets.token_hex(16)
    broken_rig.tb.psql(f"ALTER ROLE supabase_storage_admin PASSWORD '{stray}';")
    try:
        done = broken_rig.run("verify")
    finally:
        broken_rig.tb.psql(f"ALTER ROLE supabase_storage_admin PASSWORD '{password}';")
    failed = failed_lines(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert any(
        line.startswith("database accepts the current password")
        and "supabase_storage_admin" in line
        for line in failed
    ), done.stdout
    assert stray not in done.stdout + done.stderr and password not in done.stdout


def test_a_stopped_service_fails_the_health_check(broken_rig: Rig) -> None:
    broken_rig.tb.run_compose("stop", "imgproxy")
    try:
        done = broken_rig.run("verify")
    finally:
        broken_rig.tb.run_compose("up", "-d", "imgproxy")
        broken_rig.tb.wait_healthy()
    failed = failed_lines(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert any(line.startswith("services healthy") and "imgproxy" in line for line in failed)


def test_verify_passes_again_once_everything_is_put_back(broken_rig: Rig) -> None:
    done = broken_rig.run("verify")
    assert done.returncode == 0, done.stdout + done.stderr
