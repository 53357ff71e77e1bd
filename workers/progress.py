"""SlackThreadProgress: the engine's progress as ONE message in the request's thread.

The first event posts the message (`chat.postMessage`); later events edit it
(`chat.update`), at most once every `MIN_UPDATE_INTERVAL_S` (events in between are
coalesced into the next edit), so a rotation's twenty steps neither flood the thread nor
hit Slack's rate limits. The lines go into as many section blocks as Slack's 3,000
characters per section need; past `BODY_BUDGET` characters the oldest lines are summarised
("… 12 earlier lines"), so no edit breaks a Block Kit limit. Reporting must never break a
rotation: a Slack failure is logged (its type only) and dropped.

Events carry names, never values; every outgoing text still goes through
`core.redact.redact` with the deployment's secret values, as a belt-and-braces guard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from slack_sdk import WebClient

from core.progress import CheckResult, Event, Note, StepFailed, StepFinished, StepStarted
from core.redact import redact

__all__ = ["SlackThreadProgress", "post_safely"]

log = logging.getLogger("rotator.worker")

MIN_UPDATE_INTERVAL_S = 1.0
SECTION_LIMIT = 2900
"""Slack refuses a section text over 3,000 characters."""
BODY_BUDGET = 9000
"""All sections together: Slack refuses messages whose blocks hold much more than ~13,000
characters (`msg_blocks_too_long`), below its documented 50 blocks."""
FALLBACK_LIMIT = 3000


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
        min_interval_s: float = MIN_UPDATE_INTERVAL_S,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.title = title
        self.redact = redactor or Redactor()
        self.on_posted = on_posted
        self.min_interval_s = min_interval_s
        self.lines: list[str] = []
        self.ts: str | None = None
        self._open: dict[str, int] = {}
        """Step name -> index of its "running" line, replaced when the step ends."""
        self._lock = threading.RLock()
        self._sent_at = 0.0
        self._timer: threading.Timer | None = None

    # -- the Progress protocol -------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            with self._lock:
                self._record(event)
                self._send_soon()
        except Exception as exc:  # reporting never breaks a rotation
            log.warning(
                "progress report to Slack failed (%s); rotation goes on", type(exc).__name__
            )

    def finish(self, headline: str) -> None:
        """Put the outcome at the top of the message (done, rolled back, needs recovery)."""
        with self._lock:
            self.title = headline
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            wait = self._sent_at + self.min_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with self._lock:
            try:
                self._flush()
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

    def _send_soon(self) -> None:
        """Send now if the last edit is old enough, else once it is (one timer at a time)."""
        wait = self._sent_at + self.min_interval_s - time.monotonic()
        if self.ts is None or wait <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self._flush()
            except Exception as exc:
                log.warning("progress report to Slack failed (%s)", type(exc).__name__)

    def blocks(self) -> list[dict[str, Any]]:
        """The message: the title, then the lines in sections within Slack's limits, the
        oldest summarised when they would not fit."""
        lines = [line[:SECTION_LIMIT] for line in self.lines]
        kept: list[str] = []
        used = 0
        for line in reversed(lines):
            if used + len(line) + 1 > BODY_BUDGET:
                break
            kept.insert(0, line)
            used += len(line) + 1
        out: list[dict[str, Any]] = [_section(f"*{self.title}*")]
        if len(kept) < len(lines):
            omitted = len(lines) - len(kept)
            note = f"… {omitted} earlier line(s) not shown"
            out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        chunk = ""
        for line in kept:
            if chunk and len(chunk) + len(line) + 1 > SECTION_LIMIT:
                out.append(_section(chunk))
                chunk = ""
            chunk = f"{chunk}\n{line}" if chunk else line
        if chunk:
            out.append(_section(chunk))
        return [self._redacted_block(b) for b in out]

    def text(self) -> str:
        """The notification fallback: the title and the newest lines."""
        body = "\n".join(self.lines)
        if len(body) > FALLBACK_LIMIT:
            body = "…\n" + body[-FALLBACK_LIMIT:].split("\n", 1)[-1]
        return self.redact(f"*{self.title}*\n{body}".rstrip())

    def _redacted_block(self, block: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], _redacted(self.redact, block))

    def _flush(self) -> None:
        text, blocks = self.text(), self.blocks()
        self._sent_at = time.monotonic()
        if self.ts is None:
            response = self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks
            )
            self.ts = str(response["ts"])
            if self.on_posted is not None:
                self.on_posted(self.ts)
        else:
            self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blocks)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _detail(detail: str) -> str:
    return f": {detail}" if detail else ""
