"""Use cases as callers outside core (the bot, the workers) see them."""

from __future__ import annotations

from pathlib import Path

from core.catalogue import get_secret
from core.deployment import Deployment
from core.plan import Plan, make_plan


def plan_rotation(project_dir: Path, secret: str) -> Plan:
    """What rotating `secret` in the deployment at `project_dir` would change."""
    return make_plan(Deployment.load(project_dir), get_secret(secret))
