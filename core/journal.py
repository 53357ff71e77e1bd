"""The journal: the durable record of one open rotation.

Written (0600, atomically, fsynced) before every step starts and after it
ends, so a process killed at any instant leaves a file that says which values
were old, which were new and how far the rotation got. `rotator recover` reads
it. It is the only place besides `.env` and its backups where values rest, and
it is deleted when the rotation finishes either way.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.envfile import write_atomic
from core.errors import InputError

FAULT_PAUSE_ENV = "ROTATOR_FAULT_PAUSE_S"
"""Seconds to pause after each journal write, so a test can stop the process there."""


class Step(StrEnum):
    """The protocol's steps, in order (DESIGN.md, "The rotation protocol")."""

    PREFLIGHT = "preflight"
    BACKUP = "backup"
    STAGE = "stage"
    APPLY = "apply"
    COMMIT = "commit"
    RESTART = "restart"
    VERIFY = "verify"
    FINISH = "finish"


class Phase(StrEnum):
    FORWARD = "forward"
    ROLLING_BACK = "rolling_back"


@dataclass
class JournalState:
    rotation_id: str
    secret: str
    actor: str
    plan: dict[str, Any]
    old: dict[str, str]
    new: dict[str, str]
    backup: str = ""
    done: list[str] = field(default_factory=list)
    """Steps completed, in order."""
    current: str = ""
    """The step started and not yet completed, if any."""
    phase: Phase = Phase.FORWARD
    ready_services: list[str] = field(default_factory=list)
    """Services ready at preflight: the ones verification expects ready afterwards."""
    sessions_revoked_at: float = 0.0
    """When apply revoked Auth's sessions (0: it did not); verification looks for older ones."""
    db_roles: list[str] = field(default_factory=list)
    """The roles apply changes: the plan's, plus supabase_read_only_user when preflight
    found it shares the password. Empty in journals from before it existed: the plan's."""
    restart_started_at: float = 0.0
    """When the forward restart step first began (0: not yet). Containers compose created
    from the committed .env since then need no second recreate when recovery resumes."""
    pooler_reset_at: float = 0.0
    """When apply last dropped the pooler's stored tenant (0: never), written before the
    drop: only a pooler container created after it makes the tenant again."""
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def reached(self, step: Step) -> bool:
        return step.value in self.done


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> JournalState | None:
        """The open rotation's state, or None when no rotation is open."""
        return self.load() if self.exists() else None

    def load(self) -> JournalState:
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            raw["phase"] = Phase(raw.get("phase", Phase.FORWARD.value))
            return JournalState(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(
                f"{self.path}: the rotation journal is unreadable ({type(exc).__name__}); "
                "restore .env from the newest file in backups/ by hand"
            ) from None

    def save(self, state: JournalState) -> None:
        state.updated_at = time.time()
        body = asdict(state) | {"phase": state.phase.value}
        write_atomic(self.path, json.dumps(body, indent=1, sort_keys=True) + "\n")
        # A fault-injection aid: tests/faults kill rotator at every journal boundary,
        # and some steps last microseconds. Never set in production.
        pause = os.environ.get(FAULT_PAUSE_ENV)
        if pause:
            time.sleep(float(pause))

    def start(self, state: JournalState, step: Step) -> None:
        state.current = step.value
        self.save(state)

    def complete(self, state: JournalState, step: Step) -> None:
        if step.value not in state.done:
            state.done.append(step.value)
        state.current = ""
        self.save(state)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
