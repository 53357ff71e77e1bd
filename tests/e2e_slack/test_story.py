"""The whole story on real containers, run by the project's own docker-compose.yml: Alice
asks in Slack for the Dashboard password to be rotated in 20 seconds; her own approval is
refused; Bob approves; users are warned; at the window the worker rotates it on the testbed
and reports in the thread; the gateway takes the new password only. No value ever reaches
Slack, Redis or a log line; Redis wants a password and holds no pickled job.

Then the gaps: a cancellation after the notices went out is announced; the thread's Recover
button works for on-call only; an approval that comes after the window, and a window the
worker was down for, do not rotate and say so. See conftest.py for the stack.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError
from rq.job import Job

from bot.blocks import APPROVE_ACTION, NEXT_WINDOW_ACTION, RUN_NOW_ACTION
from core.audit import AuditLog
from core.service import plan_rotation
from tests.e2e_slack.conftest import (
    ALICE,
    ALICE_TZ,
    ANNOUNCE,
    BOB,
    CAROL,
    CHANNEL,
    MALLORY,
    WEBHOOK_SECRET,
    Stack,
    wait_for,
)
from tests.leaks import dump_redis
from workers.decisions import DecisionLog
from workers.report import RECOVER_ACTION
from workers.store import RequestStatus, RotationRequest
from workers.webhooks import signature

pytestmark = [pytest.mark.docker, pytest.mark.redis]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def aware(when: datetime | None) -> datetime:
    assert when is not None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def approval_posted(
    stack: Stack, text: str, user: str = ALICE
) -> tuple[RotationRequest, dict[str, Any]]:
    """Send `/rotate text` as `user`: the request once its approval message is posted, and
    that message."""
    seen = len(stack.slack.calls)
    started = time.monotonic()
    assert stack.command(text, user) == 200
    assert time.monotonic() - started < 3, "Slack wants the ack within 3 s"
    deployment = text.split()[1]
    message = stack.wait_call(
        "chat.postMessage",
        lambda c: (
            stack.slack.calls.index(c) >= seen
            and f"`{deployment}`" in json.dumps(c.body.get("blocks"))
        ),
        10,
        "the approval message",
        channel=CHANNEL,
    ).body
    request_id = message["blocks"][-1]["elements"][0]["value"]

    def stored() -> RotationRequest | None:
        request = stack.store.get(request_id)
        return request if request.thread_ts else None

    return wait_for(stored, 5, "the thread to be stored"), message


def status_is(stack: Stack, request: RotationRequest, status: RequestStatus) -> bool:
    return stack.store.get(request.id).status is status


def test_the_story_request_approval_notices_window_rotation_report(stack: Stack) -> None:
    tb, story = stack.testbed, stack.story
    env_before = tb.env()
    user, old = env_before["DASHBOARD_USERNAME"], env_before["DASHBOARD_PASSWORD"]
    assert tb.http("GET", "/", basic(user, old)).status == 200

    # 1. Alice asks; the bot acks at once and posts the approval request in the channel.
    request, message = approval_posted(
        stack, f"dashboard-password {story} at +20s rotating after audit"
    )
    assert (request.requester, request.requester_tz, request.reason) == (
        ALICE,
        ALICE_TZ,
        "rotating after audit",
    )
    assert timedelta(seconds=15) < request.window_start - datetime.now(UTC) < timedelta(seconds=21)
    rendered = json.dumps(message["blocks"])
    assert "`DASHBOARD_PASSWORD`" in rendered and "api-gw" in rendered  # the plan
    assert "sign in again" in rendered  # who notices
    assert " UTC" in rendered and ALICE_TZ in rendered  # the window, both ways
    buttons = message["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Approve", "Reject"]
    assert buttons[0]["confirm"]["confirm"]["text"] == "Approve"  # Approve asks first
    reply = stack.wait_call("respond", lambda c: request.id in c.body["text"], 5, "the reply")
    assert reply.body["response_type"] == "ephemeral"

    # 2. Alice approves her own request: refused, to her only; nothing scheduled.
    assert stack.click(APPROVE_ACTION, request, ALICE) == 200
    refusal = stack.wait_call(
        "chat.postEphemeral", lambda c: c.body["user"] == ALICE, 5, "the refusal"
    )
    assert "someone else must approve" in refusal.body["text"]
    time.sleep(0.3)
    assert status_is(stack, request, RequestStatus.REQUESTED)
    assert stack.scheduled(story).get_job_ids() == []

    # 3. Bob confirms and approves: the rotation waits for the window, the notice for 10 s before.
    assert stack.click(APPROVE_ACTION, request, BOB) == 200
    wait_for(lambda: status_is(stack, request, RequestStatus.SCHEDULED), 5, "scheduling")
    registry = stack.scheduled(story)
    expected = {request.job_id, f"notice-{request.id}-before-10s"}  # 1h is too late to warn
    wait_for(lambda: set(registry.get_job_ids()) == expected, 5, "the jobs to be scheduled")
    rotate = stack.job(request.job_id)
    notice = stack.job(f"notice-{request.id}-before-10s")
    assert (rotate.func_name, rotate.args) == ("workers.jobs.run_rotation", [request.id])
    assert notice.args == [request.id, "before-10s"]
    at = registry.get_scheduled_time(rotate)
    assert request.window_start <= at < request.window_start + timedelta(seconds=1)
    # The thread hears of it right after the jobs are scheduled (same listener, later).
    wait_for(
        lambda: any(
            m["text"].startswith(":calendar: Scheduled for") for m in stack.thread(request)
        ),
        5,
        "the thread to say when",
    )
    assert any(f"Approved by <@{BOB}>" in m["text"] for m in stack.thread(request))

    # The notice goes out before the window; nothing has changed yet.
    warned = stack.wait_call(
        "chat.postMessage",
        lambda c: "Planned maintenance" in c.body["text"] and story in c.body["text"],
        25,
        "the notice",
        channel=ANNOUNCE,
    )
    assert datetime.now(UTC) < request.window_start
    # The lead time is the real one, computed as the notice goes out.
    lead = re.search(r" in (\d+) s ", warned.body["text"])
    assert lead is not None and 5 <= int(lead.group(1)) <= 10, warned.body["text"]
    assert "Dashboard" in warned.body["text"]
    assert tb.env()["DASHBOARD_PASSWORD"] == old
    assert not any(m["text"].startswith("*Rotating") for m in stack.thread(request))

    # 4. At the window the worker rotates and reports in the thread.
    done = stack.wait_call(
        "chat.postMessage",
        lambda c: "finished and verified" in c.body["text"] and request.id in c.body["text"],
        60,
        "the rotation to finish",
        channel=CHANNEL,
    )
    rotate = stack.job(request.job_id)
    assert aware(rotate.started_at) >= request.window_start  # not a moment early
    assert wait_for(rotate.return_value, 15, "the job's result") == "finished"
    assert done.body.get("reply_broadcast") in (True, "1", "true", "True")
    texts = [m["text"] for m in stack.thread(request)]
    progress = [t for t in texts if t.startswith("*Rotating `dashboard-password`")]
    assert len(progress) == 1  # one message, updated per step
    progress_ts = stack.store.get(request.id).progress_ts
    updates = [c.body["text"] for c in stack.calls("chat.update", ts=progress_ts)]
    assert len(updates) >= 1  # coalesced: at most one edit a second
    final = updates[-1]
    assert final.startswith("*:white_check_mark: `dashboard-password` rotated")
    for step in ("preflight", "backup", "stage", "apply", "commit", "restart", "verify"):
        assert f":white_check_mark: *{step}*" in final
    assert "restart*: recreated and ready: api-gw" in final
    after = texts[texts.index(progress[0]) + 1 :]
    assert after[0].startswith("Verification") and after[1] == "Security checklist"
    assert "finished and verified" in after[2] and len(after) == 3
    blocks = {m["text"]: json.dumps(m.get("blocks")) for m in stack.thread(request)}
    assert (
        "dashboard login with the new value*: GET /api/platform/profile -> HTTP 200"
        in blocks[after[0]]
    )
    assert (
        "dashboard login with the old value refused*: GET /api/platform/profile -> HTTP 401"
        in blocks[after[0]]
    )
    checklist = blocks["Security checklist"]
    assert ":ballot_box_with_check:" in checklist and "evidence:" in checklist
    assert "*To do:* Share the new Dashboard password" in checklist
    assert status_is(stack, request, RequestStatus.FINISHED)
    announced = [c.body["text"] for c in stack.calls("chat.postMessage", channel=ANNOUNCE)]
    mine = [t for t in announced if story in t]
    assert len(mine) == 2 and "is done" in mine[1]

    def hooks() -> list[str] | None:
        found = [h["event"] for h in stack.hooks.bodies if h["request_id"] == request.id]
        return found if len(found) >= 2 else None

    assert wait_for(hooks, 5, "the webhooks") == ["notice", "finished"]

    # 5. The gateway takes the new password only; .env changed in that key only; audited.
    env_after = tb.env()
    new = env_after["DASHBOARD_PASSWORD"]
    assert new != old and len(new) >= 16
    assert tb.http("GET", "/", basic(user, old)).status == 401
    assert tb.http("GET", "/", basic(user, new)).status == 200
    assert env_after.keys() == env_before.keys()
    assert {k for k in env_after if env_after[k] != env_before[k]} == {"DASHBOARD_PASSWORD"}
    audit = AuditLog(tb.directory / ".rotator" / "audit.log")

    def decisions() -> list[str] | None:
        found = [r.action for r in audit.records() if r.rotation_id == request.id]
        return found if "schedule" in found else None

    # The Slack-side decisions are in the same hash-chained log as the engine's record.
    wait_for(decisions, 15, "the decisions to reach the audit log")
    records = [r for r in audit.records() if r.rotation_id == request.id]
    slack_side = [(r.action, r.actor) for r in records if r.action != "rotate"]
    assert slack_side[:3] == [
        ("request", f"slack:{ALICE}"),
        ("approve", f"slack:{BOB}"),
        ("schedule", f"slack:{BOB}"),
    ]
    runs = [r for r in records if r.action == "rotate"]
    assert [(r.secret, r.result) for r in runs] == [("dashboard-password", "finished")]
    assert ALICE in runs[0].actor and BOB in runs[0].actor
    assert audit.verify_chain() is None
    # Its head is anchored outside the host, in Redis (the worker moves it within seconds).
    log_path = tb.directory / ".rotator" / "audit.log"

    def anchored() -> bool:
        head = DecisionLog(stack.redis).head(story)
        last = json.loads(log_path.read_text().splitlines()[-1])["hash"]
        return head is not None and head["hash"] == last

    wait_for(anchored, 15, "the audit log's head to be anchored in Redis")
    # `rotator history --json` exports them, Slack's decisions with the engine's record.
    history = subprocess.run(
        [sys.executable, "-m", "bot.cli", "history", "--json", "--project", str(tb.directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    exported = json.loads(history.stdout)
    mine = [r["action"] for r in exported["records"] if r["rotation_id"] == request.id]
    assert {"request", "approve", "schedule", "rotate"} <= set(mine)
    assert exported["broken_at"] is None
    # The approval message was redrawn with the final state, its buttons gone.
    redrawn = stack.calls("chat.update", ts=request.thread_ts)[-1].body
    assert "*finished*" in json.dumps(redrawn["blocks"])
    assert all(b["type"] != "actions" for b in redrawn["blocks"])
    assert not (tb.directory / ".rotator" / "journal.json").exists()

    # The leak check: neither value anywhere Slack, Redis, a webhook or a log line could keep.
    output = stack.output()
    assert f"run_rotation('{request.id}')" in output  # the worker's log is really here
    calls = enumerate(stack.slack.calls)
    haystacks = {f"slack {c.method} #{i}": json.dumps(c.__dict__) for i, c in calls}
    haystacks |= {f"webhook #{i}": json.dumps(h) for i, h in enumerate(stack.hooks.bodies)}
    haystacks |= dump_redis(stack.redis)
    haystacks["bot and worker output"] = output
    haystacks["audit log"] = (tb.directory / ".rotator" / "audit.log").read_text()
    assert any(request.id in text for name, text in haystacks.items() if name.startswith("redis"))
    leaks = [name for name, text in haystacks.items() if old in text or new in text]
    assert leaks == []


def test_cancelling_after_the_notices_went_out_tells_users_and_removes_the_jobs(
    stack: Stack,
) -> None:
    other = stack.other
    env_before = stack.testbed.env()
    request, _ = approval_posted(stack, f"dashboard-password {other} at +90m quarterly")
    assert stack.click(APPROVE_ACTION, request, BOB) == 200
    wait_for(lambda: status_is(stack, request, RequestStatus.SCHEDULED), 5, "scheduling")
    # The window is nearer than every lead time (2h): the notice goes out at once.
    stack.wait_call(
        "chat.postMessage",
        lambda c: "Planned maintenance" in c.body["text"] and other in c.body["text"],
        15,
        "the notice",
        channel=ANNOUNCE,
    )
    wait_for(lambda: stack.scheduled(other).get_job_ids() == [request.job_id], 5, "scheduling")

    assert stack.command(f"cancel {request.id}", ALICE) == 200
    stack.wait_call(
        "chat.postMessage",
        lambda c: "did not take place" in c.body["text"] and other in c.body["text"],
        15,
        "the cancellation notice",
        channel=ANNOUNCE,
    )
    assert status_is(stack, request, RequestStatus.CANCELLED)
    assert stack.scheduled(other).get_job_ids() == []
    assert Job.exists(request.job_id, connection=stack.redis) is False

    def events() -> list[str] | None:
        found = [h["event"] for h in stack.hooks.bodies if h["request_id"] == request.id]
        return found if len(found) == 2 else None

    assert wait_for(events, 5, "the webhooks") == ["notice", "called_off"]
    cancelled = [m["text"] for m in stack.thread(request) if "Cancelled by" in m["text"]]
    assert len(cancelled) == 1 and f"<#{ANNOUNCE}>" in cancelled[0]
    assert stack.testbed.env() == env_before


def failed_request(stack: Stack) -> RotationRequest:
    """A request of `other` whose rotation failed (as the worker leaves one), with a thread."""
    store, now = stack.store, datetime.now(UTC)
    plan = plan_rotation(stack.testbed.directory, "dashboard-password")
    created = store.create(
        RotationRequest(
            id="",
            deployment=stack.other,
            secret="dashboard-password",
            requester=ALICE,
            reason="test",
            window_start=now,
            created_at=now,
            expires_at=now + timedelta(hours=1),
            plan_json=json.dumps(plan.to_json()),
        )
    )
    store.transition(created.id, RequestStatus.APPROVED, approvals=(BOB,))
    ts = f"{int(now.timestamp())}.{created.id[2:]}"
    store.transition(created.id, RequestStatus.SCHEDULED, channel=CHANNEL, thread_ts=ts)
    store.transition(created.id, RequestStatus.RUNNING)
    return store.transition(created.id, RequestStatus.FAILED)


def test_the_recover_button_works_for_oncall_only(stack: Stack) -> None:
    request = failed_request(stack)
    assert stack.click(RECOVER_ACTION, request, MALLORY) == 200
    refusal = stack.wait_call(
        "chat.postEphemeral", lambda c: c.body["user"] == MALLORY, 5, "the refusal"
    )
    assert "Only on-call or an approver" in refusal.body["text"]
    time.sleep(0.5)
    assert status_is(stack, request, RequestStatus.FAILED)
    assert stack.thread(request) == []

    assert stack.click(RECOVER_ACTION, request, CAROL) == 200

    # The worker really runs recover_rotation: no journal is open, so there is nothing to do.
    def reported() -> list[str] | None:
        texts = [m["text"] for m in stack.thread(request)]
        return texts if any("no rotation is open" in t for t in texts) else None

    texts = wait_for(reported, 30, "the recovery to report")
    assert texts[0] == f":wrench: <@{CAROL}> started recovery; progress follows."
    assert "Recovering `dashboard-password` did not go ahead" in texts[1]
    assert f"<@{CAROL}>" in texts[-1]  # on call is told
    registry = stack.queue(stack.other).finished_job_registry

    def finished() -> list[str]:
        return [j for j in registry.get_job_ids() if j.startswith(f"recover-{request.id}-")]

    jobs = wait_for(finished, 10, "the recovery job to be done")
    assert len(jobs) == 1
    job = stack.job(jobs[0])
    assert (job.func_name, job.args) == ("workers.jobs.recover_rotation", [request.id])
    wait_for(lambda: status_is(stack, request, RequestStatus.FAILED), 5, "the request to settle")
    assert not any(c.body["user"] == CAROL for c in stack.calls("chat.postEphemeral"))


def test_an_emergency_approved_by_oncall_runs_at_once(stack: Stack) -> None:
    """`now`: scheduled and enqueued in one go; the worker must find it `scheduled`."""
    tb, other = stack.testbed, stack.other
    tb.wait_healthy(timeout=60)  # the gateway was recreated by the story a moment ago
    user, old = tb.env()["DASHBOARD_USERNAME"], tb.env()["DASHBOARD_PASSWORD"]
    request, _ = approval_posted(
        stack, f"dashboard-password {other} now password shown in a screen share"
    )
    assert request.emergency
    assert stack.click(APPROVE_ACTION, request, CAROL) == 200
    ended = {RequestStatus.FINISHED, RequestStatus.ROLLED_BACK, RequestStatus.FAILED}
    wait_for(lambda: stack.store.get(request.id).status in ended, 60, "the rotation to end")
    texts = [m["text"] for m in stack.thread(request)]
    assert status_is(stack, request, RequestStatus.FINISHED), texts
    assert texts[0].startswith(f":white_check_mark: Approved by <@{CAROL}>")
    # The worker may start before the bot has said "scheduled for now" in the thread.
    assert {t.split(" ")[0] for t in texts[1:3]} == {":calendar:", "*Rotating"}
    assert [t.split(":")[0] for t in texts[3:5]] == ["Verification", "Security checklist"]
    announced = [c.body["text"] for c in stack.calls("chat.postMessage", channel=ANNOUNCE)]
    mine = [t for t in announced if f"*{other}*" in t or f"on {other}*" in t]
    assert "shortly" in mine[-2] and "is done" in mine[-1]  # warned first, even if at once

    def hooks() -> list[str] | None:
        found = [h["event"] for h in stack.hooks.bodies if h["request_id"] == request.id]
        return found if len(found) >= 2 else None

    assert wait_for(hooks, 5, "the webhooks") == ["notice", "finished"]
    new = tb.env()["DASHBOARD_PASSWORD"]
    assert new != old
    assert tb.http("GET", "/", basic(user, old)).status == 401
    assert tb.http("GET", "/", basic(user, new)).status == 200


def test_redis_wants_a_password_and_holds_no_pickled_job(stack: Stack) -> None:
    anonymous = Redis(host="127.0.0.1", port=stack.redis.connection_pool.connection_kwargs["port"])
    with pytest.raises(AuthenticationError):
        anonymous.ping()
    anonymous.close()
    jobs = [key for key in stack.redis.scan_iter(match="rq:job:*")]
    assert jobs, "no job in Redis: the check would prove nothing"
    for key in jobs:
        data = stack.redis.hget(key, "data")
        if data is None:
            continue
        payload = zlib.decompress(data)
        assert not payload.startswith(b"\x80"), f"{key!r} holds a pickle"
        func, instance, args, kwargs = json.loads(payload)
        assert func.startswith("workers.jobs.") and (instance, kwargs) == (None, {})
        assert all(isinstance(a, str) for a in args)
    # Webhooks were signed with the deployment's secret (HMAC-SHA256 over timestamp.body).
    assert stack.hooks.received
    for headers, raw in stack.hooks.received:
        expected = signature(WEBHOOK_SECRET, headers["x-rotator-timestamp"], raw)
        assert hmac.compare_digest(headers["x-rotator-signature"], expected)


def test_an_approval_after_the_window_does_not_rotate_and_says_so(stack: Stack) -> None:
    late, env_before = stack.late, stack.testbed.env()
    request, _ = approval_posted(stack, f"dashboard-password {late} at +5s quarterly")
    # The window opens in 5 s and may start at most 3 s late: approve after it closed.
    wait_for(lambda: datetime.now(UTC) > request.window_start + timedelta(seconds=4), 15, "close")
    assert stack.click(APPROVE_ACTION, request, BOB) == 200
    missed = stack.wait_call(
        "chat.postMessage",
        lambda c: "missed its window" in c.body["text"] and request.id in c.body["text"],
        15,
        "the thread to say it missed its window",
        channel=CHANNEL,
    ).body
    assert missed["thread_ts"] == request.thread_ts
    assert "after the window closed" in missed["text"] and "did *not* take place" in missed["text"]
    buttons = [b["action_id"] for b in missed["blocks"][-1]["elements"]]
    assert buttons == [NEXT_WINDOW_ACTION, RUN_NOW_ACTION]
    stack.wait_call(
        "chat.postMessage",
        lambda c: "did not take place" in c.body["text"] and late in c.body["text"],
        20,
        "the announcement that the maintenance did not take place",
        channel=ANNOUNCE,
    )
    assert status_is(stack, request, RequestStatus.MISSED)
    assert stack.scheduled(late).get_job_ids() == []
    redrawn = stack.calls("chat.update", ts=request.thread_ts)
    assert "missed its window" in json.dumps(redrawn[-1].body["blocks"])
    assert stack.testbed.env() == env_before
    # "Pick the next window" asks for approval again, for a later window.
    assert stack.click(NEXT_WINDOW_ACTION, request, ALICE) == 200
    wait_for(lambda: status_is(stack, request, RequestStatus.REQUESTED), 10, "a new request")
    assert stack.store.get(request.id).window_start > request.window_start
    assert stack.store.get(request.id).approvals == ()


def test_a_window_the_worker_missed_is_not_rotated_late_and_run_now_runs_it(
    stack: Stack,
) -> None:
    late, tb = stack.late, stack.testbed
    tb.wait_healthy(timeout=60)
    env_before = tb.env()
    request, _ = approval_posted(stack, f"dashboard-password {late} at +8s worker down test")
    stopped = stack.deployment.run("stop", "worker")
    assert stopped.returncode == 0, stopped.stderr
    try:
        assert stack.click(APPROVE_ACTION, request, BOB) == 200
        wait_for(lambda: status_is(stack, request, RequestStatus.SCHEDULED), 10, "scheduling")
        # The worker is down at the window and for longer than the lateness allows.
        wait_for(lambda: datetime.now(UTC) > request.window_start + timedelta(seconds=5), 20, "")
    finally:
        started = stack.deployment.run("start", "worker")
        assert started.returncode == 0, started.stderr
    stack.wait_call(
        "chat.postMessage",
        lambda c: "missed its window" in c.body["text"] and request.id in c.body["text"],
        60,
        "the worker to report the missed window",
        channel=CHANNEL,
    )
    stack.wait_call(
        "chat.postMessage",
        lambda c: "did not take place" in c.body["text"] and late in c.body["text"],
        30,
        "the announcement",
        channel=ANNOUNCE,
    )
    assert status_is(stack, request, RequestStatus.MISSED)
    assert tb.env() == env_before  # not rotated late
    # The requester may not run it now; an approver may.
    assert stack.click(RUN_NOW_ACTION, request, ALICE) == 200
    stack.wait_call("chat.postEphemeral", lambda c: c.body["user"] == ALICE, 10, "a refusal")
    assert status_is(stack, request, RequestStatus.MISSED)
    assert stack.click(RUN_NOW_ACTION, request, BOB) == 200
    ended = {RequestStatus.FINISHED, RequestStatus.ROLLED_BACK, RequestStatus.FAILED}
    wait_for(lambda: stack.store.get(request.id).status in ended, 90, "the rotation to end")
    assert status_is(stack, request, RequestStatus.FINISHED)
    assert tb.env()["DASHBOARD_PASSWORD"] != env_before["DASHBOARD_PASSWORD"]
