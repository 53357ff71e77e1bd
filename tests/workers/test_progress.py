"""SlackThreadProgress: one message, updated at most once a second; within Block Kit's limits
however long it gets; redacted; a Slack outage never raises."""

from __future__ import annotations

import itertools
import time

import pytest
from slack_sdk import WebClient

from core.progress import CheckResult, Note, StepFinished, StepStarted
from tests.bot.conftest import fake_slack  # noqa: F401
from tests.slack_fake import BOT_TOKEN, FakeSlack
from workers.progress import Redactor, SlackThreadProgress


def test_steps_update_one_message_coalesced_and_values_are_redacted(
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    client = WebClient(token=BOT_TOKEN, base_url=fake_slack.url)
    posted: list[str] = []
    progress = SlackThreadProgress(
        client, "C0ROTATE", "17.1", redactor=Redactor(["hunter2-secret"]), on_posted=posted.append
    )
    progress.emit(StepStarted("apply", "ALTER ROLE for 12 roles"))
    progress.emit(StepFinished("apply", "ALTER ROLE for 12 roles", 0.4))
    progress.emit(CheckResult("services healthy", True, "7 of 7"))
    progress.emit(Note("a log said hunter2-secret"))
    progress.finish("done")
    assert [c.body["thread_ts"] for c in fake_slack.calls_to("chat.postMessage")] == ["17.1"]
    updates = fake_slack.calls_to("chat.update")
    # Four events and the end within a second: one post, then one coalesced edit.
    assert len(updates) == 1 and {u.body["ts"] for u in updates} == set(posted)
    last = updates[-1].body["text"]
    assert last.startswith("*done*") and ":white_check_mark: *apply*" in last
    assert ":hourglass" not in last  # the running line was replaced, not appended to
    assert "hunter2-secret" not in last and "[REDACTED]" in last


def test_edits_come_at_most_once_a_second(fake_slack: FakeSlack) -> None:  # noqa: F811
    client = WebClient(token=BOT_TOKEN, base_url=fake_slack.url)
    progress = SlackThreadProgress(client, "C0ROTATE", "17.1")
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        progress.emit(Note("tick"))
        time.sleep(0.05)
    progress.finish("done")
    stamps = [c.at for c in fake_slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert 3 <= len(stamps) <= 5
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.95


def test_a_long_rotation_stays_within_block_kit_limits(fake_slack: FakeSlack) -> None:  # noqa: F811
    client = WebClient(token=BOT_TOKEN, base_url=fake_slack.url)
    progress = SlackThreadProgress(client, "C0ROTATE", "17.1", min_interval_s=0)
    for i in range(400):
        progress.emit(CheckResult(f"check {i}", True, "x" * 120))
    progress.finish("done")
    assert fake_slack.refused == []  # the stand-in checks every message against Slack's limits
    last = fake_slack.calls_to("chat.update")[-1].body
    assert "earlier line(s) not shown" in str(last["blocks"]) and "check 399" in str(last["blocks"])


def test_a_slack_outage_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    client = WebClient(token=BOT_TOKEN, base_url="http://127.0.0.1:9/api/", timeout=1)
    progress = SlackThreadProgress(client, "C0ROTATE", "17.1")
    progress.emit(StepStarted("apply"))
    progress.finish("done")
    assert "progress report to Slack failed" in caplog.text
    assert progress.ts is None
