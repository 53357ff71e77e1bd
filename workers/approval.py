"""The approval message: a request's plan, its approvals and its state, with the buttons that
state allows. The bot posts it; the bot and the worker redraw it at every change, so the
message always shows where the request stands (finished, rolled back, failed, cancelled,
expired, missed, ...). Names only, never values; user text escaped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from core.plan import Plan
from workers.report import downtime_text, escape
from workers.store import RequestStatus, RotationRequest

__all__ = [
    "APPROVE_ACTION",
    "BREAK_GLASS_ACTION",
    "NEXT_WINDOW_ACTION",
    "REJECT_ACTION",
    "RUN_NOW_ACTION",
    "approval_blocks",
    "approval_text",
    "decision_buttons",
    "format_when",
    "missed_buttons",
    "plan_blocks",
    "redraw",
]

log = logging.getLogger("rotator.slack")

APPROVE_ACTION = "rotator_approve"
REJECT_ACTION = "rotator_reject"
BREAK_GLASS_ACTION = "rotator_break_glass"
NEXT_WINDOW_ACTION = "rotator_next_window"
"""A missed request: ask for approval again, for the deployment's next window."""
RUN_NOW_ACTION = "rotator_run_now"
"""A missed request: run it now (only someone who may approve it)."""

Block = dict[str, Any]

_STATES = {
    RequestStatus.REQUESTED: ":hourglass: waiting for approval",
    RequestStatus.APPROVED: ":white_check_mark: approved",
    RequestStatus.SCHEDULED: ":calendar: scheduled",
    RequestStatus.RUNNING: ":arrows_counterclockwise: running",
    RequestStatus.FINISHED: ":white_check_mark: *finished*: rotated and verified",
    RequestStatus.ROLLED_BACK: ":leftwards_arrow_with_hook: *rolled back*: the old values are back",
    RequestStatus.FAILED: ":x: *failed*",
    RequestStatus.REJECTED: ":x: *rejected*",
    RequestStatus.CANCELLED: ":no_entry_sign: *cancelled*",
    RequestStatus.EXPIRED: ":hourglass_flowing_sand: *expired* unapproved",
    RequestStatus.MISSED: ":no_entry_sign: *missed its window*: not run",
}


def _section(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
    if block_id:
        block["block_id"] = block_id
    return block


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def format_when(when: datetime, zone: ZoneInfo) -> str:
    utc = when.astimezone(ZoneInfo("UTC")).strftime("%a %Y-%m-%d %H:%M UTC")
    local = when.astimezone(zone).strftime("%a %H:%M")
    return f"{utc} ({local} {zone.key})" if zone.key != "UTC" else utc


def _codes(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


def plan_blocks(plan: Plan, digest: str = "") -> list[Block]:
    """What changes: keys, restarts, logouts, downtime. Never values."""
    logout = "*Everyone is logged out.*" if plan.logs_out_users else "Nobody is logged out."
    lines = [
        f"*What changes:* {_codes(plan.env_keys)}",
        f"*Services restarting:* {_codes(plan.services)}",
        f"*Users:* {logout} {plan.impact}".rstrip(),
        f"*Downtime:* {downtime_text(plan.downtime_estimate_s)}",
    ]
    if plan.db_roles:
        lines.append(f"*Database roles:* {_codes(plan.db_roles)}")
    blocks: list[Block] = [_section("\n".join(lines))]
    notes = [f":warning: {n}"[:2000] for n in plan.notes[:9]]
    if digest:
        notes.append(f"Plan `{digest[:12]}`: the approval holds for this plan only.")
    if notes:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]}
        )
    return blocks


def approval_text(request: RotationRequest, plan: Plan) -> str:
    kind = "EMERGENCY rotation" if request.emergency else "Rotation"
    return (
        f"{kind} of {plan.title} on {request.deployment} requested by <@{request.requester}> "
        f"for {format_when(request.window_start, ZoneInfo('UTC'))} ({request.id}): "
        + _STATES[request.status].replace("*", "")
    )


def _status_lines(request: RotationRequest) -> str:
    got = ", ".join(f"<@{u}>" for u in request.approvals) or "none yet"
    lines = [f"*Approvals:* {got} ({len(request.approvals)}/{request.approvals_needed})"]
    status = f"*Status:* {_STATES[request.status]}"
    if request.decided_by and request.status in (RequestStatus.REJECTED, RequestStatus.CANCELLED):
        status += f" by <@{request.decided_by}>"
    if request.break_glass:
        status += " (break glass)"
    lines.append(status)
    if request.note:
        lines.append(f"_{escape(request.note)}_")
    return "\n".join(lines)


def approval_blocks(
    request: RotationRequest, plan: Plan, *, break_glass: bool = False
) -> list[Block]:
    """The approval request; the message becomes the rotation's thread."""
    zone = ZoneInfo(request.requester_tz)
    title = f"{':rotating_light: EMERGENCY ' if request.emergency else ''}Rotate {plan.title}"
    reason = f" — {escape(request.reason)}" if request.reason else ""
    head = [
        f"*Deployment:* `{request.deployment}`   *Secret:* `{request.secret}`   "
        f"*Request:* `{request.id}`",
        f"*Requested by:* <@{request.requester}>{reason}",
        f"*Window:* {'now' if request.emergency else format_when(request.window_start, zone)}",
    ]
    if request.incident:
        head.append(f"*Incident:* `{escape(request.incident)}`")
    blocks: list[Block] = [
        {"type": "header", "text": _plain(title[:150])},
        _section("\n".join(head)),
        *plan_blocks(plan, request.plan_digest),
        _section(_status_lines(request), block_id="status"),
    ]
    if request.status is RequestStatus.REQUESTED:
        blocks.append(decision_buttons(request, plan, break_glass=break_glass))
    elif request.status is RequestStatus.MISSED:
        blocks.append(missed_buttons(request))
    return blocks


def _button(text: str, action: str, value: str, style: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text),
        "action_id": action,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _confirm(title: str, text: str, confirm: str, style: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": _plain(title[:100]),
        "text": {"type": "mrkdwn", "text": text[:300]},
        "confirm": _plain(confirm[:30]),
        "deny": _plain("Cancel"),
    }
    if style:
        out["style"] = style
    return out


def decision_buttons(request: RotationRequest, plan: Plan, *, break_glass: bool) -> Block:
    """Approve / Reject (/ Break glass, for an emergency where it is on)."""
    approve = _button("Approve", APPROVE_ACTION, request.id, "primary")
    approve["confirm"] = _confirm(
        "Approve this rotation?",
        f"{plan.title} on {request.deployment}: {downtime_text(plan.downtime_estimate_s)} "
        "of downtime" + (", everyone logged out." if plan.logs_out_users else "."),
        "Approve",
    )
    buttons = [approve, _button("Reject", REJECT_ACTION, request.id, "danger")]
    if break_glass and request.emergency:
        glass = _button("Break glass", BREAK_GLASS_ACTION, request.id, "danger")
        glass["confirm"] = _confirm(
            "Break the glass?",
            "You approve your own emergency rotation. This is announced and audited.",
            "Break glass",
            "danger",
        )
        buttons.append(glass)
    return {"type": "actions", "block_id": "decision", "elements": buttons}


def missed_buttons(request: RotationRequest) -> Block:
    """Pick the next window / Run now, offered when a request missed its window."""
    run_now = _button("Run now", RUN_NOW_ACTION, request.id, "danger")
    run_now["confirm"] = _confirm(
        "Run the rotation now?",
        "It starts at once, outside the announced window. Only someone who may approve "
        "it can do this.",
        "Run now",
        "danger",
    )
    return {
        "type": "actions",
        "block_id": "missed",
        "elements": [_button("Pick the next window", NEXT_WINDOW_ACTION, request.id), run_now],
    }


def redraw(client: WebClient, request: RotationRequest, *, break_glass: bool = False) -> None:
    """Redraw the approval message with the request's current state. Never raises: the
    state is already stored; a Slack failure is logged."""
    if not request.thread_ts or not request.plan_json:
        return
    plan = Plan.from_json(json.loads(request.plan_json))
    try:
        client.chat_update(
            channel=request.channel,
            ts=request.thread_ts,
            text=approval_text(request, plan),
            blocks=approval_blocks(request, plan, break_glass=break_glass),
        )
    except Exception as exc:
        log.warning("could not redraw the approval message (%s)", type(exc).__name__)
