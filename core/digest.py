"""What an approval is bound to: a plan and the files it was computed from, as a digest.

A rotation is approved on a plan (the keys that change, the services recreated, the
database roles). If `.env` gains or loses keys, or a compose file changes, between the
approval and the window, a different rotation would run under the old approval; the worker
recomputes the basis just before the first change and stops for re-approval when its
digest differs.

Names and fingerprints only, never values: `.env` contributes its key names, the compose
files their bytes (they reference values as `${...}`; a hash reveals nothing either way).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.deployment import Deployment
from core.plan import Plan

__all__ = ["PlanBasis", "plan_basis"]


@dataclass(frozen=True)
class PlanBasis:
    secret: str
    env_keys: tuple[str, ...]
    services: tuple[str, ...]
    db_roles: tuple[str, ...]
    env_names: str
    """sha256 of the `.env` key names, sorted: a key added or removed shows."""
    compose_files: str
    """sha256 of the compose files' names and bytes."""

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short(self) -> str:
        """The first 12 hex digits, as shown in Slack."""
        return self.digest[:12]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanBasis:
        return cls(
            secret=str(data["secret"]),
            env_keys=tuple(data["env_keys"]),
            services=tuple(data["services"]),
            db_roles=tuple(data["db_roles"]),
            env_names=str(data["env_names"]),
            compose_files=str(data["compose_files"]),
        )

    def differences(self, now: PlanBasis) -> list[str]:
        """What changed from this (approved) basis to `now`, in words."""
        out: list[str] = []
        for name, label in (
            ("env_keys", "keys that change"),
            ("services", "services recreated"),
            ("db_roles", "database roles"),
        ):
            before, after = getattr(self, name), getattr(now, name)
            if before != after:
                out.append(f"{label}: {_names(before)} -> {_names(after)}")
        if self.env_names != now.env_names:
            out.append(".env gained or lost keys")
        if self.compose_files != now.compose_files:
            out.append("the compose files changed")
        if self.secret != now.secret:
            out.append(f"secret: {self.secret} -> {now.secret}")
        return out


def plan_basis(deployment: Deployment, plan: Plan) -> PlanBasis:
    """The basis of `plan`, computed on `deployment` as it is on disk now."""
    return PlanBasis(
        secret=plan.secret,
        env_keys=tuple(plan.env_keys),
        services=tuple(plan.services),
        db_roles=tuple(plan.db_roles),
        env_names=_sha256("\n".join(sorted(deployment.values())).encode()),
        compose_files=_files_digest(deployment.directory, compose_files(deployment)),
    )


def compose_files(deployment: Deployment) -> list[Path]:
    """Every file compose may read as a compose file: the YAML files at the top of the
    directory and those `COMPOSE_FILE` names. A superset on purpose: a change to any of
    them is worth a second look."""
    directory = deployment.directory
    found = {p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()}
    listed = deployment.values().get("COMPOSE_FILE", "")
    separator = deployment.values().get("COMPOSE_PATH_SEPARATOR") or None
    for name in re.split(f"[{re.escape(separator)}]" if separator else "[:;,]", listed):
        if name.strip():
            path = (directory / name.strip()).resolve()
            if path.is_file():
                found.add(path)
    return sorted(found)


def _files_digest(directory: Path, files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for path in files:
        name = path.relative_to(directory) if path.is_relative_to(directory) else path
        h.update(f"{name}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"
