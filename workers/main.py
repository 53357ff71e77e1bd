"""`rotator worker DEPLOYMENT...`: an RQ worker for those deployments' queues, on their host.

Queues are `rotator:<deployment>` (as `workers.config.DeploymentConfig.queue_name`); the worker
runs RQ's scheduler too, since approved rotations wait in the ScheduledJobRegistry for their
window. Before taking jobs it looks for rotations a previous worker abandoned
(`workers.sweep`), and keeps looking every half minute.

Environment: `ROTATOR_CONFIG`, `REDIS_URL`, `SLACK_BOT_TOKEN`, `SLACK_API_URL`,
`ROTATOR_WORKER_KEY` (the private key that opens values typed into Slack),
`ROTATOR_COMPOSE_COMMAND`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from redis import Redis
from rq import Queue, Worker

from core.errors import UnknownDeployment
from workers.config import load_config
from workers.jobs import Context, make_client
from workers.sweep import start_sweeping

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
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis.ping()
    ctx = Context(settings, redis, make_client())
    stop = start_sweeping(ctx, list(deployments))
    queues = [Queue(settings.deployment(d).queue_name, connection=redis) for d in deployments]
    log.info("worker for %s on queues %s", ", ".join(deployments), [q.name for q in queues])
    try:
        return Worker(queues, connection=redis).work(with_scheduler=True, burst=burst)
    finally:
        stop.set()
