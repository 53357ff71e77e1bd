"""The rotation job end to end: a real RQ worker on real Redis runs `run_rotation` against a
mini Supabase deployment on real PostgreSQL (containers recorded, not run), and reports to a
local fake Slack and a loopback webhook."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job

from core.errors import RuntimeFailure
from core.journal import Journal
from tests.fakes import RecordingRuntime
from tests.leaks import dump_redis
from tests.workers.conftest import ANNOUNCE, CHANNEL, ONCALL, Site
from workers import jobs
from workers.connection import SERIALIZER
from workers.report import RECOVER_ACTION
from workers.sealed import generate_keypair, seal_values
from workers.store import RequestStatus

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.compose]


def result_of(site: Site, job_id: str) -> Any:
    return Job.fetch(job_id, connection=site.redis, serializer=SERIALIZER).return_value()


def posts(site: Site, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [c.body for c in site.slack.calls_to("chat.postMessage") if c.body["channel"] == channel]


def test_a_rotation_reports_progress_in_one_message_then_verification_and_checklist(
    site: Site,
) -> None:
    request = site.request("postgres-password")
    old = site.env()["POSTGRES_PASSWORD"]
    job_id = site.enqueue(request)
    site.work()

    assert result_of(site, job_id) == "finished"
    assert site.env()["POSTGRES_PASSWORD"] != old
    thread = posts(site)
    assert all(p["thread_ts"] == request.thread_ts for p in thread)
    progress = [p for p in thread if p["text"].startswith("*Rotating `postgres-password`")]
    assert len(progress) == 1
    progress_ts = site.store.get(request.id).progress_ts
    updates = [
        c.body for c in site.slack.calls_to("chat.update") if c.body["ts"] != request.thread_ts
    ]
    # Coalesced: at most one edit a second, the last one complete.
    assert len(updates) >= 1 and {u["ts"] for u in updates} == {progress_ts}
    final = updates[-1]["text"]
    for step in ("preflight", "backup", "stage", "apply", "commit", "restart", "verify"):
        assert f":white_check_mark: *{step}*" in final
    texts = [p["text"] for p in thread]
    verification = next(p for p in thread if p["text"].startswith("Verification"))
    assert "database refuses the old password" in json.dumps(verification["blocks"])
    checklist = next(p for p in thread if p["text"] == "Security checklist")
    rendered = json.dumps(checklist["blocks"])
    assert ":ballot_box_with_check:" in rendered and "evidence:" in rendered
    assert "*To do:*" in rendered  # what a person still has to do
    assert texts.index(verification["text"]) < texts.index("Security checklist")
    assert "finished and verified" in texts[-1]

    assert site.store.get(request.id).status is RequestStatus.FINISHED
    assert ["done" in p["text"] for p in posts(site, ANNOUNCE)] == [True]
    assert [h["event"] for h in site.hooks.bodies] == ["finished"]
    assert not (site.directory / ".rotator" / "journal.json").exists()


def test_a_failed_rotation_says_what_failed_that_it_rolled_back_and_calls_oncall(
    site: Site,
) -> None:
    site.runtime.fail_on = {"auth"}
    request = site.request("postgres-password")
    old = site.env()["POSTGRES_PASSWORD"]
    job_id = site.enqueue(request)
    site.work()

    assert result_of(site, job_id) == "rolled_back"
    assert site.env()["POSTGRES_PASSWORD"] == old
    failure = next(p for p in posts(site) if "rolled back" in p["text"] and ":x:" in p["text"])
    assert "auth stayed unhealthy" in failure["text"]
    assert f"<@{ONCALL}>" in failure["text"]
    assert failure.get("reply_broadcast") in (True, "1", "true", "True")
    assert "Verification after rollback" in [p["text"] for p in posts(site)][-2]
    assert site.store.get(request.id).status is RequestStatus.ROLLED_BACK
    assert "rolled back" in posts(site, ANNOUNCE)[0]["text"]
    assert [h["event"] for h in site.hooks.bodies] == ["rolled_back"]


def test_job_arguments_and_description_hold_the_request_id_only_as_json(site: Site) -> None:
    request = site.request("jwt-secret")
    job_id = site.enqueue(request)
    raw = site.redis.hgetall(f"rq:job:{job_id}")
    data = zlib.decompress(raw[b"data"])
    assert not data.startswith(b"\x80")  # not a pickle
    func, instance, args, kwargs = json.loads(data)
    assert (func, instance, args, kwargs) == ("workers.jobs.run_rotation", None, [request.id], {})
    assert raw[b"description"].decode() == f"workers.jobs.run_rotation('{request.id}')"


def test_no_secret_value_reaches_slack_redis_or_the_logs(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = site.env()
    site.enqueue(site.request("postgres-password"))
    site.work()
    site.runtime.fail_on = {"rest"}
    site.enqueue(site.request("jwt-secret"))  # rolls back
    site.work()
    after = site.env()
    values = {
        v
        for env in (before, after)
        for k, v in env.items()
        if len(v) >= 8 and any(word in k for word in ("PASSWORD", "SECRET", "KEY"))
    }
    assert before["POSTGRES_PASSWORD"] != after["POSTGRES_PASSWORD"] and len(values) >= 6

    haystacks = [json.dumps(c.body) for c in site.slack.calls]
    haystacks += [json.dumps(h) for h in site.hooks.bodies]
    haystacks.append(caplog.text)
    haystacks += list(dump_redis(site.redis).values())
    assert len(site.slack.calls) > 10
    for text in haystacks:
        for value in values:
            assert value not in text


def test_a_cancelled_request_is_not_rotated(site: Site) -> None:
    request = site.request("jwt-secret")
    site.store.transition(request.id, RequestStatus.CANCELLED)
    job_id = site.enqueue(request)
    site.work()
    assert result_of(site, job_id) == "skipped: cancelled"
    assert site.runtime.recreated == []
    assert posts(site) == []


def test_a_held_deployment_lock_refuses_the_rotation_and_says_so(site: Site) -> None:
    site.redis.set(jobs.lock_key(site.name), b"someone-else", ex=60)
    request = site.request("jwt-secret")
    job_id = site.enqueue(request)
    site.work()
    assert result_of(site, job_id) == "refused: locked"
    assert "Another rotation holds the lock" in posts(site)[0]["text"]
    assert site.runtime.recreated == []
    assert site.store.get(request.id).status is RequestStatus.FAILED


def test_a_typed_in_value_is_opened_on_the_worker_and_its_sealed_copy_deleted(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (site.directory / ".env").open("a") as env:
        env.write("SMTP_HOST=smtp.example.com\n")
    private, public = generate_keypair()
    (tmp_path / "worker.pem").write_bytes(private)
    monkeypatch.setenv("ROTATOR_WORKER_KEY", str(tmp_path / "worker.pem"))
    request = site.request("smtp", needs_value=True)
    value = "provider-issued-smtp-password-42"
    site.store.put_sealed(
        request.id, seal_values(public, {"SMTP_PASS": value}, request_id=request.id), 600
    )
    job_id = site.enqueue(request)
    site.work()
    assert result_of(site, job_id) == "finished"
    assert site.env()["SMTP_PASS"] == value
    assert site.store.get_sealed(request.id) is None
    assert all(value not in json.dumps(c.body) for c in site.slack.calls)


class BrokenRuntime(RecordingRuntime):
    """A service that fails on every recreate: forward and rollback both fail."""

    def recreate(self, project: Any, env: Any, services: Any) -> None:
        super().recreate(project, env, services)
        if "auth" in services:
            raise RuntimeFailure("service auth stayed unhealthy", service="auth")


def test_a_rotation_left_half_done_offers_recovery_and_the_button_finishes_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.deployment import Deployment

    broken = BrokenRuntime(Deployment.load(site.directory).compose)
    monkeypatch.setattr(jobs, "make_runtime", lambda deployment: broken)
    request = site.request("postgres-password")
    job_id = site.enqueue(request)
    site.work()

    assert result_of(site, job_id) == "needs_recovery"
    assert Journal(site.directory / ".rotator" / "journal.json").exists()
    message = next(p for p in posts(site) if "half-done" in json.dumps(p.get("blocks")))
    button = message["blocks"][-1]["elements"][0]
    assert (button["action_id"], button["value"]) == (RECOVER_ACTION, request.id)
    assert f"rotator recover --project {site.directory}" in json.dumps(message["blocks"])
    assert f"<@{ONCALL}>" in json.dumps(message["blocks"])
    assert site.store.get(request.id).status is RequestStatus.FAILED

    # The cause is fixed; the Recover button enqueues recover_rotation(request_id).
    monkeypatch.setattr(jobs, "make_runtime", lambda deployment: site.runtime)
    recover_id = site.enqueue(request, "workers.jobs.recover_rotation")
    site.work()
    assert result_of(site, recover_id) in ("finished", "rolled_back")
    assert not Journal(site.directory / ".rotator" / "journal.json").exists()
    assert site.store.get(request.id).status in (RequestStatus.FINISHED, RequestStatus.ROLLED_BACK)
    assert any(p["text"].startswith("*Recovering") for p in posts(site))


def test_a_notice_announces_the_downtime_and_a_cancelled_one_stays_silent(site: Site) -> None:
    request = site.request("jwt-secret")
    cancelled = site.request("postgres-password")
    site.store.transition(cancelled.id, RequestStatus.CANCELLED)
    for r in (request, cancelled):
        site.queue.enqueue("workers.jobs.send_notice", r.id, "before-1h")
    site.work()
    site.queue.enqueue("workers.jobs.send_notice", request.id, "before-1h")  # a retry
    site.work()
    notices = posts(site, ANNOUNCE)
    assert len(notices) == 1
    assert "Planned maintenance" in notices[0]["text"] and "JWT secret" in notices[0]["text"]
    assert [(h["event"], h["request_id"]) for h in site.hooks.bodies] == [("notice", request.id)]
