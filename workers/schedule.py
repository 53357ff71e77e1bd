"""Putting a request's jobs on its deployment's queue, and taking them off again.

RQ jobs, on the queue `rotator:<deployment>` (JSON serializer, ids only):
- `run_rotation(request_id)`, job id `rotate-<request_id>`, scheduled at the window start
  (an emergency, or a window already open: enqueued at once);
- `send_notice(request_id, notice_id)`, job id `notice-<request_id>-<notice_id>`, where
  notice_id is `before-<duration>` at that lead time before the window, `before-0s` at once
  when the window is nearer than every lead time, or `called-off` when the maintenance will
  not take place (cancelled, missed, refused, ...) after users may have been told;
- `recover_rotation(request_id)`, the thread's Recover button;
- `revoke_old_signing_key(request_id)`, job id `revoke-<request_id>`: after a planned
  jwt-signing-key request's rotate phase, its revoke phase, once every token the old key
  signed has expired (and at a window's start, where the deployment has windows).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from workers.config import DeploymentConfig, format_duration
from workers.connection import SERIALIZER, make_queue
from workers.store import CALLED_OFF_NOTICE, RotationRequest

__all__ = [
    "RECOVER_ROTATION",
    "REVOKE_OLD_KEY",
    "ROTATION_JOB_TIMEOUT_S",
    "RUN_ROTATION",
    "SEND_NOTICE",
    "enqueue",
    "enqueue_called_off",
    "schedule_request",
    "unschedule",
]

log = logging.getLogger("rotator.schedule")

ROTATION_JOB_TIMEOUT_S = 2 * 3600
"""RQ kills a job after this; a rotation restarts services and waits for health checks."""
RUN_ROTATION = "workers.jobs.run_rotation"
SEND_NOTICE = "workers.jobs.send_notice"
RECOVER_ROTATION = "workers.jobs.recover_rotation"
REVOKE_OLD_KEY = "workers.jobs.revoke_old_signing_key"


def enqueue(
    queue: Queue, func: str, args: tuple[str, ...], job_id: str, at: datetime, now: datetime
) -> str:
    """Run `func(*args)` at `at` (at once if due), once: a second call is a no-op."""
    # RQ's scheduler keeps whole seconds (it truncates): round up, never start early.
    if at > now and at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    timeout = ROTATION_JOB_TIMEOUT_S if func in (RUN_ROTATION, REVOKE_OLD_KEY) else 300
    try:
        if at <= now:
            queue.enqueue(func, *args, job_id=job_id, job_timeout=timeout, unique=True)
        else:
            job = queue.create_job(
                func, args=args, job_id=job_id, timeout=timeout, status=JobStatus.SCHEDULED
            )
            queue.schedule_job(job, at, unique=True)
    except DuplicateJobError:
        log.warning("job %s already exists; not enqueued twice", job_id)
    return job_id


def schedule_request(
    redis: Redis, dep: DeploymentConfig, request: RotationRequest, now: datetime
) -> tuple[str, ...]:
    """The rotation at its window start and a notice at each lead time still ahead (or one
    at once when none is). Returns the job ids."""
    queue = make_queue(dep.queue_name, redis)
    job_ids = [
        enqueue(queue, RUN_ROTATION, (request.id,), request.job_id, request.window_start, now)
    ]
    leads = [lead for lead in dep.notice_lead_times if request.window_start - lead > now]
    notices = [f"before-{format_duration(lead)}" for lead in leads] or ["before-0s"]
    for notice, lead in zip(notices, leads or [timedelta(0)], strict=True):
        at = request.window_start - lead if leads else now
        job_id = request.notice_job_id(notice)
        job_ids.append(enqueue(queue, SEND_NOTICE, (request.id, notice), job_id, at, now))
    return tuple(job_ids)


def enqueue_called_off(redis: Redis, dep: DeploymentConfig, request: RotationRequest) -> None:
    """Tell users (announce channel, webhooks) the maintenance is off; the worker decides
    whether anyone had been told, except for a missed window, which is always announced."""
    queue = make_queue(dep.queue_name, redis)
    # One per state change (the id carries its time): a request may be called off twice,
    # e.g. missed, rescheduled, missed again.
    job_id = request.notice_job_id(f"{CALLED_OFF_NOTICE}-{int(request.updated_at.timestamp())}")
    now = datetime.now(UTC)
    enqueue(queue, SEND_NOTICE, (request.id, CALLED_OFF_NOTICE), job_id, now, now)


def unschedule(redis: Redis, job_ids: Iterable[str], *, keep: str = "") -> int:
    """Delete these jobs (scheduled or queued), except `keep`; how many were there."""
    removed = 0
    for job_id in set(job_ids) - {keep}:
        try:
            Job.fetch(job_id, connection=redis, serializer=SERIALIZER).delete()
            removed += 1
        except NoSuchJobError:
            continue
    return removed
