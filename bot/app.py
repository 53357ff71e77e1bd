"""The Slack app: `/rotate`, the approval buttons, the modal for typed-in secrets, the App Home.

Every listener acks in the request thread (Bolt's `process_before_response`) and hands its
work, the request's body and the client, to a small executor of the bot's own: Slack gets
its answer in well under a millisecond of Python whatever earlier commands are still doing.
(Bolt's own lazy listeners deep-copy the whole request first, a millisecond each, which is
most of an ack's cost at 50 concurrent commands.) Listeners are short: they parse,
ask `bot.policy`, move the request in `workers.store` and hand ids to RQ
(`workers.schedule`). The bot never reads the Supabase directory: plans come from the
deployment's worker (`workers.plans`).

A listener that fails answers the person who clicked or typed, ephemerally, with what to do
(e.g. a Slack scope the app lacks); decisions go to the audit log (`workers.decisions`).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis import Redis
from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

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
from bot.ports import Catalogue, SecretInfo, is_critical, is_given
from core.catalogue import Mode
from core.errors import InputError, RotatorError
from core.plan import Plan
from workers.approval import approval_blocks, approval_text, format_when, plan_blocks, redraw
from workers.config import DeploymentConfig, Settings, parse_zone
from workers.connection import env_secret, make_queue, make_slack_client
from workers.decisions import DecisionLog
from workers.messages import explain
from workers.plans import PlanBook, PublishedPlan
from workers.report import RECOVER_ACTION, escape
from workers.schedule import (
    RECOVER_ROTATION,
    enqueue_called_off,
    schedule_request,
    unschedule,
)
from workers.sealed import seal_values
from workers.store import ENDED_STATES, OPEN_STATES, RequestStatus, RequestStore, RotationRequest
from workers.windows import Window, closing_time, report_missed, window_state

__all__ = ["LAZY_THREADS", "Rotator", "build_app"]

log = logging.getLogger("rotator.bot")

LAZY_THREADS = 2
"""The work after an ack runs on this many threads: few, so that they do not crowd the acks
out of the interpreter lock (the work is mostly waiting on Slack and Redis anyway)."""

_SCOPE_HINT = {
    "missing_scope": "the Slack app lacks the `{needed}` scope: add it under OAuth & "
    "Permissions (slack/manifest.yml lists every scope rotator needs) and reinstall the app",
    "not_in_channel": "the bot is not in that channel: invite it with `/invite @rotator`",
    "channel_not_found": "the configured channel does not exist or the bot cannot see it",
    "ratelimited": "Slack is rate-limiting the app; try again in a minute",
}


def _default_catalogue() -> Catalogue:
    return cast(Catalogue, importlib.import_module("core.catalogue"))


def slack_error_text(exc: SlackApiError) -> str:
    """A Slack refusal in words: what it means and what to do."""
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    error = str(data.get("error") or "unknown_error")
    hint = _SCOPE_HINT.get(error, "see the bot's log")
    return f"Slack refused a call ({error}): " + hint.format(needed=data.get("needed", "?"))


@dataclass
class Rotator:
    """The listeners and the few steps they share. Built by `build_app`."""

    settings: Settings
    store: RequestStore
    redis: Redis
    catalogue: Catalogue
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def plans(self) -> PlanBook:
        return PlanBook(self.redis)

    @property
    def decisions(self) -> DecisionLog:
        return DecisionLog(self.redis)

    # -- helpers -------------------------------------------------------------------------

    def user_info(self, client: WebClient, user: str) -> dict[str, Any]:
        try:
            return dict(client.users_info(user=user)["user"])
        except (SlackApiError, KeyError, TypeError):
            return {}

    def user_zone(self, info: dict[str, Any]) -> ZoneInfo:
        try:
            return parse_zone(str(info["tz"]))
        except (KeyError, ValueError):
            return self.settings.bot.timezone

    def members(self, client: WebClient) -> policy.GroupMembers:
        def lookup(group: str) -> list[str]:
            return list(client.usergroups_users_list(usergroup=group).get("users") or [])

        return lookup

    def tell(self, client: WebClient, body: dict[str, Any], text: str) -> None:
        """An ephemeral answer to whoever clicked or typed; by response_url when there is
        one (it needs no scope), else in the channel, else as a direct message."""
        user = str((body.get("user") or {}).get("id") or body.get("user_id"))
        response_url = body.get("response_url")
        blocks_ = [b.to_dict() for b in blocks.refusal_blocks(text)]
        try:
            if response_url:
                WebhookClient(response_url).send(
                    text=text, blocks=blocks_, response_type="ephemeral", replace_original=False
                )
                return
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
                "channel_id"
            )
            if channel:
                client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks_)
            else:
                client.chat_postMessage(channel=user, text=text, blocks=blocks_)
        except Exception as exc:
            log.error("could not answer %s (%s)", user, type(exc).__name__)

    def refuse(self, client: WebClient, body: dict[str, Any], reason: str) -> None:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        user = body["user"]["id"]
        refusal = [b.to_dict() for b in blocks.refusal_blocks(reason)]
        if channel:
            client.chat_postEphemeral(channel=channel, user=user, text=reason, blocks=refusal)
        else:  # the App Home has no channel
            client.chat_postMessage(channel=user, text=reason, blocks=refusal)

    def guarded(
        self, listener: Callable[[dict[str, Any], WebClient], None]
    ) -> Callable[[dict[str, Any], WebClient], None]:
        """A lazy listener whose failures reach the person, not only the log."""

        def run(body: dict[str, Any], client: WebClient) -> None:
            # Slack retries and replays carry the same event or trigger id: the first one
            # does the work. Checked here, after the ack, to keep Redis out of the ack path.
            marker = body.get("event_id") or body.get("trigger_id")
            if isinstance(marker, str) and marker and not self.store.once(f"slack:{marker}"):
                return
            try:
                listener(body, client)
            except RotatorError as exc:
                self.tell(client, body, explain(exc))
            except SlackApiError as exc:
                log.error("Slack refused a call: %s", exc.response.get("error"))
                self.tell(client, body, f":warning: {slack_error_text(exc)}. Nothing changed.")
            except Exception as exc:
                # Only the type: a foreign exception's message can quote what it handled.
                log.error("listener failed: %s", type(exc).__name__)
                self.tell(
                    client,
                    body,
                    f":x: Something went wrong ({type(exc).__name__}); the bot's log has the "
                    "details. Nothing was changed.",
                )

        run.__name__ = listener.__name__  # Bolt tells lazy listeners apart by name
        return run

    def in_thread(
        self, client: WebClient, request: RotationRequest, text: str, *, broadcast: bool = False
    ) -> None:
        client.chat_postMessage(
            channel=request.channel,
            thread_ts=request.thread_ts,
            text=text,
            reply_broadcast=broadcast,
        )

    def redraw(self, client: WebClient, request: RotationRequest) -> None:
        dep = self.settings.deployment(request.deployment)
        redraw(client, request, break_glass=dep.break_glass)

    def record(self, request: RotationRequest, user: str, action: str, detail: str = "") -> None:
        self.decisions.record(
            request.deployment,
            request_id=request.id,
            actor=user,
            action=action,
            secret=request.secret,
            result=request.status.value,
            detail=detail,
        )

    def plan_for(self, deployment: str, secret: str, *, emergency: bool = False) -> PublishedPlan:
        """The worker's plan; an emergency's is a compromise rotation (sessions revoked,
        the signing key replaced at once), which is what the worker will run."""
        mode = Mode.COMPROMISE if emergency else Mode.PLANNED
        return self.plans.get(deployment, secret, now=self.clock(), mode=mode)

    # -- /rotate -------------------------------------------------------------------------

    def on_command(self, body: dict[str, Any], client: WebClient) -> None:
        user = body["user_id"]
        info = self.user_info(client, user)
        command = parse_command(
            body.get("text", ""),
            settings=self.settings,
            secret_names=list(self.catalogue.secret_names()),
            user_zone=self.user_zone(info),
            now=self.clock(),
        )
        self.run_command(command, body, client, info)

    def respond(self, body: dict[str, Any], text: str, blocks_: list[Any] | None = None) -> None:
        """An ephemeral answer through the command's response_url."""
        WebhookClient(body["response_url"]).send(
            text=text,
            blocks=[b.to_dict() if hasattr(b, "to_dict") else b for b in blocks_ or []] or None,
            response_type="ephemeral",
        )

    def run_command(
        self, command: Command, body: dict[str, Any], client: WebClient, info: dict[str, Any]
    ) -> None:
        if isinstance(command, ShowHelp):
            self.respond(body, "How to use /rotate", blocks.help_blocks(self.settings.bot.command))
        elif isinstance(command, ShowStatus):
            self.status(body, client, info)
        elif isinstance(command, ShowPlan):
            published = self.plan_for(command.deployment, command.secret)
            plan_blocks = approval_plan_blocks(published)
            self.respond(body, f"Plan: rotate {published.plan.title}", plan_blocks)
        elif isinstance(command, CancelRequest):
            self.cancel(command.request_id, body, client)
        else:
            self.request(command, body, client, info)

    def status(self, body: dict[str, Any], client: WebClient, info: dict[str, Any]) -> None:
        """The open requests of the deployments whose channel this is, for their people."""
        user, channel = body["user_id"], body.get("channel_id", "")
        here = [d for d in self.settings.deployments.values() if channel in (d.channel,)]
        if not here:
            channels = ", ".join(f"<#{d.channel}>" for d in self.settings.deployments.values())
            raise InputError(f"No deployment has its requests in this channel; ask in {channels}.")
        guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
        allowed = []
        for dep in here:
            if policy.may_view(user, dep, members=self.members(client), is_guest=guest):
                allowed.append(dep.name)
        if not allowed:
            raise InputError(
                "Only the requesters and approvers of this channel's deployments "
                "see their rotations."
            )
        found = [
            r for r in self.store.list_requests(statuses=OPEN_STATES) if r.deployment in allowed
        ]
        self.respond(
            body,
            f"{len(found)} open rotation request(s)",
            blocks.status_blocks(found, allowed),
        )

    def request(
        self,
        command: RequestRotation,
        body: dict[str, Any],
        client: WebClient,
        info: dict[str, Any],
    ) -> None:
        user, dep = body["user_id"], self.settings.deployment(command.deployment)
        decision = policy.may_request(user, dep)
        if not decision:
            raise InputError(decision.reason)
        secret = self.catalogue.get_secret(command.secret)
        published = self.plan_for(dep.name, command.secret, emergency=command.emergency)
        tz = self.user_zone(info).key
        if is_given(secret):
            self.open_given_modal(command, secret, body["trigger_id"], tz, dep, client)
            return
        request = self.post_and_store(
            self.new_request(command, user, tz, secret, published), client
        )
        self.respond(body, f"Request `{request.id}` posted in <#{dep.channel}>.")

    def new_request(
        self,
        command: RequestRotation,
        user: str,
        tz: str,
        secret: SecretInfo,
        published: PublishedPlan,
    ) -> RotationRequest:
        dep = self.settings.deployment(command.deployment)
        critical = is_critical(secret)
        now = self.clock()
        return RotationRequest(
            id=self.store.new_id(),
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
            plan_json=json.dumps(published.plan.to_json()),
            plan_digest=published.digest,
            plan_basis=json.dumps(published.basis.to_json()),
            incident=command.incident,
        )

    def post_and_store(
        self, request: RotationRequest, client: WebClient, sealed: bytes | None = None
    ) -> RotationRequest:
        """Post the approval message first, then store the request with its thread; a post
        that fails stores nothing, and a store that fails takes the message back."""
        dep = self.settings.deployment(request.deployment)
        plan = Plan.from_json(json.loads(request.plan_json))
        posted = client.chat_postMessage(
            channel=dep.channel,
            text=approval_text(request, plan),
            blocks=approval_blocks(request, plan, break_glass=dep.break_glass),
        )
        request = RotationRequest(
            **{
                **request.__dict__,
                "channel": str(posted["channel"]),
                "thread_ts": str(posted["ts"]),
            }
        )
        try:
            request = self.store.create(request)
            if sealed is not None:
                ttl = request.window_start - self.clock() + dep.request_ttl + timedelta(days=1)
                self.store.put_sealed(request.id, sealed, int(ttl.total_seconds()))
        except Exception:
            self.store.delete(request.id)
            client.chat_delete(channel=request.channel, ts=request.thread_ts)
            raise
        self.record(request, request.requester, "request", request.reason)
        return request

    def cancel(self, request_id: str, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user_id"], self.store.get(request_id)
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_cancel(user, request, dep, members=self.members(client))
        if not decision:
            raise InputError(decision.reason)
        request = self.store.transition(request_id, RequestStatus.CANCELLED, decided_by=user)
        removed = unschedule(self.redis, [request.job_id, *request.job_ids])
        self.store.delete_sealed(request_id)
        self.redraw(client, request)
        self.record(request, user, "cancel")
        enqueue_called_off(self.redis, dep, request)
        self.in_thread(
            client,
            request,
            f":no_entry_sign: Cancelled by <@{user}>; {removed} job(s) removed. If users "
            f"were warned, <#{dep.announce_channel}> hears it is off.",
        )
        self.respond(body, f"Cancelled `{request_id}`.")

    # -- buttons ---------------------------------------------------------------------------

    def on_approve(self, body: dict[str, Any], client: WebClient) -> None:
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
        self.record(result.request, user, "approve", decision.reason)
        self.in_thread(
            client, result.request, f":white_check_mark: Approved by <@{user}> ({decision.reason})."
        )
        if result.quorum_reached:
            self.schedule(client, result.request)
        else:
            self.redraw(client, result.request)

    def on_reject(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_reject(user, request, dep, members=self.members(client))
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        request = self.store.transition(request.id, RequestStatus.REJECTED, decided_by=user)
        self.store.delete_sealed(request.id)
        self.redraw(client, request)
        self.record(request, user, "reject")
        enqueue_called_off(self.redis, dep, request)
        self.in_thread(client, request, f":x: Rejected by <@{user}>. Nothing will change.")

    def on_break_glass(self, body: dict[str, Any], client: WebClient) -> None:
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_break_glass(user, request, dep, now=self.clock())
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        request = self.store.transition(
            request.id, RequestStatus.APPROVED, approvals=(user,), break_glass=True
        )
        self.record(request, user, "break-glass", request.reason)
        loud = (
            f":rotating_light: BREAK GLASS: <@{user}> self-approved emergency rotation "
            f"`{request.id}` of `{request.secret}` on `{dep.name}`: {escape(request.reason)}"
        )
        self.in_thread(client, request, loud, broadcast=True)
        client.chat_postMessage(channel=dep.announce_channel, text=loud)
        self.schedule(client, request)

    def on_recover(self, body: dict[str, Any], client: WebClient) -> None:
        """The thread's Recover button (posted by the worker): enqueue `recover_rotation`."""
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_recover(user, request, dep, members=self.members(client))
        if not decision.allowed:
            self.refuse(client, body, decision.reason)
            return
        if not self.store.once(f"recover:{request.id}:{request.updated_at.timestamp()}"):
            return  # a double click
        job_id = f"recover-{request.id}-{int(self.clock().timestamp())}"
        self.record(request, user, "recover")
        self.in_thread(client, request, f":wrench: <@{user}> started recovery; progress follows.")
        make_queue(dep.queue_name, self.redis).enqueue(
            RECOVER_ROTATION, request.id, job_id=job_id, job_timeout=3600
        )

    def on_next_window(self, body: dict[str, Any], client: WebClient) -> None:
        """A missed request, asked again for the deployment's next window."""
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_pick_next_window(user, request, dep, members=self.members(client))
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        now = self.clock()
        start = dep.next_window(now) or now + timedelta(hours=1)
        request = self.store.transition(
            request.id,
            RequestStatus.REQUESTED,
            window_start=start.replace(microsecond=0),
            approvals=(),
            expires_at=now + dep.request_ttl,
            emergency=False,
            note="",
        )
        self.redraw(client, request)
        self.record(request, user, "next-window", start.isoformat())
        when = format_when(request.window_start, ZoneInfo(request.requester_tz))
        self.in_thread(
            client,
            request,
            f":calendar: <@{user}> picked the next window, {when}; it needs approval again.",
        )

    def on_run_now(self, body: dict[str, Any], client: WebClient) -> None:
        """A missed request, run at once by someone who may approve it."""
        user, request = body["user"]["id"], self.store.get(body["actions"][0]["value"])
        dep = self.settings.deployment(request.deployment)
        decision = policy.may_run_now(user, request, dep, members=self.members(client))
        if not decision:
            self.refuse(client, body, decision.reason)
            return
        request = self.store.transition(
            request.id,
            RequestStatus.APPROVED,
            window_start=self.clock().replace(microsecond=0),
            decided_by=user,
            note="",
        )
        self.record(request, user, "run-now")
        self.in_thread(client, request, f":arrow_forward: <@{user}> runs it now.")
        self.schedule(client, request)

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
            "incident": command.incident,
            "tz": tz,
        }
        client.views_open(
            trigger_id=trigger_id,
            view=blocks.given_value_view(secret.title, secret.given_keys, meta),
        )

    def ack_given(self, ack: Ack, view: dict[str, Any]) -> bool:
        """Ack the modal: its errors, or closed. True when the values are there to use."""
        values = _given_values(view)
        empty = {
            f"{blocks.GIVEN_BLOCK_PREFIX}{k}": "Type the new value."
            for k, v in values.items()
            if not v.strip()
        }
        if empty:
            ack(response_action="errors", errors=empty)
            return False
        ack()
        return bool(values)

    def on_given(self, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
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
            meta.get("incident", ""),
        )
        dep = self.settings.deployment(command.deployment)
        if dep.worker_public_key is None:
            raise InputError(f"`{dep.name}` has no worker_public_key to seal the value with.")
        secret = self.catalogue.get_secret(command.secret)
        published = self.plan_for(dep.name, command.secret, emergency=command.emergency)
        request = self.new_request(command, user, meta["tz"], secret, published)
        blob = seal_values(dep.worker_public_key.read_bytes(), values, request_id=request.id)
        request = self.post_and_store(request, client, sealed=blob)
        client.chat_postEphemeral(
            channel=dep.channel,
            user=user,
            text=f"Request `{request.id}` posted; the value is sealed for the worker.",
        )

    # -- scheduling --------------------------------------------------------------------------

    def schedule(self, client: WebClient, request: RotationRequest) -> None:
        """Enqueue the rotation and its notices, inside the window; only the caller that
        reached quorum gets here. Too late for the window: missed, and said so."""
        dep = self.settings.deployment(request.deployment)
        now = self.clock()
        if request.emergency:
            request = self.store.update(request.id, window_start=now.replace(microsecond=0))
        if window_state(request, dep, now) is Window.CLOSED:
            reason = (
                f"the last approval came at {now:%Y-%m-%d %H:%M} UTC, after the window closed "
                f"at {closing_time(request, dep)}"
            )
            report_missed(self.redis, client, dep, request, reason)
            return
        job_ids = schedule_request(self.redis, dep, request, now)
        request = self.store.transition(request.id, RequestStatus.SCHEDULED, job_ids=job_ids)
        self.redraw(client, request)
        self.record(request, request.approvals[-1] if request.approvals else "", "schedule")
        when = (
            "now"
            if request.window_start <= now
            else format_when(request.window_start, ZoneInfo(request.requester_tz))
        )
        self.in_thread(
            client, request, f":calendar: Scheduled for {when}. Progress will be reported here."
        )

    def expire(self, client: WebClient, request: RotationRequest) -> None:
        request = self.store.transition(request.id, RequestStatus.EXPIRED)
        self.store.delete_sealed(request.id)
        self.redraw(client, request)
        self.record(request, "rotator", "expire")

    # -- the App Home ----------------------------------------------------------------------

    def on_home_opened(self, body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        info = self.user_info(client, user)
        guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
        now = self.clock()
        rows = []
        requests = self.store.list_requests(limit=200)
        for dep in self.settings.deployments.values():
            if not policy.may_view(user, dep, members=self.members(client), is_guest=guest):
                continue
            mine = [r for r in requests if r.deployment == dep.name]
            opening = dep.next_window(now)
            windows = format_when(opening, ZoneInfo("UTC")) if opening else "any time"
            rows.append(
                (
                    dep.name,
                    [r for r in mine if r.status in OPEN_STATES],
                    [r for r in mine if r.status in ENDED_STATES],
                    windows,
                )
            )
        client.views_publish(user_id=user, view=blocks.home_view(rows, user=user))


def approval_plan_blocks(published: PublishedPlan) -> list[dict[str, Any]]:
    return plan_blocks(published.plan, published.digest)


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
    clock: Callable[[], datetime] | None = None,
) -> App:
    """The Bolt app. Defaults: `SLACK_SIGNING_SECRET(_FILE)`, `SLACK_BOT_TOKEN(_FILE)`,
    `SLACK_API_URL` and `core.catalogue`."""
    app = App(
        client=client or make_slack_client(),
        signing_secret=signing_secret or env_secret("SLACK_SIGNING_SECRET"),
        # Acks run in the request's own thread, before the response is sent.
        process_before_response=True,
    )
    bot = Rotator(settings, RequestStore(redis), redis, catalogue or _default_catalogue())
    if clock is not None:
        bot.clock = clock
    work = ThreadPoolExecutor(LAZY_THREADS, thread_name_prefix="rotator-work")

    def acked(listener: Callable[[dict[str, Any], WebClient], None]) -> Callable[..., None]:
        """A listener that acks, then leaves `listener` to the work pool."""
        guarded = bot.guarded(listener)

        def ack_then_work(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            work.submit(guarded, body, client)

        return ack_then_work

    def given(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        if bot.ack_given(ack, body["view"]):
            work.submit(bot.guarded(bot.on_given), body, client)

    def home(body: dict[str, Any], client: WebClient) -> None:  # events are acked by Bolt
        work.submit(bot.guarded(bot.on_home_opened), body, client)

    app.command(settings.bot.command)(acked(bot.on_command))
    for action, listener in (
        (blocks.APPROVE_ACTION, bot.on_approve),
        (blocks.REJECT_ACTION, bot.on_reject),
        (blocks.BREAK_GLASS_ACTION, bot.on_break_glass),
        (RECOVER_ACTION, bot.on_recover),
        (blocks.NEXT_WINDOW_ACTION, bot.on_next_window),
        (blocks.RUN_NOW_ACTION, bot.on_run_now),
    ):
        app.action(action)(acked(listener))
    app.view(blocks.GIVEN_VALUE_VIEW)(given)
    app.event("app_home_opened")(home)

    @app.error
    def on_error(error: Exception, body: dict[str, Any], logger: logging.Logger) -> None:
        logger.error("listener failed: %s (%s)", type(error).__name__, body.get("type", "command"))

    return app
