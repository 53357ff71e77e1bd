"""What a rotation will change, computed from the deployment's own files.

A plan is shown before approval (Slack, `rotator plan`) and is what the engine
executes. It holds names only, never values, so it can travel anywhere.

The services come from compose itself: the project resolved with the current `.env`
and again with the `.env` the commit step would write (core.compose), compared
service by service. A rotation whose old value is also written into a file a
container mounts is refused here (core.mounts), so `rotator plan` already says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.catalogue import RotationOptions, Secret, Source, describe_impact, get_secret
from core.consistency import platform_warnings
from core.errors import SecretInMountedFile
from core.mounts import MountScan, find_copies
from core.restart import Gate, restart_gates, restart_waves
from core.signing_keys import Phase

if TYPE_CHECKING:
    from core.deployment import Deployment


@dataclass(frozen=True)
class Plan:
    """One rotation, decided.

    `restart_levels` are the compose calls of the restart (`core.restart.restart_waves`),
    in order: a service comes after the planned services it must find healthy, in the
    same call as those it only needs started, and `restart_last` (the database) after
    all the others. `services` lists them in that order.
    """

    secret: str
    title: str
    env_keys: tuple[str, ...]
    services: tuple[str, ...]
    restart_levels: tuple[tuple[str, ...], ...]
    db_roles: tuple[str, ...]
    impact: str
    logs_out_users: bool
    downtime_estimate_s: int
    resets_pooler_tenant: bool = False
    """The pooler's stored tenant must be reset (it holds the password, encrypted)."""
    members: tuple[str, ...] = ()
    """For `all`: the catalogue entries it covers, in order."""
    notes: tuple[str, ...] = field(default=())
    """Warnings for people (keys skipped because they are not configured, ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """RotationOptions.to_json(): the mode, the signing-key phase, session revocation."""
    revokes_sessions: bool = False
    """Auth's sessions and refresh tokens are deleted in the apply step."""
    updates_analytics_users: bool = False
    """Logflare's legacy copy of the public token (`_analytics.users.api_key`) changes too."""
    restart_after: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Order beyond depends_on: (service, the planned services ready before it)."""
    restart_last: tuple[str, ...] = ()
    """Planned services recreated once every other planned one is ready: the database,
    whose container reads its secrets only at first initialisation."""

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "title": self.title,
            "env_keys": list(self.env_keys),
            "services": list(self.services),
            "restart_levels": [list(level) for level in self.restart_levels],
            "db_roles": list(self.db_roles),
            "impact": self.impact,
            "logs_out_users": self.logs_out_users,
            "downtime_estimate_s": self.downtime_estimate_s,
            "resets_pooler_tenant": self.resets_pooler_tenant,
            "members": list(self.members),
            "notes": list(self.notes),
            "options": dict(self.options),
            "revokes_sessions": self.revokes_sessions,
            "updates_analytics_users": self.updates_analytics_users,
            "restart_after": [[service, list(first)] for service, first in self.restart_after],
            "restart_last": list(self.restart_last),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """The inverse of `to_json` (the journal and the bot's request store keep plans)."""
        return cls(
            secret=data["secret"],
            title=data["title"],
            env_keys=tuple(data["env_keys"]),
            services=tuple(data["services"]),
            restart_levels=tuple(tuple(level) for level in data["restart_levels"]),
            db_roles=tuple(data["db_roles"]),
            impact=data["impact"],
            logs_out_users=bool(data["logs_out_users"]),
            downtime_estimate_s=int(data["downtime_estimate_s"]),
            resets_pooler_tenant=bool(data.get("resets_pooler_tenant", False)),
            members=tuple(data.get("members", ())),
            notes=tuple(data.get("notes", ())),
            options=dict(data.get("options") or {}),
            revokes_sessions=bool(data.get("revokes_sessions", False)),
            updates_analytics_users=bool(data.get("updates_analytics_users", False)),
            restart_after=tuple(
                (str(service), tuple(first)) for service, first in data.get("restart_after", ())
            ),
            restart_last=tuple(data.get("restart_last", ())),
        )

    @property
    def rotation_options(self) -> RotationOptions:
        return RotationOptions.from_json(self.options)


SECONDS_PER_LEVEL = 10
"""A rough cost of one stage of the restart: stop, start, the first passing check."""

PLACEHOLDER = "rotator-plan-placeholder-value"
"""Stands in for values a person will supply (smtp), so the plan can be computed before."""


def make_plan(
    deployment: Deployment,
    secret: Secret,
    new: Mapping[str, str] | None = None,
    options: RotationOptions | None = None,
) -> Plan:
    """Compute what rotating `secret` changes in `deployment`.

    `new` is the engine's staged values; without it, throwaway values are
    generated, which change the same keys and so the same services.
    """
    options = options or RotationOptions()
    current = deployment.values()
    if new is None:
        placeholders = {key: PLACEHOLDER for key in secret.given_keys if key in current}
        new = secret.new_values(
            current, placeholders if secret.source is Source.GIVEN else None, options=options
        )
    changed = {key: value for key, value in new.items() if current.get(key) != value}
    after = deployment.compose_with(deployment.env.replace(changed))
    changed_services = deployment.compose.changed_services(after)
    last = _restarted_last(deployment, changed_services)
    restart_after = _signing_key_order(options, tuple(changed_services))
    levels = restart_waves(
        deployment.compose, changed_services, after=dict(restart_after), last=last
    )
    ordered = tuple(service for level in levels for service in level)
    scan = _search_mounted_files(deployment, {k: current[k] for k in changed if k in current})
    members = secret.configured_members(current)
    skipped = secret.skipped_members(current)
    covered = [get_secret(name) for name in members] or [secret]
    roles = tuple(dict.fromkeys(role for member in covered for role in member.db_roles))
    notes = tuple(f"{name} is skipped: its keys are not configured in .env" for name in skipped)
    if changed and not ordered:
        notes += (
            f"no service of compose project {deployment.compose.name} uses "
            f"{', '.join(sorted(changed))}: .env changes, nothing is recreated",
        )
    notes += tuple(scan.notes(deployment.directory))
    if roles:
        notes += (
            "supabase_read_only_user changes too if the current password logs in as it "
            "(checked before anything changes)",
        )
    if secret.name == "jwt-secret" and current.get("JWT_KEYS"):
        notes += (
            "the asymmetric signing key in JWT_KEYS is a secret of its own: after a leak, "
            "rotate jwt-signing-key too (or all)",
        )
    if options.phase is Phase.STANDBY:
        notes += (
            "phase 1 of 3: next, the rotate phase makes the new key sign (ask for it again "
            "when you are ready; wait 20 minutes first if something outside the stack caches "
            "the published JWKS)",
        )
    elif options.phase is Phase.ROTATE:
        notes += (
            "phase 2 of 3: the old key stays trusted until every token it signed has "
            "expired (JWT_EXPIRY plus 15 minutes); the worker then revokes it by itself "
            "(from a terminal: rotator rotate jwt-signing-key again)",
        )
    if last:
        notes += (
            f"{', '.join(last)} is recreated last, once every other service runs on the new "
            "values: its container reads them only when it first initialises. Until then "
            "open connections keep working; its restart then drops every connection to "
            "the database once, for the seconds it takes to start",
        )
    notes += tuple(platform_warnings(current))
    impact, logs_out = describe_impact(secret, options)
    return Plan(
        secret=secret.name,
        title=secret.title,
        env_keys=tuple(sorted(changed)),
        services=ordered,
        restart_levels=tuple(tuple(level) for level in levels),
        db_roles=roles,
        impact=impact,
        logs_out_users=logs_out,
        downtime_estimate_s=_downtime_estimate(
            deployment,
            levels,
            restart_gates(deployment.compose, ordered, after=dict(restart_after), last=last),
        ),
        resets_pooler_tenant=any(member.resets_pooler_tenant for member in covered),
        members=tuple(members),
        notes=notes,
        options=options.to_json(),
        revokes_sessions=options.sessions_revoked(secret),
        updates_analytics_users=any(member.updates_analytics_users for member in covered),
        restart_after=restart_after,
        restart_last=tuple(last),
    )


VERIFIERS = ("rest", "realtime", "storage", "functions")
"""The services that verify tokens with JWT_JWKS besides Auth (zero-logout-jwt.md)."""


def _restarted_last(deployment: Deployment, services: list[str]) -> list[str]:
    """The database service when the plan recreates it (see core.restart): the apply step
    has already changed what it holds, so nothing its dependents need waits for it."""
    database = deployment.database_service()
    return [database] if database in services else []


def _signing_key_order(
    options: RotationOptions, services: tuple[str, ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """In standby and revoke Auth is recreated last, once every verifier knows the new key
    set: a token Auth accepts then verifies everywhere (zero-logout-jwt.md, section 5)."""
    if options.phase not in (Phase.STANDBY, Phase.REVOKE) or "auth" not in services:
        return ()
    first = tuple(s for s in services if s in VERIFIERS)
    return (("auth", first),) if first else ()


def _search_mounted_files(deployment: Deployment, old: Mapping[str, str]) -> MountScan:
    """Refuse when a mounted file holds one of the `old` values; else what was searched."""
    scan = find_copies(
        deployment.compose.bind_mounts(),
        old,
        directory=deployment.directory,
        exclude=(deployment.env_path, deployment.state_dir),
    )
    if scan.copies:
        found = "; ".join(
            f"{path.relative_to(deployment.directory)} (mounted as {scan.mounted_as[path]}) "
            f"holds {', '.join(sorted(keys))}"
            for path, keys in sorted(scan.copies.items())
        )
        raise SecretInMountedFile(
            f"refused: {found}, written into the file itself. Rotating would change .env "
            "and leave the old value in force there. Make the file take the value from the "
            "container's environment (as upstream's files do) or remove it, then plan "
            "again. Nothing was changed."
        )
    return scan


def _downtime_estimate(
    deployment: Deployment, waves: list[list[str]], gates: Mapping[str, Gate]
) -> int:
    """A rough figure for people: per stage of the restart, a compose call and the
    longest start period in it. Calls that wait for nothing go back to back and make one
    stage; a new stage starts where a call waits for earlier ones to be ready (`after`:
    the database last, Auth after the verifiers)."""
    stages: list[list[str]] = []
    done: set[str] = set()
    for wave in waves:
        waits = any(gates[service].after & done for service in wave)
        if waits or not stages:
            stages.append([])
        stages[-1] += wave
        done |= set(wave)
    total = 0
    for stage in stages:
        start_periods = [
            _seconds((deployment.compose.healthcheck(service) or {}).get("start_period", "0s"))
            for service in stage
        ]
        total += SECONDS_PER_LEVEL + max(start_periods, default=0)
    return total


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _seconds(duration: object) -> int:
    """Compose durations like '20s', '1m30s', '500ms', or a number of seconds."""
    if isinstance(duration, int | float):
        return int(duration)
    parts = _DURATION_PART.findall(str(duration))
    return int(sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts))
