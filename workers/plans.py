"""Plans computed on the worker host and published in Redis for the bot.

The bot is the internet-facing process: it mounts neither the Supabase directory nor its
`.env`, and answers Slack within milliseconds. So the worker computes every secret's plan
for each of its deployments and publishes it, with the basis an approval binds to
(`core.digest.PlanBasis`), and refreshes it: at once when `.env` or a compose file changes,
in full every `FULL_REFRESH_S`, and a heartbeat every `HEARTBEAT_S`. The bot reads the
published plan (one Redis round trip) and refuses, saying so, when none is fresh.

Keys (prefix `rotator:`), names and fingerprints only, never values:

- `rotator:plans:<deployment>`     hash: secret -> JSON {plan, basis, computed_at} or {error};
                                   `secret@compromise` for an emergency's plan where it differs
- `rotator:plans:<deployment>:at`  JSON {checked_at, computed_at, worker, error}
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from redis import Redis

from core.catalogue import CATALOGUE, Mode, RotationOptions, get_secret, secret_names
from core.deployment import Deployment
from core.digest import PlanBasis, plan_basis
from core.errors import InputError, RotatorError
from core.key_schedule import with_phase
from core.plan import Plan, make_plan

__all__ = [
    "FULL_REFRESH_S",
    "HEARTBEAT_S",
    "MAX_AGE",
    "NoFreshPlan",
    "PlanBook",
    "PlanPublisher",
    "PublishedPlan",
    "current_plan",
    "plan_key",
]

log = logging.getLogger("rotator.worker")

HEARTBEAT_S = 10.0
"""How often the worker says its plans are still current."""
FULL_REFRESH_S = 300.0
"""How often the worker recomputes every plan even when no file seems to have changed."""
MAX_AGE = timedelta(seconds=60)
"""The bot uses a published plan only if the worker confirmed it this recently."""


class NoFreshPlan(InputError):
    """No worker has published a current plan for the deployment."""


@dataclass(frozen=True)
class PublishedPlan:
    plan: Plan
    basis: PlanBasis
    computed_at: datetime

    @property
    def digest(self) -> str:
        return self.basis.digest


def current_plan(deployment: Deployment, secret: str, mode: Mode = Mode.PLANNED) -> PublishedPlan:
    """The plan for `secret` on `deployment` as its files are now, in `mode` (for the
    signing key, its next phase). Raises RotatorError."""
    chosen = get_secret(secret)
    options = with_phase(
        chosen, RotationOptions(mode=mode), deployment.state_dir, deployment.values()
    )
    plan = make_plan(deployment, chosen, options=options)
    return PublishedPlan(plan, plan_basis(deployment, plan), datetime.now(UTC))


def plan_key(secret: str, mode: Mode) -> str:
    """A secret's entry among the published plans: a compromise has its own when it
    differs (sessions revoked, the signing key replaced at once)."""
    known = CATALOGUE.get(secret)
    if mode is Mode.COMPROMISE and known is not None and known.signs_sessions:
        return f"{secret}@{mode.value}"
    return secret


class PlanBook:
    """The published plans in Redis: the worker writes, the bot reads."""

    def __init__(self, redis: Redis, *, prefix: str = "rotator") -> None:
        self.redis, self.prefix = redis, prefix

    def _key(self, deployment: str) -> str:
        return f"{self.prefix}:plans:{deployment}"

    def publish(
        self,
        deployment: str,
        plans: Mapping[str, PublishedPlan | str],
        *,
        at: datetime,
        error: str = "",
    ) -> None:
        """Replace the deployment's plans (a plan, or why there is none, per secret)."""
        entries = {
            name: json.dumps(
                {"error": entry}
                if isinstance(entry, str)
                else {
                    "plan": entry.plan.to_json(),
                    "basis": entry.basis.to_json(),
                    "computed_at": entry.computed_at.isoformat(),
                }
            )
            for name, entry in plans.items()
        }
        stamp = {"checked_at": at.isoformat(), "computed_at": at.isoformat(), "error": error}
        stamp["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        pipe = self.redis.pipeline()
        pipe.delete(self._key(deployment))
        if entries:
            pipe.hset(self._key(deployment), mapping=entries)  # type: ignore[arg-type]
        pipe.set(f"{self._key(deployment)}:at", json.dumps(stamp))
        pipe.execute()

    def touch(self, deployment: str, at: datetime) -> None:
        """The plans are still current (nothing changed on disk)."""
        stamp = self.stamp(deployment) or {}
        stamp["checked_at"] = at.isoformat()
        self.redis.set(f"{self._key(deployment)}:at", json.dumps(stamp))

    def stamp(self, deployment: str) -> dict[str, str] | None:
        raw = cast(bytes | None, self.redis.get(f"{self._key(deployment)}:at"))
        return cast(dict[str, str], json.loads(raw)) if raw else None

    def last_seen(self, deployment: str) -> datetime | None:
        stamp = self.stamp(deployment)
        return datetime.fromisoformat(stamp["checked_at"]) if stamp else None

    def is_fresh(self, deployment: str, now: datetime, max_age: timedelta = MAX_AGE) -> bool:
        seen = self.last_seen(deployment)
        return seen is not None and now - seen <= max_age

    def get(
        self,
        deployment: str,
        secret: str,
        *,
        now: datetime,
        mode: Mode = Mode.PLANNED,
        max_age: timedelta = MAX_AGE,
    ) -> PublishedPlan:
        """The published plan for `secret`. Raises NoFreshPlan when no worker confirmed
        the deployment's plans within `max_age`, InputError when the worker could not
        plan it (the worker's reason)."""
        stamp = self.stamp(deployment)
        if stamp is None:
            raise NoFreshPlan(
                f"No worker has answered for deployment `{deployment}` yet, so I cannot "
                f"tell what would change. Start `rotator worker {deployment}` on its host."
            )
        seen = datetime.fromisoformat(stamp["checked_at"])
        if now - seen > max_age:
            raise NoFreshPlan(
                f"No worker answered for deployment `{deployment}` since "
                f"{seen.strftime('%Y-%m-%d %H:%M:%S UTC')}, so I cannot tell what would "
                f"change; nothing was requested. Is `rotator worker {deployment}` running?"
            )
        if stamp.get("error"):
            raise InputError(
                f"The worker for `{deployment}` cannot read the deployment: {stamp['error']}"
            )
        raw = cast(bytes | None, self.redis.hget(self._key(deployment), plan_key(secret, mode)))
        if raw is None:
            raise InputError(f"The worker for `{deployment}` published no plan for `{secret}`.")
        data: dict[str, Any] = json.loads(raw)
        if "error" in data:
            raise InputError(f"`{secret}` cannot be rotated on `{deployment}`: {data['error']}")
        return PublishedPlan(
            Plan.from_json(data["plan"]),
            PlanBasis.from_json(data["basis"]),
            datetime.fromisoformat(data["computed_at"]),
        )


class PlanPublisher:
    """The worker's side: keeps one deployment's published plans current."""

    def __init__(self, book: PlanBook, deployment: str, project: Path) -> None:
        self.book, self.deployment, self.project = book, deployment, project
        self._files: tuple[tuple[str, int, int, int], ...] | None = None
        self._computed: datetime | None = None
        self.state_dir: Path | None = None
        """The deployment's state directory, once it has loaded (for the audit log)."""

    def refresh(self, now: datetime) -> bool:
        """Publish anew if the files changed or it is time; else confirm. True if replanned."""
        files = self._stat()
        due = self._computed is None or now - self._computed >= timedelta(seconds=FULL_REFRESH_S)
        if files == self._files and not due:
            self.book.touch(self.deployment, now)
            return False
        self._publish(now)
        self._files, self._computed = files, now
        return True

    def _publish(self, now: datetime) -> None:
        try:
            deployment = Deployment.load(self.project)
        except RotatorError as exc:
            log.warning("cannot plan %s: %s", self.deployment, exc)
            self.book.publish(self.deployment, {}, at=now, error=str(exc))
            return
        self.state_dir = deployment.state_dir
        plans: dict[str, PublishedPlan | str] = {}
        for name in secret_names():
            for mode in Mode:
                key = plan_key(name, mode)
                if key in plans:
                    continue
                try:
                    plans[key] = current_plan(deployment, name, mode)
                except RotatorError as exc:
                    plans[key] = str(exc)
        self.book.publish(self.deployment, plans, at=now)

    def _stat(self) -> tuple[tuple[str, int, int, int], ...]:
        """Name, inode, size and mtime of `.env` and the YAML files: cheap change detection."""
        try:
            entries = sorted(
                p
                for p in self.project.iterdir()
                if p.name == ".env" or p.suffix in (".yml", ".yaml")
            )
            stats = [(p.name, p.stat()) for p in entries]
        except OSError:
            return ()
        return tuple((n, s.st_ino, s.st_size, s.st_mtime_ns) for n, s in stats)
