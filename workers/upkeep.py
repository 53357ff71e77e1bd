"""The worker's upkeep, beside its jobs: a thread that, for each of its deployments,

- every `UPKEEP_INTERVAL_S`: keeps the published plans current (`workers.plans`), writes
  the bot's queued decisions into the audit log and moves the log's anchor
  (`workers.decisions`), and says in the deployment's channel if the log lost records;
- every `SWEEP_INTERVAL_S`: reports rotations a dead worker abandoned (`workers.sweep`),
  expires unapproved requests, and reports scheduled requests whose window closed
  without their job starting (`workers.windows`).

A failure in one task is logged (its type) and the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial

from core.audit import AuditLog
from workers.approval import redraw
from workers.jobs import Context, call_off, lock_key
from workers.plans import PlanBook, PlanPublisher
from workers.progress import Redactor, post_safely
from workers.store import InvalidTransition, RequestStatus
from workers.sweep import sweep
from workers.windows import Window, closing_time, report_missed, window_state

__all__ = ["SWEEP_INTERVAL_S", "UPKEEP_INTERVAL_S", "Upkeep", "expire_due", "start_upkeep"]

log = logging.getLogger("rotator.worker")

UPKEEP_INTERVAL_S = 2.0
SWEEP_INTERVAL_S = 30.0


def expire_due(ctx: Context, deployments: Iterable[str], now: datetime) -> list[str]:
    """Expire the unapproved requests of these deployments whose time is up."""
    names = set(deployments)
    expired = []
    for request in ctx.store.list_requests(statuses={RequestStatus.REQUESTED}, limit=500):
        if request.deployment not in names or now < request.expires_at:
            continue
        try:
            request = ctx.store.transition(request.id, RequestStatus.EXPIRED)
        except InvalidTransition:
            continue
        ctx.store.delete_sealed(request.id)
        dep = ctx.settings.deployment(request.deployment)
        redraw(ctx.client, request, break_glass=dep.break_glass)
        ctx.decisions.record(
            dep.name,
            request_id=request.id,
            actor="rotator",
            action="expire",
            secret=request.secret,
            result="expired",
        )
        call_off(ctx, request)
        expired.append(request.id)
    return expired


def missed_windows(ctx: Context, deployments: Iterable[str], now: datetime) -> list[str]:
    """Report scheduled requests whose window closed while no job of theirs ran."""
    names = set(deployments)
    missed = []
    for request in ctx.store.list_requests(statuses={RequestStatus.SCHEDULED}, limit=500):
        if request.deployment not in names or ctx.redis.exists(lock_key(request.deployment)):
            continue  # a job holding the deployment decides for itself
        dep = ctx.settings.deployment(request.deployment)
        if window_state(request, dep, now) is not Window.CLOSED:
            continue
        reason = (
            f"no worker started it between {request.window_start:%Y-%m-%d %H:%M} and "
            f"{closing_time(request, dep)} UTC"
        )
        if report_missed(ctx.redis, ctx.client, dep, request, reason):
            missed.append(request.id)
    return missed


class Upkeep:
    def __init__(self, ctx: Context, deployments: list[str]) -> None:
        self.ctx, self.deployments = ctx, deployments
        book = PlanBook(ctx.redis)
        self.publishers = {
            name: PlanPublisher(book, name, ctx.settings.deployment(name).project)
            for name in deployments
        }
        self._last_sweep = 0.0

    def tick(self) -> None:
        now = datetime.now(UTC)
        for name in self.deployments:
            self._guarded(f"plans of {name}", partial(self.publishers[name].refresh, now))
            self._guarded(f"audit log of {name}", partial(self._audit, name))
        if time.monotonic() - self._last_sweep >= SWEEP_INTERVAL_S:
            self._last_sweep = time.monotonic()
            self._guarded("sweep", lambda: sweep(self.ctx, self.deployments))
            self._guarded("expiry", lambda: expire_due(self.ctx, self.deployments, now))
            self._guarded("windows", lambda: missed_windows(self.ctx, self.deployments, now))

    def _audit(self, name: str) -> None:
        state_dir = self.publishers[name].state_dir
        if state_dir is None:
            return  # the deployment has not loaded yet; decisions wait in Redis
        self.ctx.decisions.drain(name, state_dir)
        problem = self.ctx.decisions.anchor(name, AuditLog(state_dir / "audit.log"))
        if problem and self.ctx.store.once(f"audit-alarm:{name}:{problem}", ttl_s=86400):
            log.error("%s: %s", name, problem)
            dep = self.ctx.settings.deployment(name)
            post_safely(
                self.ctx.client,
                Redactor(),
                channel=dep.channel,
                text=f":rotating_light: `{name}`: {problem}. Someone changed the audit log on "
                "the worker host; the anchored head is kept in Redis.",
            )

    def _guarded(self, what: str, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception as exc:
            log.warning("upkeep (%s) failed (%s)", what, type(exc).__name__)


def start_upkeep(
    ctx: Context, deployments: list[str], interval_s: float = UPKEEP_INTERVAL_S
) -> threading.Event:
    """Run the upkeep now, then every `interval_s` in a daemon thread; set the event to stop."""
    stop = threading.Event()
    upkeep = Upkeep(ctx, deployments)
    upkeep.tick()

    def loop() -> None:
        while not stop.wait(interval_s):
            upkeep.tick()

    threading.Thread(target=loop, name="rotator-upkeep", daemon=True).start()
    return stop
