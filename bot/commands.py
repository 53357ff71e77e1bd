"""The text of `/rotate`, parsed into a command.

    /rotate SECRET [DEPLOYMENT] [at WHEN | now] [reason...]
    /rotate plan SECRET [DEPLOYMENT]
    /rotate status
    /rotate cancel ID
    /rotate help

WHEN is one of `2025-06-07T02:30+00:00` (ISO), `2025-06-07 02:30 [ZONE]`, `02:30 [ZONE]`
(the next 02:30), `tomorrow 02:30 [ZONE]`, `+2h` or `next window`. Without a zone it is read
in the requester's time zone. Without `at`, a request goes to the next maintenance window.
A reason follows the time; after `now` it is required.

Bad input raises `CommandError`, whose message says what to type instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.errors import InputError
from workers.config import DeploymentConfig, Settings, parse_duration, parse_zone
from workers.report import escape

__all__ = [
    "CancelRequest",
    "Command",
    "CommandError",
    "RequestRotation",
    "ShowHelp",
    "ShowPlan",
    "ShowStatus",
    "parse_command",
]


class CommandError(InputError):
    """The command cannot be understood; the message says what to type instead."""


@dataclass(frozen=True)
class RequestRotation:
    secret: str
    deployment: str
    window_start: datetime
    """When the rotation should start, UTC."""
    emergency: bool
    reason: str
    incident: str = ""
    """The incident reference found in an emergency's reason (when the deployment asks)."""


@dataclass(frozen=True)
class ShowPlan:
    secret: str
    deployment: str


@dataclass(frozen=True)
class ShowStatus:
    pass


@dataclass(frozen=True)
class CancelRequest:
    request_id: str


@dataclass(frozen=True)
class ShowHelp:
    pass


Command = RequestRotation | ShowPlan | ShowStatus | CancelRequest | ShowHelp

_REQUEST_ID = re.compile(r"^r-[a-z0-9]{4,16}$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class _Context:
    settings: Settings
    secret_names: Sequence[str]
    user_zone: ZoneInfo
    now: datetime
    cmd: str


def parse_command(
    text: str,
    *,
    settings: Settings,
    secret_names: Sequence[str],
    user_zone: ZoneInfo,
    now: datetime | None = None,
) -> Command:
    """Parse the text after the slash command. Raises CommandError."""
    ctx = _Context(
        settings, secret_names, user_zone, now or datetime.now(UTC), settings.bot.command
    )
    words = text.split()
    if not words or words[0].lower() == "help":
        return ShowHelp()
    head = words[0].lower()
    if head == "status":
        return ShowStatus()
    if head == "cancel":
        if len(words) != 2 or not _REQUEST_ID.match(words[1]):
            raise CommandError(f"Say which request to cancel: `{ctx.cmd} cancel r-7f3a2b`.")
        return CancelRequest(words[1])
    if head == "plan":
        if len(words) < 2:
            raise CommandError(f"Say which secret to plan: `{ctx.cmd} plan jwt-secret`.")
        secret = _secret(ctx, words[1])
        deployment, rest = _deployment(ctx, secret, words[2:], strict=True)
        if rest:
            raise CommandError(
                f"`plan` takes a secret and a deployment: `{ctx.cmd} plan {secret} {deployment}`."
            )
        return ShowPlan(secret, deployment)
    return _request(ctx, words)


def _secret(ctx: _Context, word: str) -> str:
    if word not in ctx.secret_names:
        names = ", ".join(f"`{n}`" for n in ctx.secret_names)
        raise CommandError(
            f"Unknown secret `{escape(word)}`. Choose one of: {names}. "
            f"Example: `{ctx.cmd} jwt-secret`."
        )
    return word


def _deployment(
    ctx: _Context, secret: str, words: list[str], *, strict: bool
) -> tuple[str, list[str]]:
    """The deployment named first in `words` (or the only one configured), and what follows."""
    configured = sorted(ctx.settings.deployments)
    if words and words[0] in ctx.settings.deployments:
        return words[0], words[1:]
    only = configured[0] if len(configured) == 1 else None
    if only and (not words or words[0].lower() in ("at", "now") or not strict):
        return only, words
    names = ", ".join(f"`{n}`" for n in configured)
    if words:
        raise CommandError(
            f"Unknown deployment `{escape(words[0])}`. Configured: {names}. "
            f"Example: `{ctx.cmd} {secret} {configured[0]}`."
        )
    raise CommandError(
        f"Say which deployment: one of {names}. Example: `{ctx.cmd} {secret} {configured[0]}`."
    )


def _request(ctx: _Context, words: list[str]) -> RequestRotation:
    secret = _secret(ctx, words[0])
    deployment, rest = _deployment(ctx, secret, words[1:], strict=len(ctx.settings.deployments) > 1)
    dep = ctx.settings.deployment(deployment)
    example = f"{ctx.cmd} {secret} {deployment}"
    if rest and rest[0].lower() == "now":
        reason = " ".join(rest[1:])
        if not reason:
            raise CommandError(
                f"Emergency rotations need a reason: `{example} now leaked in CI logs`."
            )
        return RequestRotation(
            secret,
            deployment,
            ctx.now.astimezone(UTC),
            True,
            reason,
            _incident(dep, reason, example),
        )
    if rest and rest[0].lower() == "at":
        when, rest = _when(ctx, dep, rest[1:], example)
    else:
        when = _next_window(ctx, dep, example)
    when = when.replace(microsecond=0)
    _check_window(ctx, dep, when, example)
    return RequestRotation(secret, deployment, when, False, " ".join(rest))


def _incident(dep: DeploymentConfig, reason: str, example: str) -> str:
    """The incident reference in an emergency's reason, where the deployment requires one."""
    if not dep.incident_reference:
        return ""
    found = re.search(dep.incident_reference, reason)
    if found is None:
        raise CommandError(
            f"Emergencies on `{dep.name}` need an incident reference in the reason (matching "
            f"`{escape(dep.incident_reference)}`), e.g. `{example} now INC-1234 leaked in CI logs`."
        )
    return found.group(0)


def _when(
    ctx: _Context, dep: DeploymentConfig, words: list[str], example: str
) -> tuple[datetime, list[str]]:
    """Read WHEN from the front of `words`; return it (UTC) and the words left over."""
    hint = (
        f"Say when, e.g. `{example} at 02:30`, `at tomorrow 03:00 UTC`, `at +2h` "
        "or `at next window`."
    )
    if not words:
        raise CommandError(hint)
    first = words[0].lower()
    if first == "next" and len(words) > 1 and words[1].lower() == "window":
        return _next_window(ctx, dep, example), words[2:]
    if first.startswith("+"):
        try:
            return ctx.now.astimezone(UTC) + parse_duration(first[1:]), words[1:]
        except ValueError:
            raise CommandError(f"`{escape(words[0])}` is not a duration. {hint}") from None
    if first == "tomorrow" and len(words) > 1 and _HHMM.match(words[1]):
        zone, rest = _zone(ctx, words[2:])
        day = ctx.now.astimezone(zone).date() + timedelta(days=1)
        return _at(day, _clock(words[1], hint), zone), rest
    if _DATE.match(first) and len(words) > 1 and _HHMM.match(words[1]):
        zone, rest = _zone(ctx, words[2:])
        try:
            day = datetime.strptime(first, "%Y-%m-%d").date()
        except ValueError:
            raise CommandError(f"`{escape(words[0])}` is not a date. {hint}") from None
        return _at(day, _clock(words[1], hint), zone), rest
    if _HHMM.match(first):
        zone, rest = _zone(ctx, words[1:])
        local = ctx.now.astimezone(zone)
        when = _at(local.date(), _clock(first, hint), zone)
        return (
            when
            if when > ctx.now
            else _at(local.date() + timedelta(days=1), _clock(first, hint), zone)
        ), rest
    try:
        parsed = datetime.fromisoformat(words[0])
    except ValueError:
        raise CommandError(f"Cannot read the time `{escape(words[0])}`. {hint}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ctx.user_zone)
    return parsed.astimezone(UTC), words[1:]


def _zone(ctx: _Context, words: list[str]) -> tuple[ZoneInfo, list[str]]:
    """An explicit zone at the front of `words`, else the requester's."""
    if words and ("/" in words[0] or words[0].upper() in ("UTC", "GMT", "Z")):
        try:
            return parse_zone(words[0]), words[1:]
        except ValueError as exc:
            raise CommandError(
                f"{escape(str(exc))}, e.g. `at 03:00 Europe/Berlin` or `at 03:00 UTC`."
            ) from None
    return ctx.user_zone, words


def _clock(text: str, hint: str) -> time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours > 23 or minutes > 59:
        raise CommandError(f"`{escape(text)}` is not a time of day. {hint}")
    return time(hours, minutes)


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def _next_window(ctx: _Context, dep: DeploymentConfig, example: str) -> datetime:
    start = dep.next_window(ctx.now)
    if start is None:
        raise CommandError(
            f"`{dep.name}` has no maintenance windows configured, so say when: "
            f"`{example} at 03:00` "
            f"(or `{example} now REASON` for an emergency)."
        )
    return start


def _check_window(ctx: _Context, dep: DeploymentConfig, when: datetime, example: str) -> None:
    shown = when.strftime("%Y-%m-%d %H:%M UTC")
    if when <= ctx.now:
        raise CommandError(
            f"{shown} is in the past. Pick a later time, e.g. `{example} at next window`."
        )
    if not dep.in_window(when):
        windows = "; ".join(w.text for w in dep.windows)
        raise CommandError(
            f"{shown} is outside `{dep.name}`'s maintenance windows ({windows}). "
            f"Try `{example} at next window`, or `{example} now REASON` for an emergency."
        )
