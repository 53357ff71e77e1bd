"""Block Kit builders for the bot's own surfaces: help, status, the modal, the App Home.
Pure functions; names only, never values; user text escaped. The approval message, which the
worker redraws too, is built in `workers.approval`.

Every message is sent with a `text=` fallback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from workers.approval import (
    APPROVE_ACTION,
    BREAK_GLASS_ACTION,
    NEXT_WINDOW_ACTION,
    REJECT_ACTION,
    RUN_NOW_ACTION,
    format_when,
)
from workers.report import escape
from workers.store import RotationRequest

__all__ = [
    "APPROVE_ACTION",
    "BREAK_GLASS_ACTION",
    "GIVEN_VALUE_VIEW",
    "NEXT_WINDOW_ACTION",
    "REJECT_ACTION",
    "RUN_NOW_ACTION",
    "given_value_view",
    "help_blocks",
    "home_view",
    "refusal_blocks",
    "status_blocks",
]

GIVEN_VALUE_VIEW = "rotator_given_value"
"""callback_id of the modal that takes an externally issued secret."""
GIVEN_BLOCK_PREFIX = "given_"
"""block_id of each input: `given_<ENV_KEY>`; its action_id is `value`."""


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def _request_line(r: RotationRequest) -> str:
    return (
        f"`{r.id}` `{r.secret}` on `{r.deployment}`: *{r.status.value}*, "
        f"{format_when(r.window_start, ZoneInfo('UTC'))}, by <@{r.requester}> "
        f"({len(r.approvals)}/{r.approvals_needed} approvals)"
    )


def _sections(heading: str, lines: Sequence[str], limit: int = 2900) -> list[Block]:
    """`heading` and `lines` in as many section blocks as Slack's 3,000 characters need."""
    blocks: list[Block] = []
    chunk = f"*{heading}*"
    for line in lines:
        if len(chunk) + len(line) + 1 > limit:
            blocks.append(SectionBlock(text=_md(chunk)))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:limit]
    blocks.append(SectionBlock(text=_md(chunk)))
    return blocks


def status_blocks(
    requests: Sequence[RotationRequest], deployments: Sequence[str], limit: int = 45
) -> list[Block]:
    """The open requests of `deployments`, within a message's 50 blocks."""
    names = ", ".join(f"`{d}`" for d in deployments)
    if not requests:
        return [SectionBlock(text=_md(f"No open rotation requests for {names}."))]
    lines = [_request_line(r) for r in requests]
    blocks = _sections(f"Rotation requests for {names}", lines)
    if len(blocks) > limit:
        blocks = [*blocks[: limit - 1], ContextBlock(elements=[_md("… more not shown")])]
    return blocks


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


def home_view(
    deployments: Sequence[tuple[str, Sequence[RotationRequest], Sequence[RotationRequest], str]],
    *,
    user: str,
) -> View:
    """The App Home for an approver: per deployment, the open requests (with their buttons
    where they wait for a decision), the next windows and the last rotations' outcomes.

    `deployments`: (name, open requests, ended requests, next windows text)."""
    blocks: list[Block] = [HeaderBlock(text="Secret rotations")]
    for name, open_requests, ended, windows in deployments:
        blocks.append(SectionBlock(text=_md(f"*`{name}`*  ·  next windows: {windows}")))
        for r in open_requests[:8]:
            actions = []
            if r.status.value == "requested" and r.requester != user:
                actions = [("Approve", APPROVE_ACTION, "primary"), ("Reject", REJECT_ACTION, "")]
            elif r.status.value == "missed":
                actions = [("Pick the next window", NEXT_WINDOW_ACTION, "")]
                if r.requester != user:
                    actions.append(("Run now", RUN_NOW_ACTION, "danger"))
            reason = f" — {escape(r.reason)}" if r.reason else ""
            blocks.append(SectionBlock(text=_md(_request_line(r) + reason)))
            if actions:
                blocks.append(
                    ActionsBlock(
                        elements=[
                            ButtonElement(
                                text=text, action_id=action, value=r.id, style=style or None
                            )
                            for text, action, style in actions
                        ]
                    )
                )
        if not open_requests:
            blocks.append(ContextBlock(elements=[_md("No open requests.")]))
        last = [f"`{r.id}` `{r.secret}`: *{r.status.value}*" for r in ended[:5]]
        blocks.append(
            ContextBlock(elements=[_md("Last rotations: " + (", ".join(last) or "none yet"))])
        )
        if len(blocks) > 90:
            blocks = [*blocks[:90], ContextBlock(elements=[_md("… more deployments not shown")])]
            break
    return View(type="home", blocks=blocks)


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
