"""The bot as a security team and Slack's own rules want it: user text escaped, failures told
to the person, post first then store, scoped status, 429s waited out, every message within
Block Kit's limits (the stand-in refuses the rest), the App Home, the emergency policy, and
windows kept when the approval comes too late."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.blocks import APPROVE_ACTION, NEXT_WINDOW_ACTION, RUN_NOW_ACTION
from tests.bot.conftest import (
    APPROVER,
    APPROVER2,
    GROUP_MEMBER,
    ONCALL,
    REQUESTER,
    STRANGER,
    Bot,
    _status,
    wait_until,
)
from tests.slack_fake import BOT_TOKEN, SIGNING_SECRET
from workers.connection import make_slack_client
from workers.decisions import DecisionLog
from workers.store import RequestStatus

pytestmark = pytest.mark.redis

MakeBot = Callable[..., Bot]


def all_sent(bot: Bot) -> str:
    return json.dumps([c.body for c in bot.fake.calls])


def test_the_reason_is_escaped_so_it_cannot_ping_or_disguise_a_link(bot: Bot) -> None:
    reason = "<!channel> see <https://evil.example|the docs> & <@UBOSS>"
    request = bot.requested(f"anon-key at +2h {reason}")
    assert request.reason == reason  # stored as typed ...
    sent = all_sent(bot)
    # ... shown inert: no broadcast, no link, no mention reaches Slack.
    assert "<!channel>" not in sent and "<https://evil" not in sent and "<@UBOSS>" not in sent
    assert "&lt;!channel&gt; see &lt;https://evil.example|the docs&gt; &amp;" in sent


def test_a_missing_scope_in_a_lazy_listener_is_told_to_the_clicker(bot: Bot) -> None:
    bot.fake.fail("usergroups.users.list", "missing_scope", needed="usergroups:read")
    request = bot.requested("anon-key at +2h")
    assert bot.click(APPROVE_ACTION, request, GROUP_MEMBER) == 200
    told = bot.fake.wait_for("respond", 2)[-1].body
    assert told["response_type"] == "ephemeral" and "`usergroups:read`" in told["text"]
    assert "reinstall" in told["text"]
    assert bot.store.get(request.id).status is RequestStatus.REQUESTED


def test_a_failed_post_stores_nothing(bot: Bot) -> None:
    bot.fake.fail("chat.postMessage", "channel_not_found")
    assert bot.command("anon-key at +2h") == 200
    told = bot.fake.wait_for("respond")[0].body
    assert "channel_not_found" in told["text"] and "Nothing changed" in told["text"]
    assert [r for r in bot.store.list_requests() if r.deployment == bot.name] == []
    assert DecisionLog(bot.redis).pending(bot.name) == 0


def test_status_is_scoped_to_the_channels_deployments_and_their_people(bot: Bot) -> None:
    request = bot.requested("anon-key at +2h")
    bot.command("status", user=STRANGER, channel="C0ROTATE")
    assert "Only the requesters and approvers" in bot.fake.wait_for("respond", 2)[-1].body["text"]
    bot.command("status", user=APPROVER, channel="C0ELSEWHERE")
    assert (
        "No deployment has its requests in this channel"
        in (bot.fake.wait_for("respond", 3)[-1].body["text"])
    )
    bot.command("status", user=APPROVER, channel="C0ROTATE")
    listed = bot.fake.wait_for("respond", 4)[-1].body
    assert request.id in json.dumps(listed["blocks"])


def test_a_rate_limited_post_is_retried_after_retry_after(bot: Bot) -> None:
    bot.fake.rate_limit("chat.postMessage", times=1, retry_after_s=1)
    assert bot.command("anon-key at +2h") == 200
    posts = bot.fake.wait_for("chat.postMessage", 2)
    assert posts[1].at - posts[0].at >= 0.9  # Slack's Retry-After, waited out
    request_id = posts[1].body["blocks"][-1]["elements"][0]["value"]
    stored = wait_until(lambda: bot.store.find(request_id))
    assert stored.thread_ts and len(bot.fake.calls_to("chat.postMessage")) == 2


def test_the_stand_in_refuses_what_block_kit_refuses(bot: Bot) -> None:
    client = make_slack_client(BOT_TOKEN, bot.fake.url)
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0ROTATE", text="t", blocks=too_long)
    assert refused.value.response["error"] == "invalid_blocks"
    button = {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "action_id": "a"}
    with pytest.raises(SlackApiError):
        client.chat_postMessage(
            channel="C0ROTATE", text="t", blocks=[{"type": "actions", "elements": [button]}]
        )
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0ROTATE", text="t", blocks=[{"type": "divider"}] * 51)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "t" * 25}, "blocks": []}
    with pytest.raises(SlackApiError):
        client.views_open(trigger_id="x", view=modal)
    assert [e for _, e, _ in bot.fake.refused] == [
        "invalid_blocks",
        "invalid_blocks",
        "invalid_blocks",
        "invalid_arguments",
    ]
    bot.fake.refused.clear()  # expected here; every other test ends with none refused


def test_the_app_home_shows_an_approver_what_waits_for_them(bot: Bot) -> None:
    request = bot.requested("anon-key at +2h")
    payload = {
        "token": "legacy",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "event": {"type": "app_home_opened", "user": APPROVER, "channel": "D1", "tab": "home"},
    }
    body = json.dumps(payload)
    ts = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature or "",
    }
    assert bot.app.dispatch(BoltRequest(body=body, headers=headers)).status == 200
    view = bot.fake.wait_for("views.publish")[0].body
    assert view["user_id"] == APPROVER
    rendered = json.dumps(view["view"]["blocks"])
    assert request.id in rendered and APPROVE_ACTION in rendered and bot.name in rendered


def test_an_emergency_needs_the_incident_reference_the_deployment_asks_for(
    make_bot: MakeBot,
) -> None:
    bot = make_bot(incident_reference="INC-[0-9]+")
    bot.command("anon-key now leaked in CI logs")
    told = bot.fake.wait_for("respond")[0].body["text"]
    assert "need an incident reference" in told and "INC-1234" in told
    request = bot.requested("anon-key now INC-4711 leaked in CI logs")
    assert request.incident == "INC-4711" and request.emergency


def test_a_critical_secret_keeps_its_quorum_in_an_emergency(make_bot: MakeBot) -> None:
    bot = make_bot(break_glass=False)
    request = bot.requested("jwt-secret now leaked in CI logs")
    assert request.approvals_needed == 2
    bot.click(APPROVE_ACTION, request, ONCALL)
    wait_until(lambda: len(bot.store.get(request.id).approvals) == 1)
    assert bot.store.get(request.id).status is RequestStatus.REQUESTED
    bot.click(APPROVE_ACTION, request, APPROVER2)
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))


def test_an_approval_after_the_window_does_not_schedule_and_says_so(make_bot: MakeBot) -> None:
    bot = make_bot(lateness="1s")
    request = bot.requested("anon-key at +1s maintenance")
    wait_until(lambda: datetime.now(UTC) > request.window_start + timedelta(seconds=1.5), 6)
    bot.click(APPROVE_ACTION, request, APPROVER)
    missed = wait_until(lambda: _status(bot, request, RequestStatus.MISSED))
    assert "after the window closed" in missed.note
    called_off = request.notice_job_id(f"called-off-{int(missed.updated_at.timestamp())}")
    # Nothing scheduled; only the worker's "did not take place" notice is queued.
    wait_until(lambda: bot.queue.get_job_ids() == [called_off])
    assert bot.scheduled_job_ids() == []
    thread = [c.body for c in bot.fake.calls_to("chat.postMessage") if c.body.get("thread_ts")]
    said = next(m for m in thread if "missed its window" in m["text"])
    assert [e["action_id"] for e in said["blocks"][-1]["elements"]] == [
        NEXT_WINDOW_ACTION,
        RUN_NOW_ACTION,
    ]
    # Run now: not by the requester; by an approver, at once.
    bot.click(RUN_NOW_ACTION, missed, REQUESTER)
    assert "someone else" in bot.fake.wait_for("chat.postEphemeral")[-1].body["text"]
    bot.click(RUN_NOW_ACTION, missed, APPROVER)
    wait_until(lambda: _status(bot, request, RequestStatus.SCHEDULED))
    assert request.job_id in bot.queue.get_job_ids()
