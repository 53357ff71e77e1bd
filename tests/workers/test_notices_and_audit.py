"""Notices that tell the truth (signed, retried webhooks; Statuspage's shape; lead times as
sent; "called off" only when someone was told), and one audit trail whose anchor shows a
truncated tail."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.audit import AuditLog
from tests.slack_fake import Hooks
from tests.workers.conftest import ANNOUNCE, Site
from workers import webhooks
from workers.config import parse_config
from workers.decisions import DecisionLog
from workers.report import lead_time
from workers.store import RequestStatus

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def dep_with(hooks: Hooks, tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    (tmp_path / "hook.secret").write_text("s3cr3t-hook-key\n")
    table = {
        "project": str(tmp_path),
        "channel": "C0ROTATE",
        "announce_channel": "C0ANNOUNCE",
        "approvers": ["UAPP1", "UAPP2"],
        "webhooks": [hooks.url],
        "webhook_secret_file": "hook.secret",
        **extra,
    }
    return parse_config({"deployments": {"d": table}}, "t.toml", base=tmp_path).deployment("d")


EVENT = {
    "event": "notice",
    "deployment": "d",
    "request_id": "r-1",
    "secret": "jwt-secret",
    "title": "JWT secret",
    "window_start": "2030-01-01T03:00:00+00:00",
    "text": "Planned maintenance",
}


def test_webhooks_are_signed_and_retried_after_a_failure(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "BACKOFF_S", (0.05, 0.05, 0.05))
    hooks.fail_next = 2  # the status page is down for two attempts
    webhooks.deliver(dep_with(hooks, tmp_path), EVENT)
    assert len(hooks.received) == 1
    headers, raw = hooks.received[0]
    expected = webhooks.signature("s3cr3t-hook-key", headers["x-rotator-timestamp"], raw)
    assert hmac.compare_digest(headers["x-rotator-signature"], expected)
    assert json.loads(raw) == EVENT
    forged = webhooks.signature("another-key", headers["x-rotator-timestamp"], raw)
    assert forged != headers["x-rotator-signature"]


def test_the_statuspage_shape_is_a_scheduled_maintenance(hooks: Hooks, tmp_path: Path) -> None:
    webhooks.deliver(dep_with(hooks, tmp_path, webhook_format="statuspage"), EVENT, downtime_s=40)
    incident = hooks.bodies[0]["incident"]
    assert incident["status"] == "scheduled"
    assert incident["scheduled_for"] == "2030-01-01T03:00:00+00:00"
    assert datetime.fromisoformat(incident["scheduled_until"]) > datetime.fromisoformat(
        incident["scheduled_for"]
    )
    assert incident["body"] == "Planned maintenance" and incident["scheduled_remind_prior"]


def test_an_unreadable_webhook_secret_sends_nothing_unsigned(hooks: Hooks, tmp_path: Path) -> None:
    dep = dep_with(hooks, tmp_path)
    (tmp_path / "hook.secret").unlink()
    webhooks.deliver(dep, EVENT)
    assert hooks.received == []


def test_lead_times_are_the_real_ones_at_send_time() -> None:
    start = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)
    assert lead_time(start, start - timedelta(minutes=9, seconds=50)) == "in 10 min"
    assert lead_time(start, start - timedelta(seconds=40)) == "in 40 s"
    assert lead_time(start, start + timedelta(seconds=30)) == "shortly"
    assert lead_time(start, start - timedelta(hours=23)) == "in 23 h"


def test_called_off_is_announced_only_when_users_were_told(site: Site) -> None:
    told = site.request("jwt-secret", window_start=datetime.now(UTC) + timedelta(hours=2))
    silent = site.request("jwt-secret", window_start=datetime.now(UTC) + timedelta(hours=2))
    for request in (told, silent):
        site.store.update(request.id, job_ids=(request.notice_job_id("before-1h"),))
    site.queue.enqueue("workers.jobs.send_notice", told.id, "before-1h")
    site.work()
    for request in (told, silent):
        site.store.transition(request.id, RequestStatus.CANCELLED)
        site.queue.enqueue("workers.jobs.send_notice", request.id, "called-off")
    site.work()
    announced = [
        c.body["text"]
        for c in site.slack.calls_to("chat.postMessage")
        if c.body["channel"] == ANNOUNCE
    ]
    assert len(announced) == 2 and "did not take place" in announced[1]
    assert "it was cancelled" in announced[1]
    assert [(h["event"], h["request_id"]) for h in site.hooks.bodies] == [
        ("notice", told.id),
        ("called_off", told.id),
    ]


def test_decisions_reach_the_audit_log_and_a_truncated_tail_shows(
    site: Site, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    decisions = DecisionLog(site.redis)
    for action in ("request", "approve", "schedule"):
        decisions.record(
            site.name,
            request_id="r-1",
            actor="UAPP1",
            action=action,
            secret="jwt-secret",
            result="requested",
        )
    assert decisions.drain(site.name, state) == 3
    audit = AuditLog(state / "audit.log")
    assert [r.action for r in audit.records()] == ["request", "approve", "schedule"]
    assert audit.verify_chain() is None and decisions.pending(site.name) == 0
    assert decisions.anchor(site.name, audit) is None
    # Someone removes the last record on the host: the chain alone still verifies ...
    lines = (state / "audit.log").read_text().splitlines()
    (state / "audit.log").write_text("\n".join(lines[:-1]) + "\n")
    assert audit.verify_chain() is None
    # ... but the anchor kept outside the host does not match.
    problem = decisions.anchor(site.name, audit)
    assert problem is not None and "records 3-3 are gone (truncated)" in problem
    assert decisions.head(site.name)["lines"] == 3  # type: ignore[index]
    site.redis.delete(f"rotator:audit:head:{site.name}")
