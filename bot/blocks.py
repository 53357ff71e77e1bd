"""Block Kit builders: pure functions from requests and plans to blocks. Names only, never values.

Every message is sent with a `text=` fallback; `*_text` functions build it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from core.plan import Plan
from workers.report import downtime_text
from workers.store import RequestStatus, RotationRequest

__all__ = [
    "APPROVE_ACTION",
    "BREAK_GLASS_ACTION",
    "GIVEN_VALUE_VIEW",
    "REJECT_ACTION",
    "approval_blocks",
    "approval_text",
    "format_when",
    "given_value_view",
    "help_blocks",
    "plan_blocks",
    "refusal_blocks",
    "status_blocks",
]

APPROVE_ACTION = "rotator_approve"
REJECT_ACTION = "rotator_reject"
BREAK_GLASS_ACTION = "rotator_break_glass"
GIVEN_VALUE_VIEW = "rotator_given_value"
"""callback_id of the modal that takes an externally issued secret."""
GIVEN_BLOCK_PREFIX = "given_"
"""block_id of each input: `given_<ENV_KEY>`; its action_id is `value`."""


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def format_when(when: datetime, zone: ZoneInfo) -> str:
    utc = when.astimezone(ZoneInfo("UTC")).strftime("%a %Y-%m-%d %H:%M UTC")
    local = when.astimezone(zone).strftime("%a %H:%M")
    return f"{utc} ({local} {zone.key})" if zone.key != "UTC" else utc


def _codes(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


def plan_blocks(plan: Plan) -> list[Block]:
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
    blocks: list[Block] = [SectionBlock(text=_md("\n".join(lines)))]
    if plan.notes:
        blocks.append(ContextBlock(elements=[_md(":warning: " + n) for n in plan.notes[:10]]))
    return blocks


def approval_text(request: RotationRequest, plan: Plan) -> str:
    kind = "EMERGENCY rotation" if request.emergency else "Rotation"
    return (
        f"{kind} of {plan.title} on {request.deployment} requested by <@{request.requester}> "
        f"for {format_when(request.window_start, ZoneInfo('UTC'))} ({request.id}): "
        "approve or reject."
    )


def _approval_status(request: RotationRequest) -> str:
    got = ", ".join(f"<@{u}>" for u in request.approvals) or "none yet"
    line = f"*Approvals:* {got} ({len(request.approvals)}/{request.approvals_needed})"
    if request.status is not RequestStatus.REQUESTED:
        by = f" by <@{request.decided_by}>" if request.decided_by else ""
        line += f"\n*Status:* {request.status.value}{by}"
    return line


def approval_blocks(
    request: RotationRequest, plan: Plan, *, break_glass: bool = False
) -> list[Block]:
    """The approval request; the message becomes the rotation's thread."""
    zone = ZoneInfo(request.requester_tz)
    title = f"{':rotating_light: EMERGENCY ' if request.emergency else ''}Rotate {plan.title}"
    head = [
        f"*Deployment:* `{request.deployment}`   *Secret:* `{request.secret}`   "
        f"*Request:* `{request.id}`",
        f"*Requested by:* <@{request.requester}>"
        + (f" — {request.reason}" if request.reason else ""),
        f"*Window:* {'now' if request.emergency else format_when(request.window_start, zone)}",
    ]
    blocks: list[Block] = [
        HeaderBlock(text=title[:150]),
        SectionBlock(text=_md("\n".join(head))),
        *plan_blocks(plan),
        SectionBlock(block_id="approvals", text=_md(_approval_status(request))),
    ]
    if request.status is RequestStatus.REQUESTED:
        blocks.append(
            ActionsBlock(block_id="decision", elements=_buttons(request, plan, break_glass))
        )
    return blocks


def _buttons(request: RotationRequest, plan: Plan, break_glass: bool) -> list[ButtonElement]:
    confirm = ConfirmObject(
        title="Approve this rotation?",
        text=f"{plan.title} on {request.deployment}: "
        f"{downtime_text(plan.downtime_estimate_s)} of downtime"
        + (", everyone logged out." if plan.logs_out_users else "."),
        confirm="Approve",
        deny="Cancel",
    )
    buttons = [
        ButtonElement(
            text="Approve",
            action_id=APPROVE_ACTION,
            value=request.id,
            style="primary",
            confirm=confirm,
        ),
        ButtonElement(text="Reject", action_id=REJECT_ACTION, value=request.id, style="danger"),
    ]
    if break_glass and request.emergency:
        glass = ConfirmObject(
            title="Break the glass?",
            text="You approve your own emergency rotation. This is announced and audited.",
            confirm="Break glass",
            deny="Cancel",
            style="danger",
        )
        buttons.append(
            ButtonElement(
                text="Break glass",
                action_id=BREAK_GLASS_ACTION,
                value=request.id,
                style="danger",
                confirm=glass,
            )
        )
    return buttons


def status_blocks(requests: Sequence[RotationRequest]) -> list[Block]:
    if not requests:
        return [SectionBlock(text=_md("No open rotation requests."))]
    lines = [
        f"`{r.id}` `{r.secret}` on `{r.deployment}`: *{r.status.value}*, "
        f"{format_when(r.window_start, ZoneInfo('UTC'))}, by <@{r.requester}> "
        f"({len(r.approvals)}/{r.approvals_needed} approvals)"
        for r in requests
    ]
    return [SectionBlock(text=_md("*Rotation requests*\n" + "\n".join(lines)))]


def help_blocks(command: str) -> list[Block]:
    text = "\n".join(
        [
            f"`{command} SECRET [DEPLOYMENT] [at WHEN | now] [reason...]`: ask for a rotation",
            "  WHEN: `02:30`, `tomorrow 03:00 UTC`, `2025-06-07 02:30 Europe/Berlin`, `+2h`, "
            "`next window` (the default)",
            f"  `now REASON`: emergency, e.g. `{command} jwt-secret prod now leaked in CI logs`",
            f"`{command} plan SECRET [DEPLOYMENT]`: what a rotation would change",
            f"`{command} status`: open requests",
            f"`{command} cancel ID`: cancel a request and its notices",
        ]
    )
    return [SectionBlock(text=_md(text))]


def refusal_blocks(reason: str) -> list[Block]:
    return [SectionBlock(text=_md(f":no_entry: {reason}"))]


def given_value_view(secret_title: str, keys: Sequence[str], metadata: dict[str, str]) -> View:
    """A modal with one input per externally issued key. `metadata` rides in private_metadata."""
    inputs: list[Block] = [
        InputBlock(
            block_id=f"{GIVEN_BLOCK_PREFIX}{key}",
            label=key,
            element=PlainTextInputElement(action_id="value", max_length=3000),
        )
        for key in keys
    ]
    note = ContextBlock(
        elements=[
            _md(
                "The value is sealed for the worker host at once; "
                "it is never posted or stored in clear."
            )
        ]
    )
    return View(
        type="modal",
        callback_id=GIVEN_VALUE_VIEW,
        title=f"New {secret_title}"[:24],
        submit="Request",
        close="Cancel",
        blocks=[*inputs, note],
        private_metadata=json.dumps(metadata),
    )
