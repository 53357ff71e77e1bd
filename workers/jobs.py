"""RQ job functions. Arguments are ids only; the worker reads values itself, on its own host.

- `run_rotation(request_id)`: an approved rotation, reported in the request's thread.
- `recover_rotation(request_id)`: the thread's Recover button: `Engine.recover()`.
- `send_notice(request_id, notice_id)`: a downtime announcement before the window, or the
  news that it is called off.

Before the first change a rotation job checks, with its own clock and files, that it is
inside its window (`workers.windows`) and that the plan is the one approved (its digest,
`core.digest`); otherwise it stops, says why in the thread, and offers what to do next.

Each job loads the request from `workers.store.RequestStore`, the deployment from the config
named by `ROTATOR_CONFIG`, talks to Slack through `SLACK_BOT_TOKEN` / `SLACK_API_URL`, and
uses the Redis connection RQ gave it (else `REDIS_URL`).

One rotation per deployment at a time: a Redis lock `rotator:lock:<deployment>` whose
short TTL (`LOCK_TTL_S`) is renewed by a thread while the job runs. A live job never loses
it; a worker killed with SIGKILL frees it within `LOCK_TTL_S`, which is how
`workers.sweep` tells an abandoned rotation from a running one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock
from rq import get_current_job
from slack_sdk import WebClient

from core.catalogue import Mode, RotationOptions
from core.deployment import Deployment
from core.digest import PlanBasis
from core.engine import Engine, Outcome, RotationResult
from core.errors import InputError, RecoveryNeeded, RotatorError
from core.key_schedule import KeySchedule
from core.probes import ProbeSettings
from core.redact import secret_values
from core.runtime import Runtime
from core.signing_keys import Phase
from workers import report, webhooks
from workers.approval import decision_buttons, redraw
from workers.config import DeploymentConfig, Settings, format_duration, load_config
from workers.connection import connect_redis, make_queue, make_slack_client
from workers.decisions import DecisionLog
from workers.messages import explain
from workers.plans import PublishedPlan, current_plan
from workers.progress import Redactor, SlackThreadProgress, post_safely
from workers.schedule import REVOKE_OLD_KEY, enqueue, unschedule
from workers.sealed import SealError, open_values
from workers.store import (
    CALLED_OFF_NOTICE,
    InvalidTransition,
    RequestNotFound,
    RequestStatus,
    RequestStore,
)
from workers.store import RotationRequest as Request
from workers.windows import Window, closing_time, report_missed, window_state

__all__ = [
    "LOCK_TTL_S",
    "PlanChanged",
    "RotationJobError",
    "call_off",
    "lock_key",
    "make_runtime",
    "recover_rotation",
    "revoke_old_signing_key",
    "run_rotation",
    "send_notice",
]

log = logging.getLogger("rotator.worker")

LOCK_TTL_S = 60
"""The deployment lock's TTL; renewed every third of it while a job runs."""
EARLY_WAIT_S = 300.0
"""A job that starts before its window (clocks a little apart) waits at most this long."""
SCHEDULED_WAIT_S = 10.0
"""How long a job that finds its request still `approved` waits for the bot to schedule it."""
AT_ONCE_NOTICE = "before-0s"
"""The notice the bot enqueues at once when the window is nearer than every lead time."""


class RotationJobError(Exception):
    """An unexpected error in a job, reduced to its type: RQ stores a failed job's exception
    in Redis, and a foreign exception's message may quote a value."""


# -- collaborators, built at call time (tests replace these) ---------------------------------


def probe_settings(dep: DeploymentConfig, deployment: Deployment) -> ProbeSettings:
    """The deployment's probe settings: where the worker reaches the gateway and the
    pooler from its host, or that it cannot (then the probes are reported as turned off)."""
    environ: dict[str, str] = {}
    if dep.gateway_url:
        environ["ROTATOR_GATEWAY_URL"] = dep.gateway_url
    if dep.pooler_address:
        environ["ROTATOR_POOLER_ADDRESS"] = dep.pooler_address
    return ProbeSettings.for_deployment(
        deployment.values(),
        gateway=dep.gateway_probes,
        pooler=dep.pooler_probe,
        environ=environ,
    )


def rotation_options(request: Request) -> RotationOptions:
    """An emergency (`now`) is a compromise: every old credential cut off, sessions
    revoked; a rotation in a window is planned (nobody logged out where avoidable)."""
    return RotationOptions(mode=Mode.COMPROMISE if request.emergency else Mode.PLANNED)


def make_runtime(deployment: Deployment) -> Runtime:
    """The runtime the engine acts through: Docker, with the compose command from
    `ROTATOR_COMPOSE_COMMAND`."""
    from core.adapters.docker import DockerRuntime

    return DockerRuntime()


def make_redis() -> Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    return connect_redis()


def lock_key(deployment: str) -> str:
    return f"rotator:lock:{deployment}"


@dataclass
class Context:
    settings: Settings
    redis: Redis
    client: WebClient

    @property
    def store(self) -> RequestStore:
        return RequestStore(self.redis)

    @property
    def decisions(self) -> DecisionLog:
        return DecisionLog(self.redis)

    @classmethod
    def load(cls) -> Context:
        return cls(load_config(), make_redis(), make_slack_client())


class DeploymentLock:
    """`rotator:lock:<deployment>`, held while renewed; see the module docstring."""

    def __init__(self, redis: Redis, deployment: str) -> None:
        self.lock = Lock(redis, lock_key(deployment), timeout=LOCK_TTL_S, thread_local=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.lock.acquire(blocking=False):
            return False
        self._thread = threading.Thread(target=self._renew, name="rotator-lock", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_TTL_S / 3):
            try:
                self.lock.reacquire()
            except Exception as exc:
                log.error("could not renew the deployment lock (%s)", type(exc).__name__)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.lock.release()
        except LockError:
            log.warning("the deployment lock had already expired")


# -- the thread ------------------------------------------------------------------------------


class Thread:
    """Posts in one request's thread, every text redacted."""

    def __init__(self, client: WebClient, request: Request, redactor: Redactor) -> None:
        self.client, self.request, self.redactor = client, request, redactor

    def say(self, text: str, blocks: report.Blocks | None = None, broadcast: bool = False) -> None:
        kwargs: dict[str, Any] = {
            "channel": self.request.channel,
            "thread_ts": self.request.thread_ts,
            "text": text,
        }
        if blocks:
            kwargs["blocks"] = blocks
        if broadcast:
            kwargs["reply_broadcast"] = True
        post_safely(self.client, self.redactor, **kwargs)


def announce(
    ctx: Context, dep: DeploymentConfig, request: Request, text: str, event: str, r: Redactor
) -> None:
    """A notice for users: the announce channel, and each webhook (signed, retried)."""
    post_safely(ctx.client, r, channel=dep.announce_channel, text=text)
    plan = report.plan_summary(request.plan_json)
    body = {
        "event": event,
        "deployment": dep.name,
        "request_id": request.id,
        "secret": request.secret,
        "title": plan["title"],
        "window_start": request.window_start.isoformat(),
        "text": r(text),  # before json.dumps, which would escape a value's quotes
    }
    webhooks.deliver(dep, body, downtime_s=plan["downtime_estimate_s"])


def notices_sent(store: RequestStore, request: Request) -> list[str]:
    """The request's `before-*` notices the worker has announced (their once-markers)."""
    prefix = request.notice_job_id("")
    notices = [j.removeprefix(prefix) for j in request.job_ids if j.startswith(prefix)]
    return [n for n in notices if n.startswith("before-") and store.seen(request.notice_marker(n))]


# -- jobs --------------------------------------------------------------------------------------


def run_rotation(request_id: str) -> str:
    """Rotate the request's secret and report in its thread. Returns the outcome's name."""
    return _Job(Context.load(), request_id).run(recover=False)


def recover_rotation(request_id: str) -> str:
    """Finish or undo the rotation the request left half-done (the Recover button)."""
    return _Job(Context.load(), request_id).run(recover=True)


def revoke_old_signing_key(request_id: str) -> str:
    """The revoke phase of a planned jwt-signing-key request, scheduled by its rotate phase:
    remove the old key, reported in the request's thread."""
    return _Job(Context.load(), request_id).revoke()


def send_notice(request_id: str, notice_id: str) -> None:
    """Announce the coming downtime (`notice_id` = `before-<lead>`), unless the request is no
    longer approved or scheduled; or, with `notice_id` = `called-off`, that it will not take
    place (always for a missed window; otherwise only if users had been told)."""
    ctx = Context.load()
    request = ctx.store.find(request_id)
    if notice_id == CALLED_OFF_NOTICE:
        if request is not None:
            call_off(ctx, request)
        return
    if request is None or request.status not in (RequestStatus.APPROVED, RequestStatus.SCHEDULED):
        status = request.status.value if request else "gone"
        log.info("notice %s for %s skipped: request is %s", notice_id, request_id, status)
        return
    _announce_notice(ctx, request, notice_id)


def _announce_notice(ctx: Context, request: Request, notice_id: str) -> None:
    """The `before-<lead>` notice, once (a retry or a second caller stays silent)."""
    if not ctx.store.once(request.notice_marker(notice_id), ttl_s=30 * 86400):
        return
    dep = ctx.settings.deployment(request.deployment)
    text = report.notice_text(
        deployment=dep.name,
        plan_json=request.plan_json,
        window_start=request.window_start,
        now=datetime.now(UTC),
    )
    announce(ctx, dep, request, text, "notice", Redactor())


_CALLED_OFF_WHY = {
    RequestStatus.CANCELLED: "it was cancelled",
    RequestStatus.REJECTED: "it was rejected",
    RequestStatus.EXPIRED: "its approval expired",
    RequestStatus.FAILED: "the rotation could not start",
}


def call_off(ctx: Context, request: Request) -> bool:
    """Tell users the maintenance is off, once per state the request is in. A missed window
    is always announced; any other end only when a notice had gone out. True if sent."""
    missed = request.status is RequestStatus.MISSED
    if request.status not in _CALLED_OFF_WHY and not missed:
        return False
    if not missed and not notices_sent(ctx.store, request):
        log.info("%s is %s; no notice had gone out", request.id, request.status.value)
        return False
    marker = request.notice_marker(f"called-off-{request.updated_at.timestamp()}")
    if not ctx.store.once(marker, ttl_s=30 * 86400):
        return False
    dep = ctx.settings.deployment(request.deployment)
    why = (
        request.note if (missed or request.status is RequestStatus.FAILED) and request.note else ""
    )
    text = report.called_off_notice(
        deployment=dep.name,
        plan_json=request.plan_json,
        window_start=request.window_start,
        why=report.escape(why or _CALLED_OFF_WHY.get(request.status, "it missed its window")),
    )
    announce(ctx, dep, request, text, "called_off", Redactor())
    return True


class PlanChanged(InputError):
    """The plan computed now is not the one approved."""

    def __init__(self, differences: list[str], now: PublishedPlan) -> None:
        super().__init__("the plan changed since it was approved: " + "; ".join(differences))
        self.differences, self.now = differences, now


class _Job:
    def __init__(self, ctx: Context, request_id: str) -> None:
        self.ctx = ctx
        self.request_id = request_id
        self.redactor = Redactor()

    def run(self, *, recover: bool) -> str:
        try:
            request = self.ctx.store.get(self.request_id)
        except RequestNotFound:
            log.warning("request %s not found; nothing to do", self.request_id)
            return "skipped: not found"
        dep = self.ctx.settings.deployment(request.deployment)
        thread = Thread(self.ctx.client, request, self.redactor)
        lock = DeploymentLock(self.ctx.redis, dep.name)
        if not recover:
            if request.status is RequestStatus.APPROVED:
                request = self._scheduled(request)
            if request.status is not RequestStatus.SCHEDULED:
                log.info("request %s is %s; not running it", request.id, request.status.value)
                return f"skipped: {request.status.value}"
            kept = self._keep_window(request, dep, thread)
            if kept is not None:
                return kept
            # An emergency's `before-0s` notice is enqueued with the rotation, and behind
            # it: announce it now, or a single worker would only get to it after the rotation.
            if request.notice_job_id(AT_ONCE_NOTICE) in request.job_ids:
                _announce_notice(self.ctx, request, AT_ONCE_NOTICE)
        if not lock.acquire():
            return self._refuse_locked(request, dep, thread, recover=recover)
        try:
            deployment = None
            if not recover:
                try:
                    deployment = self._approved_plan(request, dep)
                except PlanChanged as changed:
                    return self._reapprove(request, dep, thread, changed)
                except RotatorError as exc:
                    with contextlib.suppress(InvalidTransition):
                        self.ctx.store.transition(request.id, RequestStatus.RUNNING)
                    return self._did_not_run(request, dep, thread, exc, recover=False)
            wanted = RequestStatus.FAILED if recover else RequestStatus.SCHEDULED
            try:
                if request.status is not wanted:
                    raise InvalidTransition(request.id, request.status, RequestStatus.RUNNING)
                request = self.ctx.store.transition(request.id, RequestStatus.RUNNING, note="")
            except InvalidTransition as exc:
                log.info("request %s is %s; not running it", request.id, exc.current.value)
                if recover:
                    thread.say(
                        f"Request `{request.id}` is {exc.current.value}; nothing to recover."
                    )
                return f"skipped: {exc.current.value}"
            self._redraw(request)
            return self._run(request, dep, thread, deployment, recover=recover)
        finally:
            lock.release()

    def revoke(self) -> str:
        """The revoke phase: approved with the request, due now (the schedule saw to it)."""
        try:
            request = self.ctx.store.get(self.request_id)
        except RequestNotFound:
            return "skipped: not found"
        dep = self.ctx.settings.deployment(request.deployment)
        thread = Thread(self.ctx.client, request, self.redactor)
        lock = DeploymentLock(self.ctx.redis, dep.name)
        if not lock.acquire():
            thread.say(
                f":hourglass: Another rotation holds `{dep.name}`: the old signing key is "
                "revoked when the worker next gets to it."
            )
            raise RotationJobError(f"request {request.id}: deployment locked, revoke retried")
        try:
            progress = SlackThreadProgress(
                self.ctx.client,
                request.channel,
                request.thread_ts,
                title=f"Revoking the old signing key on `{dep.name}` (request `{request.id}`)",
                redactor=self.redactor,
            )
            deployment = Deployment.load(dep.project)
            self.redactor.add(secret_values(deployment.values()))
            engine = Engine(
                deployment,
                make_runtime(deployment),
                progress,
                actor=f"rotator (revoke phase of {request.id})",
                probes=probe_settings(dep, deployment),
                on_staged=self.redactor.add,
            )
            try:
                result = engine.rotate(
                    "jwt-signing-key",
                    rotation_id=f"{request.id}-revoke",
                    options=RotationOptions(phase=Phase.REVOKE),
                )
            except RecoveryNeeded as exc:
                progress.finish(":rotating_light: Revoking the old signing key stopped half-way")
                thread.say(f":rotating_light: {exc}", broadcast=True)
                return "needs_recovery"
            except RotatorError as exc:
                progress.finish(":x: The old signing key was not revoked")
                thread.say(
                    f":x: The old signing key was not revoked: {explain(exc)}", broadcast=True
                )
                return "failed"
            finished = result.outcome is Outcome.FINISHED
            heading = (
                "Verification: tokens from the old key are refused, the new key's accepted"
                if finished
                else "Verification after rollback: both keys are trusted again"
            )
            progress.finish(
                ":white_check_mark: Old signing key revoked"
                if finished
                else ":leftwards_arrow_with_hook: Revoking the old key rolled back"
            )
            thread.say(heading, report.verification_blocks(result.checks, heading=heading))
            thread.say(
                f":white_check_mark: The old signing key of `{dep.name}` is revoked: the "
                "rotation requested in this thread is complete."
                if finished
                else f":x: Revoking the old signing key failed ({result.error}) and was rolled "
                "back; both keys are still trusted.",
                broadcast=True,
            )
            return "finished" if finished else "rolled_back"
        finally:
            lock.release()

    def _schedule_revoke(
        self, request: Request, dep: DeploymentConfig, thread: Thread, deployment: Deployment
    ) -> None:
        """After a rotate phase: the old key goes once every token it signed has expired,
        at a window's start where the deployment keeps windows."""
        record = KeySchedule.read(deployment.state_dir)
        if record is None or record.finished is not Phase.ROTATE:
            return
        due = datetime.fromtimestamp(record.revoke_after, UTC)
        when = dep.next_window(due) or due
        if dep.in_window(due):
            when = due
        queue = make_queue(dep.queue_name, self.ctx.redis)
        job_id = f"revoke-{request.id}"
        enqueue(queue, REVOKE_OLD_KEY, (request.id,), job_id, when, datetime.now(UTC))
        self.ctx.store.update(request.id, job_ids=(*request.job_ids, job_id))
        thread.say(
            f":calendar: The old signing key stays trusted (verify only) until every token it "
            f"signed has expired; the worker revokes it at {when:%Y-%m-%d %H:%M} UTC."
        )

    def _keep_window(self, request: Request, dep: DeploymentConfig, thread: Thread) -> str | None:
        """None to go ahead; else why not. The worker's own clock decides, not only RQ."""
        now = datetime.now(UTC)
        if window_state(request, dep, now) is Window.EARLY:
            wait = (request.window_start - now).total_seconds()
            if wait > EARLY_WAIT_S:
                log.error("request %s is due only at %s", request.id, request.window_start)
                return "skipped: early"
            time.sleep(wait)
            now = datetime.now(UTC)
        if window_state(request, dep, now) is Window.CLOSED:
            reason = (
                f"the worker got to it at {now:%Y-%m-%d %H:%M} UTC, after the window closed "
                f"at {closing_time(request, dep)} (start plus {format_duration(dep.lateness)})"
            )
            current = get_current_job()
            report_missed(
                self.ctx.redis,
                self.ctx.client,
                dep,
                request,
                reason,
                keep_job=current.id if current else "",
            )
            return "missed"
        return None

    def _approved_plan(self, request: Request, dep: DeploymentConfig) -> Deployment:
        """The deployment as it is now, if its plan is the approved one; else PlanChanged."""
        deployment = Deployment.load(dep.project)
        now = current_plan(deployment, request.secret, rotation_options(request).mode)
        if now.digest != request.plan_digest:
            if request.plan_basis:
                approved = PlanBasis.from_json(json.loads(request.plan_basis))
                differences = approved.differences(now.basis)
            else:
                differences = ["no plan was bound to the approval"]
            raise PlanChanged(differences or ["the plan's digest differs"], now)
        return deployment

    def _reapprove(
        self, request: Request, dep: DeploymentConfig, thread: Thread, changed: PlanChanged
    ) -> str:
        """Stop before the first change; the new plan goes back for approval."""
        now = datetime.now(UTC)
        request = self.ctx.store.transition(
            request.id,
            RequestStatus.REQUESTED,
            approvals=(),
            plan_json=json.dumps(changed.now.plan.to_json()),
            plan_digest=changed.now.digest,
            plan_basis=json.dumps(changed.now.basis.to_json()),
            expires_at=now + dep.request_ttl,
            note="the plan changed since it was approved",
        )
        current = get_current_job()
        unschedule(self.ctx.redis, request.job_ids, keep=current.id if current else "")
        self._redraw(request)
        what = "\n".join(f"• {report.escape(d)}" for d in changed.differences)
        text = (
            f":warning: Request `{request.id}` did not start: the plan changed since it was "
            f"approved, so the approval no longer holds. Nothing was changed.\n{what}\n"
            f"Approve the new plan (`{changed.now.digest[:12]}`) to run it; after "
            f"{closing_time(request, dep)} it waits for the next window."
        )
        plan = changed.now.plan
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            decision_buttons(request, plan, break_glass=dep.break_glass),
        ]
        thread.say(text, blocks, broadcast=True)
        self.ctx.decisions.record(
            dep.name,
            request_id=request.id,
            actor="rotator",
            action="replan",
            secret=request.secret,
            result="requested",
            detail="; ".join(changed.differences),
        )
        return "replanned"

    def _scheduled(self, request: Request) -> Request:
        """An emergency's job is enqueued at once, before the bot marks the request
        `scheduled`: give the bot a moment to get there."""
        deadline = time.monotonic() + SCHEDULED_WAIT_S
        while request.status is RequestStatus.APPROVED and time.monotonic() < deadline:
            time.sleep(0.1)
            request = self.ctx.store.get(request.id)
        return request

    def _refuse_locked(
        self, request: Request, dep: DeploymentConfig, thread: Thread, *, recover: bool
    ) -> str:
        thread.say(
            f":no_entry: Another rotation holds the lock on `{dep.name}` right now, so request "
            f"`{request.id}` did not start; nothing was changed. "
            + ("Press Recover again once it is done." if recover else "Ask again once it is done.")
        )
        if not recover:
            with contextlib.suppress(InvalidTransition):
                self.ctx.store.transition(request.id, RequestStatus.RUNNING)
                request = self.ctx.store.transition(
                    request.id, RequestStatus.FAILED, note="another rotation held the lock"
                )
                self._redraw(request)
                call_off(self.ctx, request)
        return "refused: locked"

    def _redraw(self, request: Request) -> None:
        dep = self.ctx.settings.deployment(request.deployment)
        redraw(self.ctx.client, request, break_glass=dep.break_glass)

    def _run(
        self,
        request: Request,
        dep: DeploymentConfig,
        thread: Thread,
        deployment: Deployment | None,
        *,
        recover: bool,
    ) -> str:
        verb = "Recovering" if recover else "Rotating"
        progress = SlackThreadProgress(
            self.ctx.client,
            request.channel,
            request.thread_ts,
            title=f"{verb} `{request.secret}` on `{dep.name}` (request `{request.id}`)",
            redactor=self.redactor,
            on_posted=lambda ts: self._remember_progress(request.id, ts),
        )
        try:
            given = None if recover else self._given(request)
            deployment = deployment or Deployment.load(dep.project)
            self.redactor.add(secret_values(deployment.values()))
            engine = Engine(
                deployment,
                make_runtime(deployment),
                progress,
                actor=_actor(request),
                probes=probe_settings(dep, deployment),
                on_staged=self.redactor.add,
            )
            if recover:
                self._check_journal_owner(deployment, request)
                result = engine.recover()
            else:
                result = engine.rotate(
                    request.secret,
                    given=given,
                    rotation_id=request.id,
                    options=rotation_options(request),
                )
        except RecoveryNeeded as exc:
            progress.finish(f":rotating_light: {verb} `{request.secret}` stopped half-way")
            return self._needs_recovery(request, dep, thread, str(exc))
        except RotatorError as exc:
            progress.finish(f":x: {verb} `{request.secret}` did not go ahead")
            return self._did_not_run(request, dep, thread, exc, recover=recover)
        except Exception as exc:
            log.error("job for %s failed: %s", request.id, type(exc).__name__)
            progress.finish(f":x: {verb} `{request.secret}` failed")
            self._unexpected(request, dep, thread, exc)
            raise RotationJobError(
                f"request {request.id}: {type(exc).__name__} (see the thread and worker log)"
            ) from None
        return self._report(request, dep, thread, progress, result, deployment)

    # -- outcomes --------------------------------------------------------------------------

    def _report(
        self,
        request: Request,
        dep: DeploymentConfig,
        thread: Thread,
        progress: SlackThreadProgress,
        result: RotationResult,
        deployment: Deployment,
    ) -> str:
        finished = result.outcome is Outcome.FINISHED
        if finished:
            progress.finish(f":white_check_mark: `{request.secret}` rotated on `{dep.name}`")
            heading = "Verification: the new values work and the old ones are refused"
        else:
            progress.finish(f":leftwards_arrow_with_hook: `{request.secret}` rolled back")
            heading = "Verification after rollback: the old values are back in place"
        thread.say(heading, report.verification_blocks(result.checks, heading=heading))
        anchor = _audit_anchor(deployment)
        if finished:
            thread.say("Security checklist", report.checklist_blocks(result.checklist))
            thread.say(
                f":white_check_mark: Rotation `{request.id}` of `{request.secret}` on "
                f"`{dep.name}` finished and verified.{anchor}",
                broadcast=True,
            )
            status = RequestStatus.FINISHED
        else:
            thread.say(self._failure_text(request, dep, result) + anchor, broadcast=True)
            status = RequestStatus.ROLLED_BACK
        request = self.ctx.store.transition(request.id, status)
        self._redraw(request)
        if finished and request.secret == "jwt-signing-key":  # noqa: S105 - a secret's name
            self._schedule_revoke(request, dep, thread, deployment)
        outcome = "finished" if finished else "rolled_back"
        notice = report.outcome_notice(
            deployment=dep.name, plan_json=request.plan_json, outcome=outcome
        )
        announce(self.ctx, dep, request, notice, outcome, self.redactor)
        return outcome

    def _failure_text(self, request: Request, dep: DeploymentConfig, result: RotationResult) -> str:
        lines = [
            f":x: Rotation `{request.id}` of `{request.secret}` on `{dep.name}` failed and was "
            f"*rolled back*: the old values are back in place and verified.",
            f"*What failed:* {result.error}",
        ]
        if result.failed_service:
            lines.append(f"*Service:* `{result.failed_service}`")
        if result.failed_logs:
            lines.append(f"*Its last log lines (secrets redacted):*\n```{result.failed_logs}```")
        if dep.oncall:
            lines.append(f"{report.mentions(dep.oncall)}: please look before trying again.")
        return "\n".join(lines)

    def _needs_recovery(
        self, request: Request, dep: DeploymentConfig, thread: Thread, reason: str
    ) -> str:
        blocks = report.recovery_blocks(
            reason, project=str(dep.project), request_id=request.id, oncall=dep.oncall
        )
        thread.say(f":rotating_light: {reason}", blocks, broadcast=True)
        request = self.ctx.store.transition(
            request.id, RequestStatus.FAILED, note="left half-done: recover it"
        )
        self._redraw(request)
        notice = report.outcome_notice(
            deployment=dep.name, plan_json=request.plan_json, outcome="failed"
        )
        announce(self.ctx, dep, request, notice, "failed", self.redactor)
        return "needs_recovery"

    def _did_not_run(
        self,
        request: Request,
        dep: DeploymentConfig,
        thread: Thread,
        exc: RotatorError,
        *,
        recover: bool,
    ) -> str:
        who = f"\n{report.mentions(dep.oncall)}: please take a look." if dep.oncall else ""
        text = explain(exc)
        if not recover and "Nothing was changed" not in text:
            text += " Nothing was changed."
        thread.say(text + who, broadcast=True)
        note = f"did not start: {self.redactor(str(exc))}"[:500]
        request = self.ctx.store.transition(request.id, RequestStatus.FAILED, note=note)
        self._redraw(request)
        if not recover:
            call_off(self.ctx, request)
        return "failed"

    def _unexpected(
        self, request: Request, dep: DeploymentConfig, thread: Thread, exc: Exception
    ) -> None:
        headline = f"The worker hit an internal error ({type(exc).__name__})."
        if _journal_open(dep):
            blocks = report.recovery_blocks(
                headline, project=str(dep.project), request_id=request.id, oncall=dep.oncall
            )
            thread.say(headline, blocks, broadcast=True)
        else:
            who = f" {report.mentions(dep.oncall)}" if dep.oncall else ""
            thread.say(f":x: {headline} No rotation is left open; nothing to recover.{who}")
        with contextlib.suppress(InvalidTransition):
            request = self.ctx.store.transition(request.id, RequestStatus.FAILED, note=headline)
            self._redraw(request)

    # -- helpers ---------------------------------------------------------------------------

    def _given(self, request: Request) -> Mapping[str, str] | None:
        """Open the sealed values typed into Slack, and delete the sealed copy."""
        if not request.needs_value:
            return None
        blob = self.ctx.store.get_sealed(request.id)
        if blob is None:
            raise InputError(
                f"the value typed in for `{request.secret}` has expired or was already used; "
                "ask again with `/rotate`"
            )
        key_path = os.environ.get("ROTATOR_WORKER_KEY")
        if not key_path:
            raise InputError(
                "ROTATOR_WORKER_KEY is not set: the worker cannot open typed-in values"
            )
        try:
            values = open_values(Path(key_path).read_bytes(), blob, request_id=request.id)
        except (OSError, SealError) as exc:
            raise InputError(f"the typed-in value does not open on this worker: {exc}") from None
        finally:
            self.ctx.store.delete_sealed(request.id)
        self.redactor.add(values.values())
        return values

    def _check_journal_owner(self, deployment: Deployment, request: Request) -> None:
        state = deployment.journal.read()
        if state is not None and state.rotation_id != request.id:
            raise InputError(
                f"the open journal belongs to rotation {state.rotation_id}, not "
                f"{request.id}; run `rotator recover --project {deployment.directory}` on the host"
            )

    def _remember_progress(self, request_id: str, ts: str) -> None:
        try:
            self.ctx.store.update(request_id, progress_ts=ts)
        except Exception as exc:
            log.warning("could not store the progress message (%s)", type(exc).__name__)


def _actor(request: Request) -> str:
    approvers = ", ".join(request.approvals) or "nobody"
    glass = " (break glass)" if request.break_glass else ""
    return f"slack:{request.requester}, approved by {approvers}{glass} (request {request.id})"


def _audit_anchor(deployment: Deployment) -> str:
    """` Audit record 42, chain head abcd1234.`: the head, kept outside the host in the
    thread, so a log truncated later shows (see workers.decisions)."""
    try:
        lines = (deployment.state_dir / "audit.log").read_text().splitlines()
        head = json.loads(lines[-1]).get("hash", "") if lines else ""
    except (OSError, ValueError):
        return ""
    return f"\n_Audit log: {len(lines)} records, chain head `{head[:16]}`._" if head else ""


def _journal_open(dep: DeploymentConfig) -> bool:
    """Whether a rotation is open on the deployment (its journal exists)."""
    try:
        return Deployment.load(dep.project).journal.exists()
    except RotatorError:
        return False
