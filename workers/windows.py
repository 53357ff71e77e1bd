"""Windows kept: an approved rotation runs only inside [window start, start + lateness].

The worker checks the clock itself when a job starts (RQ only says the job is due, and a
worker that was down at 03:00 gets it whenever it comes back); the bot checks it when the
last approval arrives; the worker's upkeep checks scheduled requests whose window has
closed without their job starting. Whoever sees it first moves the request to `missed`
(atomically: one of them reports), and the report says in the thread what happened, that
the maintenance did not take place (in the announcement channel too), and offers to pick
the next window or, for whoever may approve, to run now.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from workers.approval import missed_buttons, redraw
from workers.config import DeploymentConfig
from workers.decisions import DecisionLog
from workers.progress import Redactor, post_safely
from workers.schedule import enqueue_called_off, unschedule
from workers.store import InvalidTransition, RequestStatus, RequestStore, RotationRequest

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["Window", "report_missed", "window_state"]


class Window(StrEnum):
    EARLY = "early"
    OPEN = "open"
    CLOSED = "closed"


def window_state(request: RotationRequest, dep: DeploymentConfig, now: datetime) -> Window:
    if now < request.window_start:
        return Window.EARLY
    if now <= request.window_start + dep.lateness:
        return Window.OPEN
    return Window.CLOSED


def closing_time(request: RotationRequest, dep: DeploymentConfig) -> str:
    return (request.window_start + dep.lateness).strftime("%Y-%m-%d %H:%M UTC")


def report_missed(
    redis: Redis,
    client: WebClient,
    dep: DeploymentConfig,
    request: RotationRequest,
    reason: str,
    *,
    keep_job: str = "",
) -> RotationRequest | None:
    """Move `request` to missed and say so; None when someone else already moved it."""
    store = RequestStore(redis)
    try:
        request = store.transition(request.id, RequestStatus.MISSED, note=reason)
    except InvalidTransition:
        return None
    unschedule(redis, [request.job_id, *request.job_ids], keep=keep_job)
    redraw(client, request, break_glass=dep.break_glass)
    text = (
        f":no_entry_sign: Request `{request.id}` missed its window: {reason}. "
        f"The maintenance did *not* take place; nothing was changed. Pick the next window to "
        "ask for approval again, or run it now (only someone who may approve it)."
    )
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        missed_buttons(request),
    ]
    post_safely(
        client,
        Redactor(),
        channel=request.channel,
        thread_ts=request.thread_ts,
        text=text,
        blocks=blocks,
        reply_broadcast=True,
    )
    DecisionLog(redis).record(
        dep.name,
        request_id=request.id,
        actor="rotator",
        action="miss",
        secret=request.secret,
        result="missed",
        detail=reason,
    )
    enqueue_called_off(redis, dep, request)
    return request
