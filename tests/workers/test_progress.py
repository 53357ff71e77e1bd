"""SlackThreadProgress: one message, updated; redacted; a Slack outage never raises."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from core.progress import CheckResult, Note, StepFinished, StepStarted
from tests.bot.conftest import fake_slack  # noqa: F401
from tests.slack_fake import BOT_TOKEN, FakeSlack
from workers.progress import Redactor, SlackThreadProgress


def test_steps_update_one_message_and_values_are_redacted(fake_slack: FakeSlack) -> None:  # noqa: F811
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
    assert len(updates) == 4 and {u.body["ts"] for u in updates} == set(posted)
    last = updates[-1].body["text"]
    assert last.startswith("*done*") and ":white_check_mark: *apply*" in last
    assert ":hourglass" not in last  # the running line was replaced, not appended to
    assert "hunter2-secret" not in last and "[REDACTED]" in last


def test_a_slack_outage_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    client = WebClient(token=BOT_TOKEN, base_url="http://127.0.0.1:9/api/", timeout=1)
    progress = SlackThreadProgress(client, "C0ROTATE", "17.1")
    progress.emit(StepStarted("apply"))
    progress.finish("done")
    assert "progress report to Slack failed" in caplog.text
    assert progress.ts is None
