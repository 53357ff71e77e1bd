"""Plans and results as text for people (the terminal; Slack has its own blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.plan import Plan

if TYPE_CHECKING:
    from core.engine import RotationResult


def format_plan(plan: Plan) -> str:
    lines = [f"Plan: rotate {plan.secret} ({plan.title})"]
    if plan.members:
        lines.append(f"  covers:            {', '.join(plan.members)}")
    lines.append(f"  .env keys:         {', '.join(plan.env_keys) or 'none'}")
    if plan.db_roles:
        lines.append(f"  database roles:    {', '.join(plan.db_roles)}")
    levels = " → ".join("[" + ", ".join(level) + "]" for level in plan.restart_levels)
    lines.append(f"  recreated, in order: {levels or 'none'}")
    options = plan.rotation_options
    mode = options.mode.value + (f", phase {options.phase.value}" if options.phase else "")
    lines.append(f"  mode:              {mode}")
    if plan.revokes_sessions:
        lines.append("  sessions:          every session and refresh token is revoked")
    lines.append(f"  downtime estimate: ~{plan.downtime_estimate_s}s")
    lines.append(f"  users will notice: {plan.impact}")
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)


def format_result(result: RotationResult) -> str:
    from core.engine import Outcome

    if result.outcome is Outcome.FINISHED:
        head = f"Rotation {result.rotation_id} of {result.secret} finished and verified."
    else:
        head = (
            f"Rotation {result.rotation_id} of {result.secret} FAILED and was rolled back: "
            f"{result.error}"
        )
        if result.failed_service:
            head += f"\n  failed service: {result.failed_service}"
        if result.failed_logs:
            head += "\n  its last log lines (secrets redacted):\n" + "\n".join(
                "    " + line for line in result.failed_logs.splitlines()
            )
    lines = [head, "Verification:"]
    lines += [f"  {c.mark} {c.name}: {c.evidence}" for c in result.checks]
    if result.next_step:
        lines.append(result.next_step)
    if result.checklist:
        lines.append("Security checklist:")
        for item in result.checklist:
            mark = "✓" if item.done else "☐"
            lines.append(f"  {mark} {item.text}" + (f" ({item.evidence})" if item.evidence else ""))
    return "\n".join(lines)
