"""Finding rotations whose worker died, and saying so in their threads.

A worker killed mid-job (SIGKILL, OOM, the container stopped) leaves its request `running`
and, if it got past preflight, a journal on the host. RQ notices only much later (the
StartedJobRegistry entry expires after about 90 s, and is cleaned at the next maintenance
run), and calls no callback when only the work horse was killed. So the worker looks for
itself: at start and every `workers.upkeep.SWEEP_INTERVAL_S`, for each deployment,

- a request `running` while the deployment lock is free has lost its worker (a live job
  keeps renewing the lock; see `workers.jobs`);
- it moves to `failed` (atomically: of several sweepers, one posts), and its thread gets
  a message saying the worker died, and, when the journal is open, how to recover: the
  Recover button or `rotator recover --project ...`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core.deployment import Deployment
from core.errors import RotatorError
from core.journal import JournalState
from workers import report
from workers.jobs import Context, Thread, lock_key
from workers.progress import Redactor
from workers.store import InvalidTransition, RequestStatus

__all__ = ["sweep"]

log = logging.getLogger("rotator.worker")


def sweep(ctx: Context, deployments: Iterable[str]) -> list[str]:
    """Report abandoned rotations of these deployments; returns the request ids reported."""
    reported: list[str] = []
    for name in deployments:
        try:
            reported += _sweep_one(ctx, name)
        except Exception as exc:
            log.warning("sweep of %s failed (%s)", name, type(exc).__name__)
    return reported


def _sweep_one(ctx: Context, name: str) -> list[str]:
    if ctx.redis.exists(lock_key(name)):
        return []  # a live job holds the deployment
    dep = ctx.settings.deployment(name)
    state = _open_journal(dep.project)
    running = [
        r
        for r in ctx.store.list_requests(statuses={RequestStatus.RUNNING}, limit=500)
        if r.deployment == name
    ]
    if state is not None and ctx.store.find(state.rotation_id) is None:
        log.warning(
            "%s: rotation %s is open (not from Slack); run `rotator recover --project %s`",
            name,
            state.rotation_id,
            dep.project,
        )
    reported: list[str] = []
    for request in running:
        # A job takes the lock before it marks its request running: a lock that appeared
        # since the check above belongs to a live job that started meanwhile.
        if ctx.redis.exists(lock_key(name)):
            return reported
        try:
            request = ctx.store.transition(request.id, RequestStatus.FAILED)
        except InvalidTransition:
            continue  # finished meanwhile, or another sweeper got there first
        journal = state if state is not None and state.rotation_id == request.id else None
        step = None
        if journal is not None:
            step = journal.current or (journal.done[-1] if journal.done else "preflight")
        blocks = report.abandoned_blocks(
            project=str(dep.project), request_id=request.id, step=step, oncall=dep.oncall
        )
        log.warning("request %s lost its worker (journal open: %s)", request.id, step is not None)
        Thread(ctx.client, request, Redactor()).say(
            f":skull: The worker died while running request {request.id}.", blocks, broadcast=True
        )
        reported.append(request.id)
    return reported


def _open_journal(project: object) -> JournalState | None:
    try:
        deployment = Deployment.load(str(project))
    except RotatorError as exc:
        log.warning("cannot read the deployment at %s: %s", project, exc)
        return None
    try:
        return deployment.journal.read()
    except RotatorError:
        return None
