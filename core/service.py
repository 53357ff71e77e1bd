"""Use cases as callers outside core (the bot, the workers) see them."""

from __future__ import annotations

from pathlib import Path

from core.catalogue import RotationOptions, get_secret
from core.consistency import refuse_inconsistent
from core.deployment import Deployment
from core.key_schedule import with_phase
from core.plan import Plan, make_plan


def plan_rotation(project_dir: Path, secret: str, options: RotationOptions | None = None) -> Plan:
    """What rotating `secret` in the deployment at `project_dir` would change."""
    deployment = Deployment.load(project_dir)
    chosen = get_secret(secret)
    options = with_phase(
        chosen, options or RotationOptions(), deployment.state_dir, deployment.values()
    )
    plan = make_plan(deployment, chosen, options=options)
    refuse_inconsistent(deployment.values(), plan.env_keys)
    return plan
