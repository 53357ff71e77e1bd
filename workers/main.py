"""`rotator worker DEPLOYMENT...`: an RQ worker for those deployments' queues, on their host.

Queues are `rotator:<deployment>` (as `workers.config.DeploymentConfig.queue_name`); the worker
runs RQ's scheduler too, since approved rotations wait in the ScheduledJobRegistry for their
window. Beside the jobs, a thread keeps the deployments' upkeep (`workers.upkeep`): it
publishes their plans for the bot, writes the bot's decisions into the audit log, and looks
for rotations a previous worker abandoned and windows that were missed.

Environment: `ROTATOR_CONFIG`, `ROTATOR_WORKER_KEY` (the private key that opens values typed
into Slack), `ROTATOR_COMPOSE_COMMAND`, and Redis and Slack as in `workers.connection`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.errors import UnknownDeployment
from workers.config import load_config
from workers.connection import connect_redis, make_queue, make_slack_client
from workers.jobs import Context
from workers.runner import RotatorWorker
from workers.upkeep import start_upkeep

__all__ = ["run_worker"]

log = logging.getLogger("rotator.worker")


def run_worker(deployments: Sequence[str], *, burst: bool = False) -> bool:
    """Work the deployments' queues until stopped (or, with `burst`, until they are empty)."""
    settings = load_config()
    unknown = [d for d in deployments if d not in settings.deployments]
    if unknown or not deployments:
        known = ", ".join(sorted(settings.deployments)) or "none"
        raise UnknownDeployment(
            f"unknown deployment(s) {', '.join(unknown) or '(none given)'} in "
            f"{settings.source}; configured: {known}"
        )
    redis = connect_redis()
    redis.ping()
    ctx = Context(settings, redis, make_slack_client())
    stop = start_upkeep(ctx, list(deployments))
    queues = [make_queue(settings.deployment(d).queue_name, redis) for d in deployments]
    log.info("worker for %s on queues %s", ", ".join(deployments), [q.name for q in queues])
    try:
        return bool(RotatorWorker(queues, connection=redis).work(with_scheduler=True, burst=burst))
    finally:
        stop.set()
