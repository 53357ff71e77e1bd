"""Every secret, rotated through the `rotator` command on a running testbed.

One testbed for the module (tests run in file order; each rotation leaves the deployment
consistent for the next), plus one with the opaque and asymmetric keys filled in and one
with the real services' start-up times, each for its own class. What every rotation must
prove is in `Rotation.check` and `Rig.finished` (conftest.py), the official client's probe
before and after included.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from core.key_schedule import KeySchedule
from core.signing_keys import KeySet, kid_of
from tests.e2e.conftest import ROTATION_TIMEOUT_S, Rig, basic, wait_for

pytestmark = pytest.mark.docker

POSTGRES = ("POSTGRES_PASSWORD",)
JWT = ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY")
JWK_SETS = ("JWT_KEYS", "JWT_JWKS")
ASYMMETRIC = ("ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC")
API_KEYS = ("ANON_KEY", "SERVICE_ROLE_KEY")
OPAQUE = ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY")
DASHBOARD = ("DASHBOARD_PASSWORD",)
S3 = ("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET")
SECRET_KEY_BASE = ("SECRET_KEY_BASE",)
VAULT = ("VAULT_ENC_KEY",)
PG_META = ("PG_META_CRYPTO_KEY",)
LOGFLARE = ("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN")
ALL = (*POSTGRES, *JWT, *DASHBOARD, *SECRET_KEY_BASE, *VAULT, *PG_META, *LOGFLARE, *S3)
"""`all` on upstream's .env: the opaque keys and JWK sets are empty, so left alone."""


def replace_line(text: bytes, key: str, value: str) -> bytes:
    lines = text.split(b"\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}=".encode()))
    lines[index] = f"{key}={value}".encode()
    return b"\n".join(lines)


# --------------------------------------------------------------------------- rotator verify


def test_verify_passes_on_a_fresh_deployment_and_catches_an_env_edit_without_recreate(
    rig: Rig,
) -> None:
    fresh = rig.run("verify")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "✓ containers match .env" in fresh.stdout
    assert "✓ database accepts the current password" in fresh.stdout
    assert "✗" not in fresh.stdout

    original = rig.env_path.read_bytes()
    try:  # the guide's commonest mistake: .env edited, containers not recreated
        rig.env_path.write_bytes(replace_line(original, "DASHBOARD_PASSWORD", "hand-edited-0123"))
        drifted = rig.run("verify")
    finally:
        rig.env_path.write_bytes(original)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    failed = [line for line in drifted.stdout.splitlines() if line.startswith("✗")]
    assert any("containers match .env" in f and "api-gw (DASHBOARD_PASSWORD)" in f for f in failed)
    assert any("dashboard login" in f for f in failed), failed
    assert "hand-edited-0123" not in drifted.stdout + drifted.stderr

    again = rig.run("verify")
    assert again.returncode == 0, again.stdout + again.stderr


# --------------------------------------------------------------------------- one per secret


def test_postgres_password(rig: Rig) -> None:
    tenant_before = rig.tb.psql(TENANT_ROW, dbname="_supabase")
    rotation = rig.rotate("postgres-password", keys=POSTGRES)
    rotation.check()
    rotation.check_fingerprint("supavisor", "POSTGRES_PASSWORD", rotation.new["POSTGRES_PASSWORD"])
    # Supavisor's own API changed its stored credentials: the tenant was kept, not dropped
    # and made again (the pooler probe in check() logged in through it).
    assert "updated through Supavisor's API" in rig.last_stdout, rig.last_stdout
    assert rig.tb.psql(TENANT_ROW, dbname="_supabase") == tenant_before != ""


TENANT_ROW = "SELECT external_id, inserted_at FROM _supavisor.tenants;"


def test_jwt_secret(rig: Rig) -> None:
    rig.rotate("jwt-secret", keys=JWT).check()


def test_api_keys(rig: Rig) -> None:
    jwt_secret = rig.tb.env()["JWT_SECRET"]
    rig.rotate("api-keys", keys=API_KEYS).check()
    assert rig.tb.env()["JWT_SECRET"] == jwt_secret


def test_dashboard_password(rig: Rig) -> None:
    rig.rotate("dashboard-password", keys=DASHBOARD).check()


def test_s3_protocol_keys(rig: Rig) -> None:
    rig.rotate("s3-protocol-keys", keys=S3).check()


def test_smtp_from_a_values_file(rig: Rig, tmp_path: Path) -> None:
    given = {"SMTP_USER": "e2e-mailer@example.com", "SMTP_PASS": "n3w'p\"a$$word#x ${HOME}"}
    values = tmp_path / "smtp.env"
    values.write_text("".join(f"{k}={v}\n" for k, v in given.items()))
    before = rig.snapshot()
    done = rig.run("rotate", "smtp", "--yes", "--values-file", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    rotation = rig.finished("smtp", before, done.stdout, ("SMTP_USER", "SMTP_PASS"))
    rotation.given = given
    rotation.check()
    # auth got the provider's values literally: no quote, `$` or `#` was interpreted
    rotation.check_fingerprint("auth", "GOTRUE_SMTP_PASS", given["SMTP_PASS"])
    rotation.check_fingerprint("auth", "GOTRUE_SMTP_USER", given["SMTP_USER"])
    assert given["SMTP_PASS"] not in done.stdout + done.stderr


def test_openai_api_key_from_a_values_file(rig: Rig, tmp_path: Path) -> None:
    given = {"OPENAI_API_KEY": "sk-proj-" + "e2e" * 12}
    values = tmp_path / "openai.env"
    values.write_text(f"OPENAI_API_KEY={given['OPENAI_API_KEY']}\n")
    before = rig.snapshot()
    done = rig.run("rotate", "openai-api-key", "--yes", "--values-file", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    rotation = rig.finished("openai-api-key", before, done.stdout, ("OPENAI_API_KEY",))
    rotation.given = given
    rotation.check()
    rotation.check_fingerprint("studio", "OPENAI_API_KEY", given["OPENAI_API_KEY"])
    assert given["OPENAI_API_KEY"] not in done.stdout + done.stderr


def test_secret_key_base(rig: Rig) -> None:
    rotation = rig.rotate("secret-key-base", keys=SECRET_KEY_BASE)
    rotation.check()
    new = rotation.new["SECRET_KEY_BASE"]
    for service in ("realtime", "supavisor"):
        rotation.check_fingerprint(service, "SECRET_KEY_BASE", new)


def test_vault_enc_key(rig: Rig) -> None:
    rotation = rig.rotate("vault-enc-key", keys=VAULT)
    rotation.check()  # supavisor's health decrypts its tenant with the new key and logs in
    rotation.check_fingerprint("supavisor", "VAULT_ENC_KEY", rotation.new["VAULT_ENC_KEY"])


def test_pg_meta_crypto_key(rig: Rig) -> None:
    rotation = rig.rotate("pg-meta-crypto-key", keys=PG_META)
    rotation.check()  # includes a query through Studio, which encrypts it for postgres-meta
    env = rig.tb.env()
    query = rig.tb.http(
        "POST",
        "/api/platform/pg-meta/default/query",
        {
            **basic(env["DASHBOARD_USERNAME"], env["DASHBOARD_PASSWORD"]),
            "content-type": "application/json",
        },
        b'{"query": "select current_user"}',
    )
    assert (query.status, query.json()) == (200, [{"current_user": "postgres"}])


def test_logflare_tokens(rig: Rig) -> None:
    if all(rig.tb.env().get(k) for k in LOGFLARE):
        rig.rotate("logflare-tokens", keys=LOGFLARE).check()
        return
    before = rig.env_path.read_bytes()
    done = rig.run("rotate", "logflare-tokens", "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "logflare-tokens is not configured" in done.stderr
    assert rig.env_path.read_bytes() == before


def test_opaque_api_keys_are_refused_where_env_has_none(rig: Rig) -> None:
    before = rig.env_path.read_bytes()
    done = rig.run("rotate", "opaque-api-keys", "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "opaque-api-keys is not configured" in done.stderr
    assert "SUPABASE_PUBLISHABLE_KEY" in done.stderr
    assert rig.env_path.read_bytes() == before
    assert not (rig.directory / ".rotator" / "journal.json").exists()


def test_realtime_db_enc_key_is_refused(rig: Rig) -> None:
    before = rig.env_path.read_bytes()
    done = rig.run("rotate", "realtime-db-enc-key", "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "REALTIME_DB_ENC_KEY encrypts rows Realtime stored" in done.stderr
    assert rig.env_path.read_bytes() == before


# --------------------------------------------------------------------------- one at a time


GATED_COMPOSE = """#!/bin/sh
# `docker compose`; an `up` (the restart step) is held at the door until the test
# creates the gate file. Planning (`config`) goes through at once.
gate="$1"; shift
case " $* " in
    *" up "*)
        : > "$gate.waiting"
        while [ ! -e "$gate" ]; do sleep 0.02; done ;;
esac
exec docker compose "$@"
"""


def test_a_second_rotation_is_refused_while_one_runs(rig: Rig, tmp_path: Path) -> None:
    """The first rotation is held in its restart step (its compose command waits for a
    gate file), so the second one certainly starts while the first is running."""
    gate = tmp_path / "gate"
    script = tmp_path / "gated-compose"
    script.write_text(GATED_COMPOSE)
    waiting = Path(f"{gate}.waiting")
    before = rig.snapshot()
    first = rig.popen(
        "rotate", "dashboard-password", "--yes", compose=shlex.join(["sh", str(script), str(gate)])
    )
    try:
        wait_for(lambda: waiting.exists() or first.poll() is not None, 60, "the first rotation")
        assert first.poll() is None, "the first rotation ended before its restart step"
        assert (rig.directory / ".rotator" / "journal.json").exists()
        during = rig.env_path.read_bytes()
        second = rig.run("rotate", "pg-meta-crypto-key", "--yes")
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another rotator process is working on" in second.stderr
        assert rig.env_path.read_bytes() == during  # the second changed nothing
    finally:
        gate.touch()
        out, err = first.communicate(timeout=ROTATION_TIMEOUT_S)
    assert first.returncode == 0, out + err
    rig.finished("dashboard-password", before, out, DASHBOARD).check()


# --------------------------------------------------------------------------- everything


def test_all(rig: Rig) -> None:
    # Studio and meta share PG_META_CRYPTO_KEY and studio's health goes through meta:
    # the restart pass must not wait for studio before meta is back (core/restart.py).
    rig.rotate("all", keys=ALL).check()  # the opaque keys are empty: left alone


# --------------------------------------------------------------------------- opaque keys


class TestWithOpaqueAndAsymmetricKeys:
    """A testbed after upstream's add-new-auth-keys.sh: opaque keys, JWT_KEYS, JWT_JWKS."""

    def test_opaque_api_keys(self, keys_rig: Rig) -> None:
        asymmetric = {k: keys_rig.tb.env()[k] for k in ("ANON_KEY_ASYMMETRIC", "JWT_JWKS")}
        keys_rig.rotate("opaque-api-keys", keys=OPAQUE).check()
        assert {k: keys_rig.tb.env()[k] for k in asymmetric} == asymmetric

    def test_jwt_secret_rewrites_the_symmetric_key_of_the_jwk_sets(self, keys_rig: Rig) -> None:
        # check() also proves the ES256 keys still work: the gateway turns the publishable
        # key into ANON_KEY_ASYMMETRIC, which rest verifies with the new JWT_JWKS.
        keys_rig.rotate("jwt-secret", keys=(*JWT, *JWK_SETS)).check()

    def test_the_plan_of_all_lists_the_signing_key_and_the_keys_it_signed(
        self, keys_rig: Rig
    ) -> None:
        done = keys_rig.run("plan", "all", "--json")
        assert done.returncode == 0, done.stderr
        plan = json.loads(done.stdout)
        assert {*JWK_SETS, *ASYMMETRIC} <= set(plan["env_keys"])
        assert "jwt-signing-key" in plan["members"]
        assert plan["revokes_sessions"] and plan["options"]["mode"] == "compromise"

    def test_a_planned_signing_key_rotation_signs_nobody_out_through_its_three_phases(
        self, keys_rig: Rig
    ) -> None:
        """standby, rotate, revoke: the session signed in before standby refreshes after
        each phase (the client probe proves it), tokens from the new key verify after
        rotate, and only revoke makes the old key's tokens refused."""
        first_kid = kid_of(KeySet.parse(keys_rig.tb.env()["JWT_KEYS"]).signing)
        standby = keys_rig.rotate("jwt-signing-key", keys=JWK_SETS)
        standby.check()
        assert "rotate: the new key signs" in keys_rig.last_stdout

        rotated = keys_rig.rotate("jwt-signing-key", keys=("JWT_KEYS", *ASYMMETRIC))
        rotated.check()
        new_kid = kid_of(KeySet.parse(keys_rig.tb.env()["JWT_KEYS"]).signing)
        assert new_kid != first_kid
        assert keys_rig.last_probe is not None  # sessions are now signed by the new key
        assert f"kid {new_kid[:8]}" in keys_rig.last_probe.text()

        early = keys_rig.run("rotate", "jwt-signing-key", "--yes")
        assert early.returncode == 2 and "revoke it at" in early.stderr
        record = KeySchedule.read(keys_rig.directory / ".rotator")
        assert record is not None
        # Waiting JWT_EXPIRY and 15 minutes is the schedule's job: move its clock instead.
        KeySchedule(**{**record.__dict__, "revoke_after": time.time() - 1}).write(
            keys_rig.directory / ".rotator"
        )
        keys_rig.rotate("jwt-signing-key", keys=JWK_SETS).check()
        env = keys_rig.tb.env()
        assert first_kid not in env["JWT_KEYS"] and first_kid not in env["JWT_JWKS"]

    def test_all(self, keys_rig: Rig) -> None:
        """Everything after a leak: the signing key replaced at once, every session
        revoked (the client probe proves the session from before cannot refresh)."""
        keys_rig.rotate("all", keys=(*ALL, *OPAQUE, *JWK_SETS, *ASYMMETRIC)).check()


# --------------------------------------------------------------------------- compose v1

FAKE_COMPOSE_V1 = """#!/bin/sh
# Answers as Debian's docker-compose 1.29.2 does: `config --format json` is no option it
# knows, so it prints its usage (and exits 0, as the real one does).
case "$1" in
    version) echo "docker-compose version 1.29.2, build unknown" ;;
    *) echo "Validate and view the Compose file."; echo; echo "Usage: config [options]" ;;
esac
"""


def test_compose_v1_is_refused_before_anything_changes(rig: Rig, tmp_path: Path) -> None:
    script = tmp_path / "docker-compose"
    script.write_text(FAKE_COMPOSE_V1)
    before = rig.snapshot()

    done = rig.run("rotate", "dashboard-password", "--yes", compose=shlex.join(["sh", str(script)]))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Docker Compose 1.29.2 (v1)" in done.stderr
    assert "rotator needs Docker Compose v2" in done.stderr
    assert "docker-compose-plugin" in done.stderr
    after = rig.snapshot()
    assert after.env_bytes == before.env_bytes
    assert after.containers == before.containers  # every container holds what it held
    assert not (rig.directory / ".rotator" / "journal.json").exists()


# --------------------------------------------------------------------------- real timing


class TestWithRealStartUpTimes:
    """The stand-ins take as long to start as the real services, and compose checks them at
    upstream's intervals: the restart pass waits for Realtime and Supavisor, the slowest."""

    def test_secret_key_base(self, real_timing_rig: Rig) -> None:
        real_timing_rig.rotate("secret-key-base", keys=SECRET_KEY_BASE).check()
