"""The Slack app: `/rotate`, the approval buttons and the modal for typed-in secrets.

Every listener acks at once and does its work in a lazy listener (Bolt runs those after the
ack, in threads), so Slack always gets its answer within 3 seconds. Listeners are short: they
parse, ask `bot.policy`, move the request in `workers.store` and hand ids to RQ.

RQ jobs, on the queue `rotator:<deployment>` (default pickle serializer, ids only):
- `workers.jobs.run_rotation(request_id)`, job id `rotate-<request_id>`, scheduled at the window
  start (emergencies: enqueued at once);
- `workers.jobs.send_notice(request_id, notice_id)`, job id `notice-<request_id>-<notice_id>`,
  where notice_id is `before-<duration>` (e.g. `before-24h`) at that lead time before the window,
  or `before-0s` at once when the window is nearer than every lead time; and `cancelled`,
  enqueued at once when a request is cancelled after one of its notices went out.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from slack_bolt import Ack, App, BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks, policy
from bot.commands import (
    CancelRequest,
    Command,
    RequestRotation,
    ShowHelp,
    ShowPlan,
    ShowStatus,
    parse_command,
)
from bot.ports import Catalogue, Planner, SecretInfo, is_critical, is_given
from core.errors import InputError, RotatorError
from core.plan import Plan
from workers.config import DeploymentConfig, Settings, format_duration, parse_zone
from workers.messages import explain
from workers.report import RECOVER_ACTION
from workers.sealed import seal_values
from workers.store import (
    CANCELLED_NOTICE,
    OPEN_STATES,
    RequestStatus,
    RequestStore,
    RotationRequest,
)

__all__ = ["ROTATION_JOB_TIMEOUT_S", "Rotator", "build_app"]

log = logging.getLogger("rotator.bot")
audit = logging.getLogger("rotator.audit")

ROTATION_JOB_TIMEOUT_S = 2 * 3600
"""RQ kills a job after this; a rotation restarts services and waits for health checks."""
RUN_ROTATION = "workers.jobs.run_rotation"
SEND_NOTICE = "workers.jobs.send_notice"
RECOVER_ROTATION = "workers.jobs.recover_rotation"
"""The notice id that tells users an announced rotation is off (`workers.jobs.send_notice`)."""


def _default_catalogue() -> Catalogue:
    return cast(Catalogue, importlib.import_module("core.catalogue"))


def _default_planner() -> Planner:
    return cast(Planner, importlib.import_module("core.service").plan_rotation)


@dataclass
class Rotator:
    """The listeners and the few steps they share. Built by `build_app`."""

    settings: Settings
    store: RequestStore
    redis: Redis
    catalogue: Catalogue
    planner: Planner
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    # -- helpers -------------------------------------------------------------------------

    def user_zone(self, client: WebClient, user: str) -> ZoneInfo:
        try:
            return parse_zone(str(client.users_info(user=user)["user"]["tz"]))
        except (SlackApiError, KeyError, TypeError, ValueError):
            return self.settings.bot.timezone

    def members(self, client: WebClient) -> policy.GroupMembers:
        def lookup(group: str) -> list[str]:
            return list(client.usergroups_users_list(usergroup=group).get("users") or [])

        return lookup

    def refuse(self, client: WebClient, body: dict[str, Any], reason: str) -> None:
        channel = body.get("channel", {}).get("id") or body.get("container", {}).get("channel_id")
        client.chat_postEphemeral(
            channel=channel,
            user=body["user"]["id"],
            text=reason,
            blocks=blocks.refusal_blocks(reason),
        )

    def redraw(self, client: WebClient, request: RotationRequest) -> None:
        if not request.thread_ts:
            return
        plan = Plan.from_json(json.loads(request.plan_json))
        dep = self.settings.deployment(request.deployment)
        client.chat_update(
            channel=request.channel,
            ts=request.thread_ts,
            text=blocks.approval_text(request, plan),
            blocks=blocks.approval_blocks(request, plan, break_glass=dep.break_glass),
        )

    def in_thread(
        self, client: WebClient, request: RotationRequest, text: str, *, broadcast: bool = False
    ) -> None:
        client.chat_postMessage(
            channel=request.channel,
            thread_ts=request.thread_ts,
            text=text,
            reply_broadcast=broadcast,
        )

    # -- /rotate -------------------------------------------------------------------------

    def ack_command(self, ack: Ack) -> None:
        ack()

    def on_command(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user = body["user_id"]
        try:
            command = parse_command(
                body.get("text", ""),
                settings=self.settings,
                secret_names=list(self.catalogue.secret_names()),
                user_zone=self.user_zone(client, user),
                now=self.clock(),
            )
            self.run_command(command, body, respond, client)
        except RotatorError as exc:
            respond(text=explain(exc), response_type="ephemeral")
        except Exception as exc:
            # Only the type: a foreign exception's message or traceback locals can quote
            # the .env the planner read (the @app.error handler does the same).
            log.error("/rotate failed: %s", type(exc).__name__)
            respond(text=":x: Something went wrong; the bot's log has the details.")

    def run_command(
        self, command: Command, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        if isinstance(command, ShowHelp):
            respond(text="How to use /rotate", blocks=blocks.help_blocks(self.settings.bot.command))
        elif isinstance(command, ShowStatus):
            self.expire_due(client)
            found = self.store.list_requests(statuses=OPEN_STATES)
            respond(
                text=f"{len(found)} open rotation request(s)", blocks=blocks.status_blocks(found)
            )
        elif isinstance(command, ShowPlan):
            plan = self.planner(
                self.settings.deployment(command.deployment).project, command.secret
            )
            respond(text=f"Plan: rotate {plan.title}", blocks=blocks.plan_blocks(plan))
        elif isinstance(command, CancelRequest):
            self.cancel(command.request_id, body["user_id"], respond, client)
        else:
            self.request(command, body, respond, client)

    def request(
        self, command: RequestRotation, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        user, dep = body["user_id"], self.settings.deployment(command.deployment)
        decision = policy.may_request(user, dep)
        if not decision:
            raise InputError(decision.reason)
        secret = self.catalogue.get_secret(command.secret)
        plan = self.planner(dep.project, command.secret)
        tz = self.user_zone(client, user).key
        if is_given(secret):
            self.open_given_modal(command, secret, body["trigger_id"], tz, dep, client)
            return
        request = self.create(command, user, tz, secret, plan)
        self.post_approval(request, plan, client)
        respond(
            text=f"Request `{request.id}` posted in <#{dep.channel}>.", response_type="ephemeral"
        )

    def create(
        self, command: RequestRotation, user: str, tz: str, secret: SecretInfo, plan: Plan
    ) -> RotationRequest:
        dep = self.settings.deployment(command.deployment)
        critical = is_critical(secret)
        now = self.clock()
        return self.store.create(
            RotationRequest(
                id="",
                deployment=dep.name,
                secret=command.secret,
                requester=user,
                reason=command.reason,
                window_start=command.window_start,
                created_at=now,
                expires_at=now + dep.request_ttl,
                emergency=command.emergency,
                critical=critical,
                needs_value=is_given(secret),
                approvals_needed=policy.approvals_needed(
                    dep, critical=critical, emergency=command.emergency
                ),
                requester_tz=tz,
                plan_json=json.dumps(plan.to_json()),
            )
        )

    def post_approval(
        self, request: RotationRequest, plan: Plan, client: WebClient
    ) -> RotationRequest:
        dep = self.settings.deployment(request.deployment)
        posted = client.chat_postMessage(
            channel=dep.channel,
            text=blocks.approval_text(request, plan),
            blocks=blocks.approval_blocks(request, plan, break_glass=dep.break_glass),
        )
        return self.store.update(
            request.id, channel=str(posted["channel"]), thread_ts=str(posted["ts"])
        )

    def cancel(self, request_id: str, user: str, respond: Respond, client: WebClient) -> None:
        now, request = self.clock(), self.store.get(request_id)
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_cancel(user, request, dep, members=self.members(client))
        if not decision:
            raise InputError(decision.reason)
        request = self.store.transition(request_id, RequestStatus.CANCELLED, decided_by=user)
        removed = self.unschedule(request)
        self.store.delete_sealed(request_id)
        self.redraw(client, request)
        text = f":no_entry_sign: Cancelled by <@{user}>; {removed} job(s) removed."
        if self.notices_sent(request):
            queue = Queue(dep.queue_name, connection=self.redis)
            job_id = request.notice_job_id(CANCELLED_NOTICE)
            self.enqueue(queue, SEND_NOTICE, (request.id, CANCELLED_NOTICE), job_id, now, now)
            text += f" The notices went out, so <#{dep.announce_channel}> hears it is off."
        self.in_thread(client, request, text)
        respond(text=f"Cancelled `{request_id}`.", response_type="ephemeral")

    def notices_sent(self, request: RotationRequest) -> list[str]:
        """The request's notices the worker has already announced (`send_notice`'s markers)."""
        prefix = request.notice_job_id("")
        notices = [j.removeprefix(prefix) for j in request.job_ids if j.startswith(prefix)]
        return [n for n in notices if self.store.seen(request.notice_marker(n))]

    def expire_due(self, client: WebClient) -> None:
        now = self.clock()
        for request in self.store.list_requests(statuses={RequestStatus.REQUESTED}):
            if policy.is_expired(request, now):
                self.expire(client, request)

    def expire(self, client: WebClient, request: RotationRequest) -> None:
        request = self.store.transition(request.id, RequestStatus.EXPIRED)
        self.store.delete_sealed(request.id)
        self.redraw(client, request)

    # -- buttons ---------------------------------------------------------------------------

    def ack_action(self, ack: Ack) -> None:
        ack()

    def on_approve(self, body: dict[str, Any], client: WebClient) -> None:
        try:
            self._approve(body, client)
        except RotatorError as exc:
            self.refuse(client, body, explain(exc))

    def _approve(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        now = self.clock()
        decision = policy.may_approve(user, request, dep, now=now, members=self.members(client))
        if policy.is_expired(request, now):
            self.expire(client, request)
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        result = self.store.add_approval(request.id, user)
        if not result.added:
            self.refuse(
                client, body, f"Request {request.id} is no longer waiting for you; nothing changed."
            )
            return
        self.in_thread(
            client, result.request, f":white_check_mark: Approved by <@{user}> ({decision.reason})."
        )
        if result.quorum_reached:
            self.schedule(client, result.request)
        else:
            self.redraw(client, result.request)

    def on_reject(self, body: dict[str, Any], client: WebClient) -> None:
        try:
            self._reject(body, client)
        except RotatorError as exc:
            self.refuse(client, body, explain(exc))

    def _reject(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_reject(user, request, dep, members=self.members(client))
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        request = self.store.transition(request.id, RequestStatus.REJECTED, decided_by=user)
        self.store.delete_sealed(request.id)
        self.redraw(client, request)
        self.in_thread(client, request, f":x: Rejected by <@{user}>. Nothing will change.")

    def on_break_glass(self, body: dict[str, Any], client: WebClient) -> None:
        try:
            self._break_glass(body, client)
        except RotatorError as exc:
            self.refuse(client, body, explain(exc))

    def _break_glass(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_break_glass(user, request, dep, now=self.clock())
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        request = self.store.transition(
            request.id, RequestStatus.APPROVED, approvals=(user,), break_glass=True
        )
        audit.warning(
            "break-glass: %s self-approved %s (%s on %s)",
            user,
            request.id,
            request.secret,
            dep.name,
        )
        loud = (
            f":rotating_light: BREAK GLASS: <@{user}> self-approved emergency rotation "
            f"`{request.id}` of `{request.secret}` on `{dep.name}`: {request.reason}"
        )
        self.in_thread(client, request, loud, broadcast=True)
        client.chat_postMessage(channel=dep.announce_channel, text=loud)
        self.schedule(client, request)

    def on_recover(self, body: dict[str, Any], client: WebClient) -> None:
        """The thread's Recover button (posted by the worker): enqueue `recover_rotation`."""
        try:
            self._recover(body, client)
        except RotatorError as exc:
            self.refuse(client, body, explain(exc))

    def _recover(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_recover(user, request, dep, members=self.members(client))
        if not decision.allowed:
            self.refuse(client, body, decision.reason)
            return
        if not self.store.once(f"recover:{request.id}:{request.updated_at.timestamp()}"):
            return  # a double click
        queue = Queue(dep.queue_name, connection=self.redis)
        job_id = f"recover-{request.id}-{int(self.clock().timestamp())}"
        audit.warning("recover: %s asked to recover %s on %s", user, request.id, dep.name)
        self.in_thread(client, request, f":wrench: <@{user}> started recovery; progress follows.")
        queue.enqueue(RECOVER_ROTATION, request.id, job_id=job_id, job_timeout=3600)

    # -- the modal for given secrets ------------------------------------------------------

    def open_given_modal(
        self,
        command: RequestRotation,
        secret: SecretInfo,
        trigger_id: str,
        tz: str,
        dep: DeploymentConfig,
        client: WebClient,
    ) -> None:
        if dep.worker_public_key is None:
            raise InputError(
                f"`{secret.name}` needs a value typed in, and `{dep.name}` has no "
                "worker_public_key to seal it with. Set one in the config, or run "
                f"`rotator rotate {secret.name}` on the host."
            )
        meta = {
            "secret": command.secret,
            "deployment": command.deployment,
            "window_start": command.window_start.isoformat(),
            "emergency": "1" if command.emergency else "",
            "reason": command.reason,
            "tz": tz,
        }
        client.views_open(
            trigger_id=trigger_id,
            view=blocks.given_value_view(secret.title, secret.given_keys, meta),
        )

    def ack_given(self, ack: Ack, view: dict[str, Any]) -> None:
        values = _given_values(view)
        empty = {
            f"{blocks.GIVEN_BLOCK_PREFIX}{k}": "Type the new value."
            for k, v in values.items()
            if not v.strip()
        }
        if empty:
            ack(response_action="errors", errors=empty)
        else:
            ack()

    def on_given(self, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        meta, user = json.loads(view["private_metadata"]), body["user"]["id"]
        values = _given_values(view)
        if not values or not all(v.strip() for v in values.values()):
            return  # refused in ack_given
        command = RequestRotation(
            meta["secret"],
            meta["deployment"],
            datetime.fromisoformat(meta["window_start"]),
            bool(meta["emergency"]),
            meta["reason"],
        )
        dep = self.settings.deployment(command.deployment)
        assert dep.worker_public_key is not None  # noqa: S101 -- checked before the modal opened
        secret = self.catalogue.get_secret(command.secret)
        plan = self.planner(dep.project, command.secret)
        request = self.create(command, user, meta["tz"], secret, plan)
        blob = seal_values(dep.worker_public_key.read_bytes(), values, request_id=request.id)
        ttl = command.window_start - self.clock() + dep.request_ttl + timedelta(days=1)
        self.store.put_sealed(request.id, blob, int(ttl.total_seconds()))
        self.post_approval(request, plan, client)
        client.chat_postEphemeral(
            channel=dep.channel,
            user=user,
            text=f"Request `{request.id}` posted; the value is sealed for the worker.",
        )

    # -- scheduling --------------------------------------------------------------------------

    def schedule(self, client: WebClient, request: RotationRequest) -> None:
        """Enqueue the rotation and its notices; only the caller that reached quorum gets here."""
        dep = self.settings.deployment(request.deployment)
        queue = Queue(dep.queue_name, connection=self.redis)
        now = self.clock()
        job_ids = [
            self.enqueue(
                queue, RUN_ROTATION, (request.id,), request.job_id, request.window_start, now
            )
        ]
        leads = [lead for lead in dep.notice_lead_times if request.window_start - lead > now]
        notices = [f"before-{format_duration(lead)}" for lead in leads] or ["before-0s"]
        for notice, lead in zip(notices, leads or [timedelta(0)], strict=True):
            at = request.window_start - lead if leads else now
            job_id = request.notice_job_id(notice)
            job_ids.append(self.enqueue(queue, SEND_NOTICE, (request.id, notice), job_id, at, now))
        request = self.store.transition(request.id, RequestStatus.SCHEDULED, job_ids=tuple(job_ids))
        self.redraw(client, request)
        when = (
            "now"
            if request.window_start <= now
            else blocks.format_when(request.window_start, ZoneInfo(request.requester_tz))
        )
        self.in_thread(
            client, request, f":calendar: Scheduled for {when}. Progress will be reported here."
        )

    def enqueue(
        self,
        queue: Queue,
        func: str,
        args: tuple[str, ...],
        job_id: str,
        at: datetime,
        now: datetime,
    ) -> str:
        # RQ's scheduler keeps whole seconds (it truncates): round up, never start early.
        if at > now and at.microsecond:
            at = at.replace(microsecond=0) + timedelta(seconds=1)
        try:
            timeout = ROTATION_JOB_TIMEOUT_S if func == RUN_ROTATION else 300
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

    def unschedule(self, request: RotationRequest) -> int:
        removed = 0
        for job_id in {request.job_id, *request.job_ids}:
            try:
                Job.fetch(job_id, connection=self.redis).delete()
                removed += 1
            except NoSuchJobError:
                continue
        return removed

    # -- retries -----------------------------------------------------------------------------

    def drop_retries(
        self, body: dict[str, Any], next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        """Slack retries and replays carry the same event or trigger id: answer them, do nothing."""
        marker = body.get("event_id") or body.get("trigger_id")
        if isinstance(marker, str) and marker and not self.store.once(f"slack:{marker}"):
            return BoltResponse(status=200, body="")
        return next()


def _given_values(view: dict[str, Any]) -> dict[str, str]:
    state = view.get("state", {}).get("values", {})
    prefix = blocks.GIVEN_BLOCK_PREFIX
    return {
        block_id[len(prefix) :]: str(inputs.get("value", {}).get("value") or "")
        for block_id, inputs in state.items()
        if block_id.startswith(prefix)
    }


def build_app(
    settings: Settings,
    *,
    client: WebClient | None = None,
    redis: Redis,
    signing_secret: str | None = None,
    catalogue: Catalogue | None = None,
    planner: Planner | None = None,
    process_before_response: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> App:
    """The Bolt app. Defaults: `SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN`, `SLACK_API_URL`,
    `core.catalogue` and `core.service.plan_rotation`."""
    if client is None:
        base_url = os.environ.get("SLACK_API_URL") or WebClient.BASE_URL
        client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=base_url)
    app = App(
        client=client,
        signing_secret=signing_secret or os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=process_before_response,
    )
    bot = Rotator(
        settings,
        RequestStore(redis),
        redis,
        catalogue or _default_catalogue(),
        planner or _default_planner(),
    )
    if clock is not None:
        bot.clock = clock
    app.use(bot.drop_retries)
    app.command(settings.bot.command)(ack=bot.ack_command, lazy=[bot.on_command])
    app.action(blocks.APPROVE_ACTION)(ack=bot.ack_action, lazy=[bot.on_approve])
    app.action(blocks.REJECT_ACTION)(ack=bot.ack_action, lazy=[bot.on_reject])
    app.action(blocks.BREAK_GLASS_ACTION)(ack=bot.ack_action, lazy=[bot.on_break_glass])
    app.action(RECOVER_ACTION)(ack=bot.ack_action, lazy=[bot.on_recover])
    app.view(blocks.GIVEN_VALUE_VIEW)(ack=bot.ack_given, lazy=[bot.on_given])

    @app.error
    def on_error(error: Exception, body: dict[str, Any], logger: logging.Logger) -> None:
        logger.error("listener failed: %s (%s)", type(error).__name__, body.get("type", "command"))

    return app
