"""The Slack app end to end: signed requests in, Web API calls out to a local fake Slack,
requests in real Redis, jobs in real RQ queues."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rq.job import Job
from rq.registry import ScheduledJobRegistry

from bot.blocks import APPROVE_ACTION, BREAK_GLASS_ACTION, GIVEN_VALUE_VIEW, REJECT_ACTION
from tests.bot.conftest import (
    APPROVER,
    APPROVER2,
    ONCALL,
    REQUESTER,
    STRANGER,
    Bot,
    _status,
    _with_thread,
    wait_until,
)
from tests.slack_fake import (
    signed_request,
    slash_command_body,
    view_submission_body,
)
from workers.connection import SERIALIZER
from workers.sealed import open_values
from workers.store import RequestStatus


def test_a_bad_signature_is_refused_and_nothing_happens(bot: Bot) -> None:
    body = slash_command_body("anon-key at +2h", user=REQUESTER, response_url=bot.fake.response_url)
    response = bot.app.dispatch(signed_request(body, secret="not-the-secret"))
    assert response.status == 401
    time.sleep(0.2)
    assert [c.method for c in bot.fake.calls] == ["auth.test"]
    assert bot.scheduled_job_ids() == []


def test_a_slash_command_is_acked_and_the_approval_request_posted(bot: Bot) -> None:
    started = time.monotonic()
    assert bot.command("jwt-secret at +2h rotate after offboarding") == 200
    assert time.monotonic() - started < 3
    message = bot.fake.wait_for("chat.postMessage")[0].body
    assert message["channel"] == "C0ROTATE"
    assert "JWT secret" in message["text"]
    buttons = message["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons[:2]] == ["Approve", "Reject"]
    assert buttons[0]["confirm"]["confirm"]["text"] == "Approve"
    assert "confirm" not in buttons[1]
    rendered = json.dumps(message["blocks"])
    assert "`JWT_SECRET`" in rendered and "Everyone is logged out" in rendered
    assert "Europe/Berlin" in rendered  # the requester's zone beside UTC
    reply = bot.fake.wait_for("respond")[0].body
    assert reply["response_type"] == "ephemeral" and "posted in <#C0ROTATE>" in reply["text"]


def test_bad_input_gets_an_ephemeral_answer_saying_what_to_type(bot: Bot) -> None:
    assert bot.command("jwt-secret now") == 200
    reply = bot.fake.wait_for("respond")[0].body
    assert "Emergency rotations need a reason" in reply["text"]
    assert bot.fake.calls_to("chat.postMessage") == []


def test_the_requester_clicking_approve_is_refused_ephemerally(bot: Bot) -> None:
    request = bot.requested("anon-key at +2h")
    assert bot.click(APPROVE_ACTION, request, REQUESTER) == 200
    refusal = bot.fake.wait_for("chat.postEphemeral")[0].body
    assert refusal["user"] == REQUESTER
    assert "someone else must approve" in refusal["text"]
    assert bot.store.get(request.id).status is RequestStatus.REQUESTED
    assert bot.scheduled_job_ids() == []


def test_a_stranger_cannot_reject(bot: Bot) -> None:
    request = bot.requested("anon-key at +2h")
    bot.click(REJECT_ACTION, request, STRANGER)
    assert "not an approver" in bot.fake.wait_for("chat.postEphemeral")[0].body["text"]
    assert bot.store.get(request.id).status is RequestStatus.REQUESTED


def test_an_approval_schedules_the_rotation_and_its_notices_with_ids_only(bot: Bot) -> None:
    request = bot.requested("anon-key at +30h")
    bot.click(APPROVE_ACTION, request, APPROVER)
    scheduled = wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert set(bot.scheduled_job_ids()) == {
        f"rotate-{request.id}",
        f"notice-{request.id}-before-1d",
        f"notice-{request.id}-before-1h",
        f"notice-{request.id}-before-10m",
    }
    job = Job.fetch(f"rotate-{request.id}", connection=bot.redis, serializer=SERIALIZER)
    assert job.func_name == "workers.jobs.run_rotation"
    assert list(job.args) == [request.id]
    registry = ScheduledJobRegistry(queue=bot.queue)  # type: ignore[no-untyped-call]
    assert registry.get_scheduled_time(job) == request.window_start
    notice = Job.fetch(
        f"notice-{request.id}-before-1h", connection=bot.redis, serializer=SERIALIZER
    )
    assert list(notice.args) == [request.id, "before-1h"]
    assert scheduled.approvals == (APPROVER,)


def test_double_clicks_and_racing_approvers_enqueue_once(bot: Bot) -> None:
    request = bot.requested("anon-key at +2h")
    clicks = [
        threading.Thread(target=bot.click, args=(APPROVE_ACTION, request, user))
        for user in (APPROVER, APPROVER, APPROVER2, APPROVER2)
    ]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    time.sleep(0.3)
    rotations = [j for j in bot.scheduled_job_ids() if j.startswith("rotate-")]
    assert rotations == [f"rotate-{request.id}"]
    assert len(bot.store.get(request.id).approvals) == 1


def test_a_critical_secret_needs_two_approvers(bot: Bot) -> None:
    request = bot.requested("jwt-secret at +2h")
    bot.click(APPROVE_ACTION, request, APPROVER)
    wait_until(lambda: len(bot.store.get(request.id).approvals) == 1)
    assert bot.store.get(request.id).status is RequestStatus.REQUESTED
    assert bot.scheduled_job_ids() == []
    bot.click(APPROVE_ACTION, request, APPROVER2)
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert f"rotate-{request.id}" in bot.scheduled_job_ids()


def test_cancel_removes_the_rotation_and_its_notices(bot: Bot) -> None:
    request = bot.requested("anon-key at +30h")
    bot.click(APPROVE_ACTION, request, APPROVER)
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert len(bot.scheduled_job_ids()) == 4
    bot.command(f"cancel {request.id}")
    # The reply comes after the jobs are removed (the status changes before): wait for it.
    assert "Cancelled" in bot.fake.wait_for("respond", 2)[-1].body["text"]
    assert _status(bot, request, RequestStatus.CANCELLED)
    assert bot.scheduled_job_ids() == []


def test_a_slack_retry_with_the_same_trigger_is_dropped(bot: Bot) -> None:
    trigger = f"trig-{bot.name}"
    bot.command("anon-key at +2h", trigger_id=trigger)
    bot.command("anon-key at +2h", trigger_id=trigger)
    bot.fake.wait_for("chat.postMessage")
    time.sleep(0.3)
    assert len(bot.fake.calls_to("chat.postMessage")) == 1


def test_a_given_secret_is_typed_into_a_modal_and_stored_only_sealed(
    bot: Bot, keypair: tuple[bytes, Path]
) -> None:
    bot.command("smtp at +2h new provider")
    view = bot.fake.wait_for("views.open")[0].body["view"]
    assert view["callback_id"] == GIVEN_VALUE_VIEW
    assert view["blocks"][0]["block_id"] == "given_SMTP_PASS"
    assert bot.fake.calls_to("chat.postMessage") == []  # the request waits for the value
    value = "s3cr3t-smtp-value-xyz"
    state = {"given_SMTP_PASS": {"value": {"type": "plain_text_input", "value": value}}}
    body = view_submission_body(
        GIVEN_VALUE_VIEW, state, user=REQUESTER, private_metadata=view["private_metadata"]
    )
    assert bot.app.dispatch(signed_request(body)).status == 200
    posted = bot.fake.wait_for("chat.postMessage")[0].body
    request_id = posted["blocks"][-1]["elements"][0]["value"]
    blob = wait_until(lambda: bot.store.get_sealed(request_id))
    assert open_values(keypair[0], blob, request_id=request_id) == {"SMTP_PASS": value}
    for key in bot.redis.scan_iter(match=f"*{request_id}*"):
        dump = bot.redis.dump(key) or b""
        assert value.encode() not in dump
    assert all(value not in json.dumps(c.body) for c in bot.fake.calls if c.method != "views.open")


def test_an_empty_given_value_is_refused_in_the_modal(bot: Bot) -> None:
    state = {"given_SMTP_PASS": {"value": {"type": "plain_text_input", "value": " "}}}
    meta = json.dumps({"secret": "smtp", "deployment": bot.name})
    body = view_submission_body(GIVEN_VALUE_VIEW, state, user=REQUESTER, private_metadata=meta)
    response = bot.app.dispatch(signed_request(body))
    assert response.status == 200
    assert json.loads(response.body)["errors"] == {"given_SMTP_PASS": "Type the new value."}


def test_an_emergency_approved_by_oncall_runs_at_once_and_break_glass_is_loud(bot: Bot) -> None:
    request = bot.requested("anon-key now leaked in CI logs")
    bot.click(APPROVE_ACTION, request, ONCALL)
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert bot.queue.get_job_ids() == [f"rotate-{request.id}", f"notice-{request.id}-before-0s"]
    assert bot.scheduled_job_ids() == []


def test_break_glass_self_approval_is_announced(bot: Bot) -> None:
    assert bot.command("anon-key now leaked in CI logs", user=ONCALL) == 200
    posted = bot.fake.wait_for("chat.postMessage")[0].body
    buttons = posted["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Approve", "Reject", "Break glass"]
    request = wait_until(lambda: _with_thread(bot.store.find(buttons[0]["value"])))
    bot.click(BREAK_GLASS_ACTION, request, ONCALL)
    done = wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert done.break_glass
    loud = [
        c.body for c in bot.fake.calls_to("chat.postMessage") if "BREAK GLASS" in c.body["text"]
    ]
    assert {m["channel"] for m in loud} == {"C0ROTATE", "C0ANNOUNCE"}
