"""The self-hosting guide's security checklist, item by item, after a rotation.

Every item is ticked only from evidence gathered during the run: the staged values
validated again, the backup file read back, `.env` compared with it, the verification's
checks. An item without evidence (or whose evidence falls short) stays a to-do for a
person, as do the items rotator cannot do (updating your client apps).
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.catalogue import Secret, Source, get_secret
from core.envfile import EnvFile
from core.errors import InputError, InvalidSecretValue
from core.plan import Plan
from core.probes import GATEWAY_PREFIX
from core.progress import CheckResult
from core.secretgen import RULES


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    done: bool
    evidence: str = ""
    """What proves it, for items checked automatically; for a to-do, what is missing."""


@dataclass(frozen=True)
class Evidence:
    """What the run leaves behind for the checklist to read."""

    secret: str
    old: Mapping[str, str]
    new: Mapping[str, str]
    backup: str
    """The backup of .env made before the change ("" when none was made)."""
    env_path: Path


RULES_TEXT = "Values meet every consumer's rules"
BACKUP_TEXT = ".env backed up before the change"
ONLY_ROTATED_TEXT = "Only the rotated keys changed in .env"
GATEWAY_TEXT = "Gateway accepts the new keys and refuses the old ones"

_FROM_CHECKS = (
    ("All services healthy after the restart", "services healthy"),
    ("No container still holds the old value", "no container holds the old value"),
    ("Database accepts the new password", "database accepts the new password"),
    ("Database refuses the old password", "database refuses the old password"),
)


def build_checklist(
    plan: Plan, checks: Sequence[CheckResult], evidence: Evidence
) -> list[ChecklistItem]:
    items = [
        _rules_item(get_secret(evidence.secret), evidence),
        _backup_item(evidence),
        _only_rotated_item(plan, evidence),
    ]
    by_name = {check.name: check for check in checks}
    for text, name in _FROM_CHECKS:
        check = by_name.get(name)
        if check is not None and check.ok is not None:
            items.append(ChecklistItem(text, check.ok, check.evidence))
    probes = [c for c in checks if c.name.startswith(GATEWAY_PREFIX) and c.ok is not None]
    if probes:
        items.append(
            ChecklistItem(
                GATEWAY_TEXT,
                all(c.ok for c in probes),
                "; ".join(f"{c.name}: {c.evidence}" for c in probes),
            )
        )
    for name in plan.members or (plan.secret,):
        for todo in get_secret(name).checklist:
            if all(todo != item.text for item in items):
                items.append(ChecklistItem(todo, False))
    return items


def _rules_item(secret: Secret, evidence: Evidence) -> ChecklistItem:
    """The staged values, validated again now against every consumer's rules."""
    if not evidence.new:
        return ChecklistItem(RULES_TEXT, False, "no new value was staged")
    try:
        # The .env the values were made for: today's, with the rotated keys as they were.
        current = {**EnvFile.read(evidence.env_path).as_dict(), **evidence.old}
    except (OSError, InputError) as exc:
        return ChecklistItem(RULES_TEXT, False, f".env unreadable ({type(exc).__name__})")
    try:
        secret.validate(evidence.new, current=current)
    except InvalidSecretValue as exc:
        return ChecklistItem(RULES_TEXT, False, f"{exc.key} {exc.rule}")
    given = _given_keys(secret)
    checked = []
    for key in evidence.new:
        rules = len(RULES.get(key, ())) or "JWT/JWK"
        checked.append(f"{key} ({rules} rules{', given by a person' if key in given else ''})")
    if given & set(evidence.new):
        # A person's value can be well-formed and still wrong: only its provider can tell.
        return ChecklistItem(
            RULES_TEXT,
            False,
            "checked for form only: " + ", ".join(checked) + "; whether the provider "
            "accepts the given values is for a person to confirm",
        )
    return ChecklistItem(RULES_TEXT, True, "validated again after the run: " + ", ".join(checked))


def _given_keys(secret: Secret) -> set[str]:
    members = [get_secret(name) for name in secret.members] or [secret]
    return {
        key
        for member in members
        if member.source is Source.GIVEN
        for key in (*member.given_keys, *member.optional_given_keys)
    }


def _backup_item(evidence: Evidence) -> ChecklistItem:
    if not evidence.backup:
        return ChecklistItem(BACKUP_TEXT, False, "no backup was made")
    path = Path(evidence.backup)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        saved = EnvFile.read(path)
    except (OSError, InputError) as exc:
        return ChecklistItem(BACKUP_TEXT, False, f"{path.name} unreadable ({type(exc).__name__})")
    if mode & 0o077:
        return ChecklistItem(BACKUP_TEXT, False, f"{path.name} has mode {mode:o}, not 0600")
    differs = sorted(k for k, v in evidence.old.items() if v and saved.get(k) != v)
    if differs:
        return ChecklistItem(
            BACKUP_TEXT, False, f"{path.name} does not hold the old {', '.join(differs)}"
        )
    return ChecklistItem(
        BACKUP_TEXT, True, f"{path.name}, mode 0600, read back: holds the old values"
    )


def _only_rotated_item(plan: Plan, evidence: Evidence) -> ChecklistItem:
    """.env now against the backup: the rotated keys differ, every other key is the same."""
    if not evidence.backup:
        return ChecklistItem(ONLY_ROTATED_TEXT, False, "no backup to compare .env with")
    try:
        before = EnvFile.read(Path(evidence.backup))
        after = EnvFile.read(evidence.env_path)
    except (OSError, InputError) as exc:
        return ChecklistItem(ONLY_ROTATED_TEXT, False, f"cannot compare ({type(exc).__name__})")
    keys = set(before.keys()) | set(after.keys())
    changed = sorted(k for k in keys if before.get(k) != after.get(k))
    expected = sorted(plan.env_keys)
    if changed != expected:
        extra = sorted(set(changed) - set(expected))
        unchanged = sorted(set(expected) - set(changed))
        why = "; ".join(
            part
            for part in (
                f"also changed: {', '.join(extra)}" if extra else "",
                f"not changed: {', '.join(unchanged)}" if unchanged else "",
            )
            if part
        )
        return ChecklistItem(ONLY_ROTATED_TEXT, False, why)
    return ChecklistItem(
        ONLY_ROTATED_TEXT,
        True,
        f"compared with the backup: changed {', '.join(changed) or 'nothing'}; "
        f"{len(keys) - len(changed)} other keys unchanged",
    )
