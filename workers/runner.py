"""RQ workers that run rotator's own jobs and nothing else.

Redis is shared with the internet-facing bot, and the worker holds the Docker socket, so a
job is checked before it runs: its function must be one of `JOB_FUNCTIONS`, called as a
plain function with id-shaped string arguments and no keyword arguments, with no callbacks
and no RQ webhooks. Anything else (a foreign function, a pickled payload, which the JSON
serializer cannot even read) is moved to the failed registry with the reason, never run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rq import SimpleWorker, Worker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.queue import Queue

from workers.connection import SERIALIZER

__all__ = ["JOB_FUNCTIONS", "RotatorSimpleWorker", "RotatorWorker", "refusal"]

log = logging.getLogger("rotator.worker")

JOB_FUNCTIONS = frozenset(
    {
        "workers.jobs.run_rotation",
        "workers.jobs.recover_rotation",
        "workers.jobs.send_notice",
        "workers.jobs.revoke_old_signing_key",
    }
)
"""The only functions a rotator worker runs."""
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def refusal(job: Job) -> str | None:
    """Why `job` must not run, or None when it is one of ours."""
    try:
        func, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return "its payload is not JSON (a pickled job?)"
    if func not in JOB_FUNCTIONS:
        return f"{func!r} is not a rotator job function"
    if instance is not None or kwargs:
        return "rotator jobs take positional ids only"
    if not all(isinstance(a, str) and _ID.match(a) for a in args):
        return "rotator job arguments are ids ([A-Za-z0-9_.:-])"
    callbacks = (job._success_callback_name, job._failure_callback_name, job._stopped_callback_name)
    if any(callbacks) or job.webhooks:
        return "rotator jobs carry no callbacks or webhooks"
    return None


class _Allowlist:
    """Mixin for RQ worker classes: refuse, rather than run, jobs that are not ours."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = refusal(job)
        if reason is None:
            super().execute_job(job, queue)  # type: ignore[misc]
            return
        log.error("refused job %s from queue %s: %s", job.id, queue.name, reason)
        # Whatever the job asked for, nothing of it runs, not even on failure.
        job.webhooks = []
        job.retries_left = 0
        job._success_callback_name = job._failure_callback_name = None
        job._stopped_callback_name = None
        worker: Any = self
        worker.handle_job_failure(
            job,
            queue,
            started_job_registry=queue.started_job_registry,
            exc_string=f"refused by the rotator worker: {reason}",
        )


class RotatorWorker(_Allowlist, Worker):
    """A forking RQ worker (each job in a work horse) with the JSON serializer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)


class RotatorSimpleWorker(_Allowlist, SimpleWorker):
    """The same, running jobs in its own process (tests and the demo drive it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)
