"""Every checklist tick comes from evidence, and falls back to a to-do without it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from core.checklist import (
    BACKUP_TEXT,
    GATEWAY_TEXT,
    ONLY_ROTATED_TEXT,
    RULES_TEXT,
    Evidence,
    build_checklist,
)
from core.envfile import backup
from core.plan import Plan
from core.progress import CheckResult

OLD = "oldpassword" + secrets.token_hex(8)
NEW = "newpassword" + secrets.token_hex(8)


def _plan(
    secret: str = "postgres-password",  # noqa: S107 - a secret's name
    keys: tuple[str, ...] = ("POSTGRES_PASSWORD",),
) -> Plan:
    return Plan(
        secret=secret,
        title="t",
        env_keys=keys,
        services=("auth",),
        restart_levels=(("auth",),),
        db_roles=(),
        impact="i",
        logs_out_users=False,
        downtime_estimate_s=10,
    )


@pytest.fixture
def rotated(tmp_path: Path) -> Evidence:
    env = tmp_path / ".env"
    env.write_text(f"POSTGRES_PASSWORD={OLD}\nOTHER=kept\n")
    made = backup(env, tmp_path / ".rotator" / "backups", label="r-test")
    env.write_text(f"POSTGRES_PASSWORD={NEW}\nOTHER=kept\n")
    return Evidence(
        secret="postgres-password",
        old={"POSTGRES_PASSWORD": OLD},
        new={"POSTGRES_PASSWORD": NEW},
        backup=str(made),
        env_path=env,
    )


def _item(items: list, text: str):  # type: ignore[no-untyped-def]
    return next(item for item in items if item.text == text)


def test_with_every_piece_of_evidence_the_automatic_items_are_ticked(rotated: Evidence) -> None:
    items = build_checklist(_plan(), [], rotated)
    for text in (RULES_TEXT, BACKUP_TEXT, ONLY_ROTATED_TEXT):
        assert _item(items, text).done, _item(items, text)
    assert "POSTGRES_PASSWORD (3 rules)" in _item(items, RULES_TEXT).evidence
    assert "1 other keys unchanged" in _item(items, ONLY_ROTATED_TEXT).evidence


def test_a_missing_backup_unticks_both_items_that_read_it(rotated: Evidence) -> None:
    Path(rotated.backup).unlink()
    items = build_checklist(_plan(), [], rotated)
    assert not _item(items, BACKUP_TEXT).done
    assert not _item(items, ONLY_ROTATED_TEXT).done


def test_a_backup_readable_by_others_is_not_a_safe_backup(rotated: Evidence) -> None:
    Path(rotated.backup).chmod(0o644)
    assert not _item(build_checklist(_plan(), [], rotated), BACKUP_TEXT).done


def test_a_key_outside_the_plan_changing_in_env_is_named(rotated: Evidence) -> None:
    rotated.env_path.write_text(f"POSTGRES_PASSWORD={NEW}\nOTHER=edited\n")
    item = _item(build_checklist(_plan(), [], rotated), ONLY_ROTATED_TEXT)
    assert not item.done
    assert "also changed: OTHER" in item.evidence


def test_a_value_that_breaks_a_rule_unticks_the_rules_item(rotated: Evidence) -> None:
    bad = Evidence(**{**rotated.__dict__, "new": {"POSTGRES_PASSWORD": "short"}})
    item = _item(build_checklist(_plan(), [], bad), RULES_TEXT)
    assert not item.done
    assert "POSTGRES_PASSWORD" in item.evidence


def test_values_a_person_gave_are_checked_for_form_and_left_to_them(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SMTP_HOST=mail\nSMTP_PASS=old-smtp-pass\nSMTP_USER=u\n")
    made = backup(env, tmp_path / "b")
    env.write_text("SMTP_HOST=mail\nSMTP_PASS=new-smtp-pass\nSMTP_USER=u\n")
    evidence = Evidence("smtp", {"SMTP_PASS": "old-smtp-pass"}, {"SMTP_PASS": "new-smtp-pass"},
                        str(made), env)  # fmt: skip
    item = _item(build_checklist(_plan("smtp", ("SMTP_PASS",)), [], evidence), RULES_TEXT)
    assert not item.done
    assert "form only" in item.evidence


def test_checks_become_items_failed_stay_unticked_and_not_applicable_ones_are_left_out(
    rotated: Evidence,
) -> None:
    checks = [
        CheckResult("services healthy", False, "not ready: auth"),
        CheckResult("no container holds the old value", None, "no container to search"),
        CheckResult("gateway: ANON_KEY as apikey with the new value", True, "HTTP 200"),
        CheckResult("gateway: probes", None, "turned off"),
    ]
    items = build_checklist(_plan(), checks, rotated)
    texts = [item.text for item in items]
    assert not _item(items, "All services healthy after the restart").done
    assert "No container still holds the old value" not in texts
    assert _item(items, GATEWAY_TEXT).done


def test_no_applicable_gateway_probe_means_no_gateway_item(rotated: Evidence) -> None:
    checks = [CheckResult("gateway: probes", None, "turned off (--no-gateway-probes)")]
    assert GATEWAY_TEXT not in [i.text for i in build_checklist(_plan(), checks, rotated)]
