"""The port through which the engine touches running containers.

The engine never imports Docker. It asks a `Runtime` to check the deployment,
recreate services and read their environments; `core.adapters.docker` is the
real implementation, and tests may pass one that records what it was asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.compose import ComposeProject


@dataclass(frozen=True)
class ServiceState:
    """What the runtime knows of one compose service's container."""

    service: str
    container: str
    status: str
    """Docker's state: running, exited, restarting, ..."""
    health: str
    """healthy, unhealthy, starting, or none when the service has no health check."""

    @property
    def is_ready(self) -> bool:
        return self.status == "running" and self.health in ("healthy", "none")


class Runtime(Protocol):
    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        """The deployment's containers, found by their compose labels, by service name.

        Raises PreflightFailed when containers of this project name run from
        another directory (compose's working_dir label), so rotator never
        edits one deployment while restarting another.
        """
        ...

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        """Recreate these services (never restart: a restart keeps the old environment).

        Returns once their new containers run, without waiting for health checks:
        the engine decides what to wait for. `env` is the deployment's .env as
        compose reads it, passed so the implementation can redact the output it
        reports. Raises RuntimeFailure when compose fails or keeps an old container.
        """
        ...

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
        """Wait until each service (with `any_ready`: one of them) runs and passes its
        health check; returns the services found ready.

        By default a health check passes when the runtime's own status says so (Docker
        runs the check every `interval`). With `run_checks`, the check is run in the
        container at every poll instead, so a service counts as ready as soon as it is,
        and only if it is now (Docker's status may predate a restart under it).

        Raises RuntimeFailure naming the first service that exited, crash-loops,
        stays unhealthy, or is not ready in time, with its last log lines, redacted.
        """
        ...

    def now(self) -> float:
        """The runtime's own clock (the Docker daemon's), in seconds since the epoch: the
        clock containers' creation times are read on, whatever this host's says."""
        ...

    def recreated_since(
        self, project: ComposeProject, services: Sequence[str], since: float
    ) -> list[str]:
        """Those of `services` whose containers all run, were created at or after `since`
        (a `now()` reading) and are what compose would create now: its config hash of the
        service, which covers the values from `.env`, matches the container's label
        (compose leaves `env_file` contents out of the hash it prints, so such a service
        never matches and is recreated again). Recovery keeps these instead of recreating
        them a second time; when the runtime cannot tell, it names none."""
        ...

    def remove_leftovers(self, project: ComposeProject, services: Sequence[str]) -> list[str]:
        """Remove containers a killed compose left half-made for these services (they are
        never started under the service's name); returns their names."""
        ...

    def container_env(self, project: ComposeProject, service: str) -> dict[str, str]:
        """The environment the service's running container was created with."""
        ...

    def resolve_host(self, project: ComposeProject, host: str) -> str:
        """An address the engine can reach for `host`: a compose service name
        becomes its container's address; anything else is returned as is."""
        ...

    def exec_in(
        self, project: ComposeProject, service: str, argv: Sequence[str], stdin: bytes = b""
    ) -> tuple[int, bytes]:
        """Run argv in the service's container, feeding stdin; returns (exit code, output).

        Secrets travel in stdin, never in argv, so they never show in `ps`.
        """
        ...
