"""A runtime that records what the engine asks, for tests without Docker.

It is faithful where it matters to the engine: each "container" keeps the
environment it was created with, computed from the compose file and the .env
as it was at that moment, so a service that was not recreated still holds the
old values, exactly like a real container.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.compose import ComposeProject
from core.errors import RuntimeFailure
from core.jwtkeys import api_key_payload, sign_hs256
from core.runtime import ServiceState


class RecordingRuntime:
    def __init__(self, project: ComposeProject, *, fail_on: Sequence[str] = ()) -> None:
        self.recreated: list[list[str]] = []
        self.fail_on = set(fail_on)
        resolved = _resolved_now(project)
        self.envs: dict[str, dict[str, str]] = {
            name: _environment(resolved[name]) for name in project.service_names()
        }
        self.health: dict[str, str] = dict.fromkeys(self.envs, "healthy")
        self.created: dict[str, float] = dict.fromkeys(self.envs, 0.0)

    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        return {
            name: ServiceState(name, f"{project.name}-{name}-1", "running", self.health[name])
            for name in self.envs
        }

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        self.recreated.append(list(services))
        resolved = _resolved_now(project)
        for name in services:
            self.envs[name] = _environment(resolved[name])
            self.created[name] = time.time()
            # A service in fail_on fails once, like one that cannot start on the new
            # value and comes back on the old one during rollback.
            self.health[name] = "unhealthy" if name in self.fail_on else "healthy"
            self.fail_on.discard(name)

    def wait_ready(
        self,
        project: ComposeProject,
        env: Mapping[str, str],
        services: Sequence[str],
        *,
        timeout_s: float | None = None,
        any_ready: bool = False,
        run_checks: bool = False,
    ) -> list[str]:
        for name in services:
            if self.health[name] == "unhealthy":
                raise RuntimeFailure(
                    f"service {name} stayed unhealthy after recreate",
                    service=name,
                    logs="fake: boom",
                )
        return list(services)

    def now(self) -> float:
        return time.time()

    def recreated_since(
        self, project: ComposeProject, services: Sequence[str], since: float
    ) -> list[str]:
        """As Docker's: created since then, with the environment compose would give now
        (the fake's whole configuration)."""
        resolved = _resolved_now(project)
        return [
            name
            for name in services
            if self.created[name] >= since and self.envs[name] == _environment(resolved[name])
        ]

    def remove_leftovers(self, project: ComposeProject, services: Sequence[str]) -> list[str]:
        return []  # compose never runs here, so it leaves nothing half-made

    def container_env(self, project: ComposeProject, service: str) -> dict[str, str]:
        return dict(self.envs[service])

    def resolve_host(self, project: ComposeProject, host: str) -> str:
        return host

    def exec_in(
        self, project: ComposeProject, service: str, argv: Sequence[str], stdin: bytes = b""
    ) -> tuple[int, bytes]:
        raise NotImplementedError("the recording runtime has no containers to exec into")


def _resolved_now(project: ComposeProject) -> dict[str, dict[str, object]]:
    """The services as compose resolves them from the .env on disk right now, which is
    what a container created at this moment gets."""
    return ComposeProject.load(project.directory, command=project.command).resolve()


def _environment(service: Mapping[str, object]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def render_template(template: Path, target: Path, values: Mapping[str, str]) -> None:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    target.write_text(text)
    target.chmod(0o640)


MINI_SUPABASE = Path(__file__).resolve().parent / "fixtures" / "mini-supabase"
MINI_JWT_SECRET = "mini-supabase-jwt-secret-with-at-least-32-characters"
"""The JWT_SECRET written in mini-supabase's env.template."""


def make_mini_deployment(directory: Path, *, password: str, host: str, port: int) -> Path:
    """A copy of tests/fixtures/mini-supabase in `directory`, .env rendered: the database
    at host:port with `password`, API keys signed with the template's JWT secret."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "docker-compose.yml").write_text(
        (MINI_SUPABASE / "docker-compose.yml").read_text()
    )
    render_template(
        MINI_SUPABASE / "env.template",
        directory / ".env",
        {
            "POSTGRES_PASSWORD": password,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(port),
            "ANON_KEY": sign_hs256(api_key_payload("anon", 1_700_000_000), MINI_JWT_SECRET),
            "SERVICE_ROLE_KEY": sign_hs256(
                api_key_payload("service_role", 1_700_000_000), MINI_JWT_SECRET
            ),
        },
    )
    return directory
