"""What a rotation will change, computed from the deployment's own files.

A plan is shown before approval (Slack, `rotator plan`) and is what the engine
executes. It holds names only, never values, so it can travel anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Plan:
    """One rotation, decided.

    `restart_levels` groups `services` by `depends_on` depth: every service in
    level n depends only on services in levels < n (or outside the plan), so
    the engine recreates a level at a time, dependencies first.
    """

    secret: str
    title: str
    env_keys: tuple[str, ...]
    services: tuple[str, ...]
    restart_levels: tuple[tuple[str, ...], ...]
    db_roles: tuple[str, ...]
    impact: str
    logs_out_users: bool
    downtime_estimate_s: int
    members: tuple[str, ...] = ()
    """For `all`: the catalogue entries it covers, in order."""
    notes: tuple[str, ...] = field(default=())
    """Warnings for people (keys skipped because they are not configured, ...)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "title": self.title,
            "env_keys": list(self.env_keys),
            "services": list(self.services),
            "restart_levels": [list(level) for level in self.restart_levels],
            "db_roles": list(self.db_roles),
            "impact": self.impact,
            "logs_out_users": self.logs_out_users,
            "downtime_estimate_s": self.downtime_estimate_s,
            "members": list(self.members),
            "notes": list(self.notes),
        }
