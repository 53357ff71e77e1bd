"""What the worker says, as pure functions: thread messages, notices, webhook bodies.

Names and evidence only, never values; the caller still redacts every text on the way out
(`workers.progress.Redactor`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.checklist import ChecklistItem
from core.progress import CheckResult

__all__ = [
    "RECOVER_ACTION",
    "abandoned_blocks",
    "called_off_notice",
    "checklist_blocks",
    "downtime_text",
    "escape",
    "lead_time",
    "mentions",
    "notice_text",
    "outcome_notice",
    "recovery_blocks",
    "verification_blocks",
]

RECOVER_ACTION = "rotator_recover"
"""action_id of the thread's Recover button; its value is the request id."""

Blocks = list[dict[str, Any]]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def mentions(user_ids: Sequence[str]) -> str:
    """`<@U1> <@U2>`: Slack notifies each on-call person."""
    return " ".join(f"<@{u}>" for u in user_ids)


_MARKS = {True: ":white_check_mark:", False: ":x:", None: ":heavy_minus_sign:"}
"""A check with nothing to check (None) is shown as such, never as passed."""


def verification_blocks(checks: Sequence[CheckResult], *, heading: str) -> Blocks:
    lines = [f"{_MARKS[c.ok]} *{c.name}*: {c.evidence}" for c in checks] or ["_no checks ran_"]
    return [_section(f"*{heading}*"), _section("\n".join(lines))]


def checklist_blocks(items: Sequence[ChecklistItem]) -> Blocks:
    """The guide's security checklist: checked with evidence, or a to-do for a person."""
    blocks: Blocks = [_section("*Security checklist*")]
    for item in items:
        if item.done:
            text = f":ballot_box_with_check: {item.text}" + (
                f"\n_evidence: {item.evidence}_" if item.evidence else ""
            )
        else:
            text = f":white_square: *To do:* {item.text}"
        blocks.append(_section(text))
    return blocks


def recover_button(request_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "recover",
        "elements": [
            {
                "type": "button",
                "action_id": RECOVER_ACTION,
                "value": request_id,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Recover"},
                "confirm": {
                    "title": {"type": "plain_text", "text": "Recover the rotation?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": "The worker reads the journal and finishes or undoes the "
                        "rotation, restarting services again.",
                    },
                    "confirm": {"type": "plain_text", "text": "Recover"},
                    "deny": {"type": "plain_text", "text": "Not now"},
                },
            }
        ],
    }


def _how_to_recover(project: str, request_id: str) -> str:
    return (
        "Finish or undo it with the *Recover* button below, or on the host with "
        f"`rotator recover --project {project}`. Request `{request_id}`."
    )


def recovery_blocks(
    headline: str, *, project: str, request_id: str, oncall: Sequence[str]
) -> Blocks:
    """A rotation left half-done: what happened, how to finish it, a Recover button."""
    who = f"\n{mentions(oncall)} please take a look." if oncall else ""
    text = (
        f":rotating_light: {headline}\nThe deployment is left *half-done*; its journal "
        f"records every value and the step reached. {_how_to_recover(project, request_id)}{who}"
    )
    return [_section(text), recover_button(request_id)]


def abandoned_blocks(
    *,
    project: str,
    request_id: str,
    step: str | None,
    oncall: Sequence[str],
) -> Blocks:
    """The worker died mid-job. `step` is the journal's step, or None when no journal is open."""
    who = f"\n{mentions(oncall)} please take a look." if oncall else ""
    if step is None:
        text = (
            f":skull: The worker stopped while running request `{request_id}`. No rotation "
            "journal is open, so the deployment is not half-done: the rotation either had not "
            "changed anything yet or had already finished. "
            f"`rotator history --project {project}` on the host shows which.{who}"
        )
        return [_section(text)]
    text = (
        f":skull: The worker died while rotating (request `{request_id}`, step `{step}`). "
        "A journal was left on the host; it records the old and new values and how far the "
        f"rotation got. {_how_to_recover(project, request_id)}{who}"
    )
    return [_section(text), recover_button(request_id)]


def downtime_text(seconds: int) -> str:
    """An estimate in words: `about 40 s`, `about 3 min`."""
    return f"about {seconds} s" if seconds < 90 else f"about {round(seconds / 60)} min"


def plan_summary(plan_json: str) -> dict[str, Any]:
    """The few plan fields notices need, from the request's stored plan (names only)."""
    try:
        data = json.loads(plan_json or "{}")
    except ValueError:
        data = {}
    return {
        "title": str(data.get("title") or data.get("secret") or "a secret"),
        "impact": str(data.get("impact") or ""),
        "logs_out_users": bool(data.get("logs_out_users")),
        "downtime_estimate_s": int(data.get("downtime_estimate_s") or 0),
    }


def lead_time(window_start: datetime, now: datetime) -> str:
    """How far off the window is, as the notice goes out: `in 40 s`, `in 9 min`, `in 2 h`,
    `shortly`."""
    seconds = (window_start - now).total_seconds()
    if seconds < 5:
        return "shortly"
    if seconds < 90:
        return f"in {round(seconds)} s"
    if seconds < 5400:
        return f"in {round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"in {round(seconds / 3600)} h"
    return f"in {round(seconds / 86400)} days"


def notice_text(*, deployment: str, plan_json: str, window_start: datetime, now: datetime) -> str:
    """An announcement of coming downtime, for users: when, what they will notice. The lead
    time is computed as it is sent, not as it was planned."""
    plan = plan_summary(plan_json)
    when = window_start.strftime("%a %Y-%m-%d %H:%M UTC")
    soon = lead_time(window_start, now)
    notice = [f":warning: *Planned maintenance on {deployment}* {soon} ({when}): {plan['title']}."]
    if plan["logs_out_users"]:
        notice.append("*Everyone will be logged out* and must sign in again.")
    if plan["impact"]:
        notice.append(f"What you will notice: {plan['impact']}")
    if plan["downtime_estimate_s"]:
        notice.append(f"Expected downtime: {downtime_text(plan['downtime_estimate_s'])}.")
    return " ".join(notice)


def called_off_notice(*, deployment: str, plan_json: str, window_start: datetime, why: str) -> str:
    """The notice that a maintenance users may have been told about will not take place."""
    plan = plan_summary(plan_json)
    when = window_start.strftime("%a %Y-%m-%d %H:%M UTC")
    return (
        f":no_entry_sign: *The planned maintenance on {deployment}* ({when}) *did not take "
        f"place*: {why}. {plan['title']} stays as it is; nothing changed."
    )


def outcome_notice(*, deployment: str, plan_json: str, outcome: str) -> str:
    """The final notice for users: done, rolled back, or did not go ahead."""
    plan = plan_summary(plan_json)
    if outcome == "finished":
        tail = " If you were logged out, please sign in again." if plan["logs_out_users"] else ""
        return f":white_check_mark: Maintenance on *{deployment}* is done ({plan['title']}).{tail}"
    if outcome == "rolled_back":
        return (
            f":leftwards_arrow_with_hook: Maintenance on *{deployment}* was rolled back: "
            f"{plan['title']} is unchanged and service is restored. It will be rescheduled."
        )
    return (
        f":x: Maintenance on *{deployment}* did not complete ({plan['title']}); the team is on it."
    )


def escape(text: str) -> str:
    """User text made inert for mrkdwn: `&`, `<` and `>` escaped as Slack asks, so a reason
    cannot carry `<!channel>`, a mention or a disguised link (`<https://evil|docs>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
