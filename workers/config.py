"""The bot's configuration: one TOML file, named by `ROTATOR_CONFIG` (default `rotator.toml`).

Example::

    [bot]
    timezone = "Europe/Berlin"      # default zone for windows and times without one (default UTC)
    command = "/rotate"             # the slash command's name (default "/rotate")

    [deployments.prod]
    project = "/srv/supabase/docker"          # the Supabase docker directory on the worker host
    channel = "C0123ABCD"                     # requests and their threads live here
    announce_channel = "C0456EFGH"            # downtime notices for users go here
    requesters = ["U01AAAA", "U01BBBB"]       # empty or absent: anyone may ask (still approved)
    approvers = ["U01CCCC"]                   # Slack user ids ...
    approver_groups = ["S01DDDD"]             # ... and/or user groups whose members may approve
    oncall = ["U01CCCC"]                      # may approve an emergency (`now`) alone
    approvals = 1                             # approvals needed for normal secrets (default 1)
    critical_approvals = 2                    # for critical secrets (default max(2, approvals))
    request_ttl = "24h"                       # unapproved requests expire after this (default 24h)
    windows = ["Sat 02:00-04:00 UTC", "Mon-Fri 03:00-05:00 Europe/Berlin"]
    lateness = "15m"                          # a rotation starts at most this late (default 15m)
    notice_lead_times = ["24h", "1h", "10m"]  # notices before the window (default these three)
    webhooks = ["https://status.example.com/hooks/rotator"]
    webhook_secret_file = "keys/webhook.secret"  # signs each webhook (HMAC-SHA256; worker host)
    webhook_format = "rotator"                # or "statuspage": a scheduled-maintenance incident
    break_glass = false                       # allow an on-call requester to self-approve `now`
    incident_reference = "INC-[0-9]+"         # emergencies' reasons must name an incident
    worker_public_key = "keys/prod-worker.pub.pem"  # seals typed-in secrets for this worker
    gateway_probes = true                     # verify through the API gateway (default true)
    gateway_url = "http://127.0.0.1:8000"     # where the worker reaches it (default: the
                                              # API_GW_HTTP_PORT / KONG_HTTP_PORT of .env)
    pooler_probe = true                       # log in through the pooler (default true)
    pooler_address = "127.0.0.1:6543"         # where (default: POOLER_PROXY_PORT_TRANSACTION)

A window is `DAYS HH:MM-HH:MM [ZONE]`. DAYS is `daily`, `weekdays`, `weekends`, a day
(`Sat`), a range (`Mon-Fri`) or a comma list (`Sat,Sun`). The zone is an IANA name or `UTC`
and defaults to `[bot] timezone`. An end earlier than the start runs past midnight.
A rotation may start at any instant inside a window; with no windows, at any time. Once
approved, it starts at its window's start, and at most `lateness` later: a later approval, or
a worker that was down, misses the window, and the thread offers the next one.

Durations are a number and a unit, combinable: `90s`, `10m`, `1h30m`, `2d`.

Relative paths (`project`, `worker_public_key`, `webhook_secret_file`) are resolved against
the file's directory.
Unknown keys and bad values raise `ConfigError` naming the file, the key and the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InputError

__all__ = [
    "BotConfig",
    "ConfigError",
    "DeploymentConfig",
    "Settings",
    "Window",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_window",
    "parse_zone",
]

DEFAULT_CONFIG = "rotator.toml"
UTC_ZONE = ZoneInfo("UTC")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_DEPLOYMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WEBHOOK_FORMATS = ("rotator", "statuspage")
MAX_DURATION_S = 366 * 86400
"""No window, lead time or expiry is further away; larger values overflow datetimes."""


class ConfigError(InputError):
    """A configuration file that cannot be used. Names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Window:
    """A recurring maintenance window, e.g. `Sat 02:00-04:00 UTC`."""

    text: str
    days: frozenset[int]
    """Weekdays on which the window opens, 0 = Monday."""
    start: time
    end: time
    zone: ZoneInfo

    @property
    def length(self) -> timedelta:
        start = timedelta(hours=self.start.hour, minutes=self.start.minute)
        end = timedelta(hours=self.end.hour, minutes=self.end.minute)
        return end - start if end > start else end - start + timedelta(days=1)

    def _openings(self, around: datetime, days: range) -> list[datetime]:
        local = around.astimezone(self.zone).date()
        out = []
        for delta in days:
            day = local + timedelta(days=delta)
            if day.weekday() in self.days:
                out.append(datetime.combine(day, self.start, tzinfo=self.zone))
        return out

    def contains(self, when: datetime) -> bool:
        """True when `when` (aware) falls inside one opening of this window."""
        return any(o <= when < o + self.length for o in self._openings(when, range(-1, 1)))

    def next_start(self, after: datetime) -> datetime:
        """The first opening strictly after `after` (aware), in UTC."""
        for opening in self._openings(after, range(0, 9)):
            if opening > after:
                return opening.astimezone(ZoneInfo("UTC"))
        raise AssertionError("a window opens at least once a week")  # pragma: no cover


@dataclass(frozen=True)
class DeploymentConfig:
    name: str
    project: Path
    channel: str
    announce_channel: str
    requesters: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approver_groups: tuple[str, ...] = ()
    oncall: tuple[str, ...] = ()
    approvals: int = 1
    critical_approvals: int = 2
    request_ttl: timedelta = timedelta(hours=24)
    windows: tuple[Window, ...] = ()
    notice_lead_times: tuple[timedelta, ...] = (
        timedelta(hours=24),
        timedelta(hours=1),
        timedelta(minutes=10),
    )
    webhooks: tuple[str, ...] = ()
    webhook_secret_file: Path | None = None
    webhook_format: str = "rotator"
    break_glass: bool = False
    incident_reference: str = ""
    """A regular expression an emergency's reason must contain a match of (empty: none)."""
    worker_public_key: Path | None = None
    lateness: timedelta = timedelta(minutes=15)
    gateway_probes: bool = True
    gateway_url: str = ""
    pooler_probe: bool = True
    pooler_address: str = ""

    @property
    def queue_name(self) -> str:
        return f"rotator:{self.name}"

    def next_window(self, after: datetime) -> datetime | None:
        """The earliest window opening after `after`, in UTC; None when no windows are set."""
        starts = [w.next_start(after) for w in self.windows]
        return min(starts) if starts else None

    def in_window(self, when: datetime) -> bool:
        return not self.windows or any(w.contains(when) for w in self.windows)


@dataclass(frozen=True)
class BotConfig:
    timezone: ZoneInfo = UTC_ZONE
    command: str = "/rotate"


@dataclass(frozen=True)
class Settings:
    deployments: Mapping[str, DeploymentConfig]
    bot: BotConfig
    source: str = "<memory>"

    def deployment(self, name: str) -> DeploymentConfig:
        return self.deployments[name]


def parse_duration(text: str) -> timedelta:
    """`1h30m` -> 90 minutes. Raises ValueError with a readable reason."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION_PART.sub("", cleaned) != "":
        raise ValueError(f"{text!r} is not a duration; write e.g. 10m, 1h, 1h30m, 2d")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than a year")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """90 minutes -> `1h30m`: the inverse of parse_duration, also used in notice ids."""
    seconds, out = int(delta.total_seconds()), ""
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _DURATION_UNITS[unit])
        out += f"{count}{unit}" if count else ""
    return out or "0s"


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo("UTC" if name.upper() in ("UTC", "Z", "GMT") else name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        raise ValueError(msg) from None


def _parse_days(text: str) -> frozenset[int]:
    lowered = text.lower()
    named = {"daily": range(7), "weekdays": range(5), "weekends": range(5, 7)}
    if lowered in named:
        return frozenset(named[lowered])
    days: set[int] = set()
    for part in lowered.split(","):
        first, _, last = part.partition("-")
        if first[:3] not in DAY_NAMES or (last and last[:3] not in DAY_NAMES):
            raise ValueError(f"unknown day {part!r}; use Mon..Sun, Mon-Fri, daily, weekdays")
        a, b = DAY_NAMES.index(first[:3]), DAY_NAMES.index((last or first)[:3])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def parse_window(text: str, default_zone: ZoneInfo) -> Window:
    """`Sat 02:00-04:00 UTC` -> Window. Raises ValueError with a readable reason."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise ValueError(f"{text!r} is not a window; write e.g. 'Sat 02:00-04:00 UTC'")
    match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", parts[1])
    if not match:
        raise ValueError(f"{parts[1]!r} is not a time range; write e.g. 02:00-04:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{parts[1]!r} has an impossible time")
    start, end = time(h1, m1), time(h2 % 24, m2)
    if start == end:
        raise ValueError(f"{parts[1]!r} is empty: start and end are equal")
    zone = parse_zone(parts[2]) if len(parts) == 3 else default_zone
    return Window(text=text, days=_parse_days(parts[0]), start=start, end=end, zone=zone)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a regular expression: {exc}") from None


class _Reader:
    """Pulls typed values out of one TOML table, refusing unknown keys."""

    def __init__(
        self, source: str, prefix: str, table: Mapping[str, Any], known: Iterable[str]
    ) -> None:
        self.source, self.prefix, self.table = source, prefix, table
        unknown = sorted(set(table) - set(known))
        if unknown:
            names = ", ".join(sorted(known))
            raise self.error(unknown[0], f"unknown key; known keys: {names}")

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, f"{self.prefix}{key}", reason)

    def raw(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            if default is None:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise self.error(key, f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def ids(self, key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        values = self.raw(key, list, [])
        for value in values:
            if not isinstance(value, str) or not pattern.match(value):
                raise self.error(key, f"{value!r} is not a Slack {what} id")
        return tuple(values)

    def convert(self, key: str, value: Any, parse: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}
    names[dict] = "a table"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _deployment(source: str, base: Path, name: str, table: Any, zone: ZoneInfo) -> DeploymentConfig:
    prefix = f"deployments.{name}."
    if not _DEPLOYMENT_NAME.match(name):
        raise ConfigError(source, f"deployments.{name}", "name must be a-z, 0-9, _ or -")
    if not isinstance(table, dict):
        raise ConfigError(source, f"deployments.{name}", "must be a table")
    known = [f.name for f in fields(DeploymentConfig) if f.name != "name"]
    r = _Reader(source, prefix, table, known)
    channel, announce = r.raw("channel", str), r.raw("announce_channel", str)
    for key, value in (("channel", channel), ("announce_channel", announce)):
        if not _CHANNEL_ID.match(value):
            raise r.error(key, f"{value!r} is not a Slack channel id (C..., G...)")
    approvals = r.raw("approvals", int, 1)
    critical = r.raw("critical_approvals", int, max(2, approvals))
    windows = [
        r.convert("windows", w, lambda t: parse_window(str(t), zone))
        for w in r.raw("windows", list, [])
    ]
    leads = [
        r.convert("notice_lead_times", d, lambda t: parse_duration(str(t)))
        for d in r.raw("notice_lead_times", list, ["24h", "1h", "10m"])
    ]
    webhooks = r.raw("webhooks", list, [])
    for url in webhooks:
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise r.error("webhooks", f"{url!r} is not an http(s) URL")
    key_path = r.raw("worker_public_key", str, "")
    secret_path = r.raw("webhook_secret_file", str, "")
    webhook_format = r.raw("webhook_format", str, "rotator")
    if webhook_format not in WEBHOOK_FORMATS:
        raise r.error("webhook_format", f"must be one of {', '.join(WEBHOOK_FORMATS)}")
    incident = r.raw("incident_reference", str, "")
    r.convert("incident_reference", incident, _regex)
    gateway_url = r.raw("gateway_url", str, "")
    if gateway_url and not gateway_url.startswith(("https://", "http://")):
        raise r.error("gateway_url", f"{gateway_url!r} is not an http(s) URL")
    pooler_address = r.raw("pooler_address", str, "")
    if pooler_address and not re.fullmatch(r"[^:\s]+:\d{1,5}", pooler_address):
        raise r.error("pooler_address", f"{pooler_address!r} is not host:port")
    cfg = DeploymentConfig(
        name=name,
        project=base / r.raw("project", str),
        channel=channel,
        announce_channel=announce,
        requesters=r.ids("requesters", _USER_ID, "user"),
        approvers=r.ids("approvers", _USER_ID, "user"),
        approver_groups=r.ids("approver_groups", _GROUP_ID, "user group"),
        oncall=r.ids("oncall", _USER_ID, "user"),
        approvals=approvals,
        critical_approvals=critical,
        request_ttl=r.convert("request_ttl", r.raw("request_ttl", str, "24h"), parse_duration),
        windows=tuple(windows),
        notice_lead_times=tuple(sorted(set(leads), reverse=True)),
        webhooks=tuple(webhooks),
        webhook_secret_file=base / secret_path if secret_path else None,
        webhook_format=webhook_format,
        break_glass=r.raw("break_glass", bool, False),
        incident_reference=incident,
        worker_public_key=base / key_path if key_path else None,
        lateness=r.convert("lateness", r.raw("lateness", str, "15m"), parse_duration),
        gateway_probes=r.raw("gateway_probes", bool, True),
        gateway_url=gateway_url,
        pooler_probe=r.raw("pooler_probe", bool, True),
        pooler_address=pooler_address,
    )
    _check_quorum(r, cfg)
    return cfg


def _check_quorum(r: _Reader, cfg: DeploymentConfig) -> None:
    if cfg.approvals < 1:
        raise r.error("approvals", "must be at least 1: a second person approves every rotation")
    if cfg.critical_approvals < cfg.approvals:
        raise r.error("critical_approvals", f"must be at least approvals ({cfg.approvals})")
    if not cfg.approvers and not cfg.approver_groups:
        raise r.error("approvers", "no approvers: set approvers or approver_groups")
    if not cfg.approver_groups and len(cfg.approvers) < cfg.critical_approvals:
        raise r.error(
            "approvers",
            f"{len(cfg.approvers)} approver(s) listed but critical_approvals is "
            f"{cfg.critical_approvals}; list more or add approver_groups",
        )


def parse_config(data: Mapping[str, Any], source: str, base: Path | None = None) -> Settings:
    """Validate a parsed TOML document. `base` resolves relative paths (default: cwd)."""
    top = _Reader(source, "", data, ("bot", "deployments"))
    bot_table = top.raw("bot", dict, {})
    deployments = top.raw("deployments", dict)
    b = _Reader(source, "bot.", bot_table, ("timezone", "command"))
    zone = b.convert("timezone", b.raw("timezone", str, "UTC"), parse_zone)
    command = b.raw("command", str, "/rotate")
    if not re.fullmatch(r"/[a-z0-9_-]+", command):
        raise b.error("command", f"{command!r} is not a slash command such as /rotate")
    if not deployments:
        raise ConfigError(source, "deployments", "configure at least one [deployments.NAME]")
    root = base or Path.cwd()
    deps = {n: _deployment(source, root, n, t, zone) for n, t in deployments.items()}
    return Settings(deployments=deps, bot=BotConfig(timezone=zone, command=command), source=source)


def load_config(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the file named by `path`, else `ROTATOR_CONFIG`, else `rotator.toml`."""
    file = Path(path or os.environ.get("ROTATOR_CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), "-", "file not found (set ROTATOR_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), "-", f"not valid TOML: {exc}") from None
    return parse_config(data, str(file), base=file.resolve().parent)
