"""A runtime that records what the engine asks, for tests without Docker.

It is faithful where it matters to the engine: each "container" keeps the
environment it was created with, computed from the compose file and the .env
as it was at that moment, so a service that was not recreated still holds the
old values, exactly like a real container.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from core.compose import ComposeProject
from core.envfile import EnvFile
from core.errors import RuntimeFailure
from core.runtime import ServiceState


class RecordingRuntime:
    def __init__(self, project: ComposeProject, *, fail_on: Sequence[str] = ()) -> None:
        self.recreated: list[list[str]] = []
        self.fail_on = set(fail_on)
        env = EnvFile.read(project.directory / ".env").as_dict()
        resolved = project.resolve(env)
        self.envs: dict[str, dict[str, str]] = {
            name: _environment(resolved[name]) for name in project.service_names()
        }
        self.health: dict[str, str] = dict.fromkeys(self.envs, "healthy")

    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        return {
            name: ServiceState(name, f"{project.name}-{name}-1", "running", self.health[name])
            for name in self.envs
        }

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        self.recreated.append(list(services))
        resolved = project.resolve(EnvFile.read(project.directory / ".env").as_dict())
        for name in services:
            self.envs[name] = _environment(resolved[name])
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
    ) -> None:
        for name in services:
            if self.health[name] == "unhealthy":
                raise RuntimeFailure(
                    f"service {name} stayed unhealthy after recreate",
                    service=name,
                    logs="fake: boom",
                )

    def container_env(self, project: ComposeProject, service: str) -> dict[str, str]:
        return dict(self.envs[service])

    def resolve_host(self, project: ComposeProject, host: str) -> str:
        return host

    def exec_in(
        self, project: ComposeProject, service: str, argv: Sequence[str], stdin: bytes = b""
    ) -> tuple[int, bytes]:
        raise NotImplementedError("the recording runtime has no containers to exec into")


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
