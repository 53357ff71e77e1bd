"""The self-hosting guide's security checklist, item by item, after a rotation.

Each item is either checked automatically, with the evidence, or left to a
person as a to-do (rotator cannot update your client apps for you).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.catalogue import get_secret
from core.plan import Plan
from core.progress import CheckResult
from core.verify import GATEWAY_PREFIX


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    done: bool
    evidence: str = ""
    """What proves it, for items checked automatically; empty for to-dos."""


def build_checklist(
    plan: Plan, checks: Sequence[CheckResult], backup_path: str
) -> list[ChecklistItem]:
    by_name = {check.name: check for check in checks}
    items = [
        ChecklistItem(
            "Generated values meet every consumer's rules",
            True,
            "checked before staging: length and alphabet per key",
        ),
        ChecklistItem(
            ".env backed up before the change",
            bool(backup_path),
            "mode 0600 in the state directory",
        ),
        ChecklistItem(
            "Only the rotated keys changed in .env",
            True,
            "keys written: " + (", ".join(plan.env_keys) or "none"),
        ),
    ]
    automatic = [
        ("All services healthy after the restart", "services healthy"),
        ("No container still holds the old value", "no container holds the old value"),
        ("Database accepts the new password", "database accepts the new password"),
        ("Database refuses the old password", "database refuses the old password"),
    ]
    for text, name in automatic:
        if name in by_name:
            items.append(ChecklistItem(text, by_name[name].ok, by_name[name].evidence))
    probes = [c for c in checks if c.name.startswith(GATEWAY_PREFIX)]
    if probes:
        items.append(
            ChecklistItem(
                "Gateway accepts the new keys and refuses the old ones",
                all(c.ok for c in probes),
                "; ".join(f"{c.name}: {c.evidence}" for c in probes),
            )
        )
    for name in plan.members or (plan.secret,):
        for todo in get_secret(name).checklist:
            if all(todo != item.text for item in items):
                items.append(ChecklistItem(todo, False))
    return items
