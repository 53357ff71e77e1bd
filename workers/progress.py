"""SlackThreadProgress: the engine's progress as ONE message in the request's thread.

The first event posts the message (`chat.postMessage`); every later event edits it
(`chat.update`), so a rotation's twenty steps do not flood the thread. Reporting must never
break a rotation: a Slack failure is logged (its type only) and dropped.

Events carry names, never values; every outgoing text still goes through
`core.redact.redact` with the deployment's secret values, as a belt-and-braces guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk import WebClient

from core.progress import CheckResult, Event, Note, StepFailed, StepFinished, StepStarted
from core.redact import redact

__all__ = ["SlackThreadProgress", "post_safely"]

log = logging.getLogger("rotator.worker")

MAX_TEXT = 3500
"""Slack refuses a section text over 3000 characters and truncates message texts at 40000;
the progress message keeps its newest lines within this many characters."""


class Redactor:
    """Secret values to take out of every text before it leaves the worker."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)


def post_safely(client: WebClient, redactor: Redactor, **kwargs: Any) -> str | None:
    """chat.postMessage with redacted text and block texts; the message ts, or None on failure."""
    try:
        response = client.chat_postMessage(**_redacted(redactor, kwargs))
        return str(response.get("ts") or "") or None
    except Exception as exc:
        log.warning("Slack post failed (%s); going on without it", type(exc).__name__)
        return None


def _redacted(redactor: Redactor, value: Any) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: _redacted(redactor, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(redactor, v) for v in value]
    return value


class SlackThreadProgress:
    """`core.progress.Progress` that keeps one message in a Slack thread up to date."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        *,
        title: str = "Rotation progress",
        redactor: Redactor | None = None,
        on_posted: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.title = title
        self.redact = redactor or Redactor()
        self.on_posted = on_posted
        self.lines: list[str] = []
        self.ts: str | None = None
        self._open: dict[str, int] = {}
        """Step name -> index of its "running" line, replaced when the step ends."""

    # -- the Progress protocol -------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            self._record(event)
            self._send()
        except Exception as exc:  # reporting never breaks a rotation
            log.warning(
                "progress report to Slack failed (%s); rotation goes on", type(exc).__name__
            )

    def finish(self, headline: str) -> None:
        """Put the outcome at the top of the message (done, rolled back, needs recovery)."""
        self.title = headline
        try:
            self._send()
        except Exception as exc:
            log.warning("progress report to Slack failed (%s)", type(exc).__name__)

    # -- internals -------------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        match event:
            case StepStarted(step, detail):
                self._open[step] = len(self.lines)
                self.lines.append(f":hourglass_flowing_sand: *{step}*" + _detail(detail))
            case StepFinished(step, detail, seconds):
                self._close(step, f":white_check_mark: *{step}*{_detail(detail)} ({seconds:.1f}s)")
            case StepFailed(step, detail):
                self._close(step, f":x: *{step}*{_detail(detail)}")
            case CheckResult(name, ok, evidence):
                mark = ":heavy_check_mark:" if ok else ":heavy_multiplication_x:"
                self.lines.append(f"      {mark} {name}: {evidence}")
            case Note(text):
                self.lines.append(f"      :information_source: {text}")

    def _close(self, step: str, line: str) -> None:
        index = self._open.pop(step, None)
        if index is None:
            self.lines.append(line)
        else:
            self.lines[index] = line

    def text(self) -> str:
        body = "\n".join(self.lines)
        if len(body) > MAX_TEXT:
            body = "…\n" + body[-MAX_TEXT:].split("\n", 1)[-1]
        return self.redact(f"*{self.title}*\n{body}".rstrip())

    def _send(self) -> None:
        text = self.text()
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if self.ts is None:
            response = self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks
            )
            self.ts = str(response["ts"])
            if self.on_posted is not None:
                self.on_posted(self.ts)
        else:
            self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blocks)


def _detail(detail: str) -> str:
    return f": {detail}" if detail else ""
