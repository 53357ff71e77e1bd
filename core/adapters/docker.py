"""The Docker runtime: compose recreates services, the Docker SDK watches them.

Recreating goes through compose (`docker compose` v2), run exactly as the plan's
`compose config` ran (`project.command`: same argv, same clean environment, the
deployment directory as the working directory, no `-f` or `-p` of rotator's own), so
`.env` stays the single source of truth, compose finds the same files and project
name, and its own config hash stays right. Everything else (finding containers,
health, environments, exec) goes through the Docker SDK, which reads state without
a shell.

    runtime = DockerRuntime()
    runtime.services(project)                      # {"db": ServiceState(...), ...}
    runtime.recreate(project, env, ["auth", "rest"])   # returns once the new containers run
    runtime.wait_ready(project, env, ["auth", "rest"])  # healthy, or RuntimeFailure with logs
    runtime.exec_in(project, "db", ["psql", "-U", "supabase_admin", "-f", "-"], stdin=sql)

Secrets never travel in argv or in the compose process's environment: compose
reads them from the project's `.env` itself, and exec input travels on stdin.
Compose output and container logs are redacted before they leave this module.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from core.compose import DEFAULT_DOCKER_HOST, ComposeProject
from core.errors import ComposeUnsupported, PreflightFailed, RuntimeFailure
from core.redact import redact, secret_values
from core.runtime import ServiceState

__all__ = ["DockerRuntime"]

COMPOSE_TIMEOUT_S = 600.0
"""How long one `compose up` may run (it stops old containers, up to 10 s each)."""

EXEC_TIMEOUT_S = 300.0
"""How long a command run by `exec_in` may stay silent before it is abandoned."""

LOG_LINES = 30
"""How many of a failed service's last log lines a RuntimeFailure carries."""

POLL_INTERVAL_S = 0.2

HEALTH_CHECK_TIMEOUT_S = 5.0
"""How long one health check run by `wait_ready(run_checks=True)` may take when the
container's own check sets no timeout (Docker's default is 30 s; upstream's are 5 s)."""

UNHEALTHY_GRACE_S = 20.0
"""How long a recreated service may stay unhealthy before it counts as failed."""

_LABEL_PROJECT = "com.docker.compose.project"
_LABEL_SERVICE = "com.docker.compose.service"
_LABEL_ONEOFF = "com.docker.compose.oneoff"
_LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
_LABEL_CONFIG_HASH = "com.docker.compose.config-hash"


@dataclass(frozen=True)
class _Verdict:
    """One poll's judgement of a recreated service."""

    ready: bool
    failure: str = ""
    unhealthy: bool = False
    container: Container | None = None


class DockerRuntime:
    """`core.runtime.Runtime` on a Docker engine, with compose for recreates.

    Args:
        health_timeout_s: how long `wait_ready` waits, by default, for services
            to be ready, all together.
        client: a Docker SDK client. Defaults to one on DOCKER_HOST, else the
            local socket, created on first use.
    """

    def __init__(
        self,
        *,
        health_timeout_s: float = 120,
        client: docker.DockerClient | None = None,
    ) -> None:
        self.health_timeout_s = health_timeout_s
        self.docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._client = client

    # -- the Runtime protocol -------------------------------------------------------------

    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        containers = [c for c in self._containers(project) if not _is_leftover(c)]
        self._check_working_dir(project, containers)
        states: dict[str, ServiceState] = {}
        for container in sorted(containers, key=_name):
            state = _service_state(container)
            known = states.get(state.service)
            # With several containers for one service (scale > 1) report the worst.
            if known is None or (known.is_ready and not state.is_ready):
                states[state.service] = state
        return states

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        if not services:
            return
        secrets = secret_values(env)
        self.remove_leftovers(project, services)
        everything = self._containers(project)
        self._check_working_dir(project, everything)
        wanted = set(services)
        before = {c.id for c in everything if c.labels.get(_LABEL_SERVICE) in wanted}
        output = self._compose_up(project, services, secrets)
        containers = self._containers(project, services)
        # Compose v2 exits 0 on an unknown service name; judge by what it created.
        missing = wanted - {c.labels.get(_LABEL_SERVICE) for c in containers}
        if missing:
            service = sorted(missing)[0]
            raise RuntimeFailure(
                f"compose created no container for service {service}", service=service, logs=output
            )
        for container in containers:
            if container.id in before:
                service = container.labels[_LABEL_SERVICE]
                reason = "kept its old container (compose did not recreate it)"
                self._fail(service, reason, container, secrets)

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
        timeout = timeout_s or self.health_timeout_s
        checks = _HealthChecks(self.client.api) if run_checks else None
        try:
            return self._wait_ready(
                project, services, secret_values(env), timeout, any_ready, checks
            )
        finally:
            if checks is not None:
                checks.close()

    def now(self) -> float:
        try:
            return _timestamp(self.client.info().get("SystemTime"))
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"cannot read the Docker daemon's clock: {exc}") from None

    def recreated_since(
        self, project: ComposeProject, services: Sequence[str], since: float
    ) -> list[str]:
        if not services or since <= 0:
            return []
        wanted = self._config_hashes(project, services)
        try:
            found = self._by_service(project, services)
        except docker.errors.DockerException:
            return []  # only a second recreate is at stake: do it
        return [
            service
            for service, containers in found.items()
            if containers
            and wanted.get(service) is not None
            and all(
                container.status == "running"
                and _timestamp(container.attrs.get("Created")) >= since
                and container.labels.get(_LABEL_CONFIG_HASH) == wanted[service]
                for container in containers
            )
        ]

    def _config_hashes(self, project: ComposeProject, services: Sequence[str]) -> dict[str, str]:
        """Compose's hash of each service's configuration as it would create it now (the
        label it puts on the container); empty when compose cannot say."""
        try:
            done = project.command.run(
                _directory(project),
                ["config", "--hash", ",".join(services)],
                timeout_s=COMPOSE_TIMEOUT_S,
            )
        except (ComposeUnsupported, subprocess.TimeoutExpired):
            return {}
        if done.returncode != 0:
            return {}
        pairs = (line.split() for line in _decode(done.stdout).splitlines())
        return {fields[0]: fields[1] for fields in pairs if len(fields) == 2}

    def remove_leftovers(self, project: ComposeProject, services: Sequence[str]) -> list[str]:
        """Remove the containers compose left half-made when it was killed mid-recreate.

        Compose v2 recreates a service by creating the new container as
        `<old id[:12]>_<name>`, removing the old one, then renaming the new one. Killed in
        between, the service is left with only that temporary container, never started.
        Compose does not adopt it under the real name, so it is removed and the service
        created afresh.
        """
        removed = []
        for container in self._containers(project, services):
            if _is_leftover(container):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    continue
                except docker.errors.DockerException as exc:
                    raise RuntimeFailure(
                        f"cannot remove compose's leftover container {_name(container)}: "
                        f"{type(exc).__name__}",
                        service=container.labels.get(_LABEL_SERVICE, ""),
                    ) from exc
                removed.append(_name(container))
        return removed

    def container_env(self, project: ComposeProject, service: str) -> dict[str, str]:
        return _env_of(self._container(project, service))

    def resolve_host(self, project: ComposeProject, host: str) -> str:
        for container in self._containers(project):
            if container.labels.get(_LABEL_SERVICE) == host or _name(container) == host:
                return _address(container, host)
        if host in project.service_names():
            raise RuntimeFailure(f"service {host} has no container", service=host)
        return host

    def exec_in(
        self, project: ComposeProject, service: str, argv: Sequence[str], stdin: bytes = b""
    ) -> tuple[int, bytes]:
        """Run argv in the service's container, feeding stdin; returns (exit code, output).

        The output is the command's stdout followed by its stderr; `exec_split`
        keeps them apart.
        """
        code, out, err = self.exec_split(project, service, argv, stdin)
        return code, out + err

    # -- beyond the protocol ----------------------------------------------------------------

    def exec_split(
        self, project: ComposeProject, service: str, argv: Sequence[str], stdin: bytes = b""
    ) -> tuple[int, bytes, bytes]:
        """`docker exec -i` through the engine API: returns (exit code, stdout, stderr)."""
        container = self._container(project, service)
        if container.status != "running":
            raise RuntimeFailure(
                f"cannot exec in service {service}: its container is {container.status}",
                service=service,
            )
        api = self.client.api
        what = argv[0] if argv else "?"
        try:
            exec_id = str(
                api.exec_create(container.id, list(argv), stdin=True, stdout=True, stderr=True)[
                    "Id"
                ]
            )
            conn = api.exec_start(exec_id, socket=True)
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(
                f"exec of {what} in service {service} failed: {type(exc).__name__}",
                service=service,
            ) from exc
        raw: Any = getattr(conn, "_sock", conn)
        try:
            raw.settimeout(EXEC_TIMEOUT_S)
            stdout, stderr = _exchange(raw, stdin)
        except OSError as exc:
            raise RuntimeFailure(
                f"exec of {what} in service {service} failed: {type(exc).__name__}",
                service=service,
            ) from exc
        finally:
            # Closing the SocketIO wrapper leaves the socket itself open.
            raw.close()
            conn.close()
        return self._exec_exit_code(exec_id, service), stdout, stderr

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client, created on first use (creating one asks the engine its version)."""
        if self._client is None:
            try:
                self._client = docker.DockerClient(base_url=self.docker_host)
            except docker.errors.DockerException as exc:
                raise PreflightFailed(
                    f"cannot reach the Docker engine at {self.docker_host}: {exc}"
                ) from exc
        return self._client

    # -- compose -----------------------------------------------------------------------------

    def compose_up_args(self, services: Sequence[str]) -> list[str]:
        """The arguments after the compose command that recreate `services`. No values."""
        return ["up", "-d", "--no-deps", "--force-recreate", *services]

    def _compose_up(
        self, project: ComposeProject, services: Sequence[str], secrets: Iterable[str]
    ) -> str:
        """Run compose up for `services`; returns its output, redacted."""
        command = project.command
        listed = ", ".join(services)
        try:
            done = command.run(
                _directory(project), self.compose_up_args(services), timeout_s=COMPOSE_TIMEOUT_S
            )
        except ComposeUnsupported as exc:  # gone since the plan ran: a step failure now
            raise RuntimeFailure(str(exc)) from None
        except subprocess.TimeoutExpired as exc:
            output = _decode(exc.stderr) if isinstance(exc.stderr, bytes) else ""
            raise RuntimeFailure(
                f"{command.display} up did not finish within {COMPOSE_TIMEOUT_S:.0f} s "
                f"for {listed}",
                logs=_tail(redact(output, secrets)),
            ) from None  # TimeoutExpired holds compose's raw output: do not chain it
        output = _tail(redact(_decode(done.stderr) + _decode(done.stdout), secrets))
        if done.returncode != 0:
            raise RuntimeFailure(
                f"{command.display} up exited with code {done.returncode} for {listed}",
                logs=output,
            )
        return output

    # -- health -------------------------------------------------------------------------------

    def _wait_ready(
        self,
        project: ComposeProject,
        services: Sequence[str],
        secrets: list[str],
        timeout_s: float,
        any_ready: bool,
        checks: _HealthChecks | None = None,
    ) -> list[str]:
        deadline = time.monotonic() + timeout_s
        wanted = list(dict.fromkeys(services))
        pending = list(wanted)
        unhealthy_since: dict[str, float] = {}
        while True:
            found = self._by_service(project, pending)
            still: list[str] = []
            now = time.monotonic()
            for service in pending:
                verdict = _judge(service, found[service])
                if verdict.failure:
                    self._fail(service, verdict.failure, verdict.container, secrets)
                if verdict.unhealthy:
                    since = unhealthy_since.setdefault(service, now)
                    if now - since >= UNHEALTHY_GRACE_S:
                        reason = f"stayed unhealthy for {UNHEALTHY_GRACE_S:g} s"
                        self._fail(service, reason, verdict.container, secrets)
                else:
                    unhealthy_since.pop(service, None)
                if checks is not None and checks.applies(found[service]):
                    ready = checks.passed(service, found[service])
                else:
                    ready = verdict.ready
                if not ready:
                    still.append(service)
            if not still or (any_ready and len(still) < len(pending)):
                return [service for service in wanted if service not in still]
            pending = still
            if now >= deadline:
                service = pending[0]
                containers = found[service]
                health = _health(containers[0]) if containers else "no container"
                self._fail(
                    service,
                    f"did not turn healthy within {timeout_s:g} s (health: {health})",
                    containers[0] if containers else None,
                    secrets,
                )
            time.sleep(POLL_INTERVAL_S)

    def _fail(
        self, service: str, reason: str, container: Container | None, secrets: list[str]
    ) -> None:
        logs = ""
        if container is not None:
            # Redact what the container itself was given too, in case it differs from .env.
            secrets = [*secrets, *secret_values(_env_of(container))]
            logs = redact(_last_logs(container) + _last_health_output(container), secrets)
        raise RuntimeFailure(
            f"service {service} {reason} after recreate", service=service, logs=logs
        )

    # -- containers ---------------------------------------------------------------------------

    def _by_service(
        self, project: ComposeProject, services: Sequence[str]
    ) -> dict[str, list[Container]]:
        """Each of `services` and its containers, compose's half-made leftovers left out."""
        found: dict[str, list[Container]] = {service: [] for service in services}
        for container in self._containers(project, services):
            if not _is_leftover(container):
                found[container.labels[_LABEL_SERVICE]].append(container)
        return found

    def _containers(
        self, project: ComposeProject, services: Sequence[str] | None = None
    ) -> list[Container]:
        """The project's service containers (one-off `run` containers excluded)."""
        labels = [f"{_LABEL_PROJECT}={project.name}", f"{_LABEL_ONEOFF}=False"]
        if services is not None and len(services) == 1:
            labels.append(f"{_LABEL_SERVICE}={services[0]}")
        try:
            containers = self.client.containers.list(
                all=True, filters={"label": labels}, ignore_removed=True
            )
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(
                f"cannot list the containers of project {project.name}: {type(exc).__name__}"
            ) from exc
        if services is not None:
            wanted = set(services)
            containers = [c for c in containers if c.labels.get(_LABEL_SERVICE) in wanted]
        return containers

    def _container(self, project: ComposeProject, service: str) -> Container:
        containers = self._containers(project, [service])
        if not containers:
            raise RuntimeFailure(
                f"service {service} has no container in project {project.name}", service=service
            )
        running = [c for c in containers if c.status == "running"]
        return sorted(running or containers, key=_name)[0]

    def _check_working_dir(self, project: ComposeProject, containers: list[Container]) -> None:
        directory = _directory(project)
        strangers: dict[str, list[str]] = {}
        for container in containers:
            label = container.labels.get(_LABEL_WORKING_DIR, "")
            if not label or Path(label).resolve() != directory:
                strangers.setdefault(label or "(no working_dir label)", []).append(_name(container))
        if not strangers:
            return
        seen = "; ".join(
            f"{where} ({', '.join(sorted(names))})" for where, names in sorted(strangers.items())
        )
        raise PreflightFailed(
            f"containers of compose project {project.name} were started from another "
            f"directory than {directory}: {seen}. Either another deployment uses the same "
            f"project name, or rotator sees the Supabase directory at a different path than "
            f"the Docker host does (a worker in a container must mount it at the same "
            f"absolute path). Recreating from here would resolve relative bind mounts such "
            f"as ./volumes/db/data against the wrong directory and could start db on an "
            f"empty data directory. Nothing was changed."
        )

    def _exec_exit_code(self, exec_id: str, service: str) -> int:
        deadline = time.monotonic() + 10
        while True:
            info = self.client.api.exec_inspect(exec_id)
            code = info.get("ExitCode")
            if not info.get("Running") and code is not None:
                return int(code)
            if time.monotonic() >= deadline:
                raise RuntimeFailure(
                    f"exec in service {service} ended without an exit code", service=service
                )
            time.sleep(0.05)


# -- helpers ------------------------------------------------------------------------------------


def _directory(project: ComposeProject) -> Path:
    return Path(project.directory).resolve()


def _name(container: Container) -> str:
    return container.name or str(container.id)


_LEFTOVER_NAME = re.compile(r"^[0-9a-f]{12}_")


def _is_leftover(container: Container) -> bool:
    """A container compose created under a temporary name and never started (see
    DockerRuntime.remove_leftovers). A running one is left alone: it is serving."""
    return bool(_LEFTOVER_NAME.match(_name(container))) and container.status != "running"


def _timestamp(text: object) -> float:
    """Docker's RFC 3339 time (nanoseconds, UTC), in seconds since the epoch; 0 if absent."""
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0


def _health(container: Container) -> str:
    health = container.attrs.get("State", {}).get("Health")
    if not health:
        return "none"
    return str(health.get("Status", "none"))


def _service_state(container: Container) -> ServiceState:
    return ServiceState(
        service=container.labels.get(_LABEL_SERVICE, ""),
        container=_name(container),
        status=container.status,
        health=_health(container),
    )


def _judge(service: str, containers: list[Container]) -> _Verdict:
    """Ready, failed (with why), unhealthy for now, or not yet; for all of a service's
    containers at once."""
    if not containers:
        return _Verdict(ready=False)
    for container in containers:
        state = container.attrs.get("State", {})
        status = container.status
        if status in ("exited", "dead"):
            reason = f"{status} with code {state.get('ExitCode')}"
            return _Verdict(False, reason, container=container)
        if status == "restarting" or int(state.get("RestartCount") or 0) > 0:
            # A restart policy turns "exited" into "restarting": the process died.
            return _Verdict(False, "exited and is restarting", container=container)
        if _health(container) == "unhealthy":
            # Not final: Docker keeps probing, and a service that needs one recreated
            # after it (a dependency compose does not know of) recovers once it is back.
            return _Verdict(False, unhealthy=True, container=container)
    if all(_service_state(c).is_ready for c in containers):
        return _Verdict(ready=True)
    return _Verdict(ready=False)


class _HealthChecks:
    """Runs each container's own health check test through `exec`, at most one at a
    time per container, in a few threads so that a slow check does not hold up the
    others; `passed` says whether the last finished run exited 0.

    Docker runs the same test itself only every `interval` (realtime: 30 s; Docker 20.10
    has no faster start interval), so a restart waiting on Docker's status waits that
    long for a service that answered within a second. The test is the one Docker runs,
    as compose resolved it, in the same container: it can be no more lenient. Its
    argv is visible inside the container exactly as Docker's own runs are; its output,
    which may echo values, is discarded.
    """

    def __init__(self, api: Any) -> None:
        self._api = api
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-check")
        self._runs: dict[str, tuple[str, Future[bool]]] = {}
        self._passed: dict[str, str] = {}
        """Service -> the id of the container whose check last passed."""

    @staticmethod
    def applies(containers: list[Container]) -> bool:
        """Whether the service is one running container with a health check test (else
        Docker's status alone says whether it is ready)."""
        return (
            len(containers) == 1
            and containers[0].status == "running"
            and _health_test(containers[0]) is not None
        )

    def passed(self, service: str, containers: list[Container]) -> bool:
        """Whether the service's container passed its test when run here, whatever
        Docker's status says (it may be minutes old); starts a run when none is in
        flight. Only for services it `applies` to."""
        container = containers[0]
        test = _health_test(container)
        if test is None:
            return False
        cid = str(container.id)
        run = self._runs.get(service)
        if run is not None and run[0] == cid and run[1].done() and run[1].result():
            self._passed[service] = cid
        if self._passed.get(service) == cid:
            return True
        if run is None or run[0] != cid or run[1].done():
            timeout = _health_timeout(container)
            self._runs[service] = (cid, self._pool.submit(self._run, cid, test, timeout))
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, container_id: str, argv: list[str], timeout_s: float) -> bool:
        """Run the test once; a test that fails, hangs past its timeout or cannot run
        at all (the container is stopping) has not passed."""
        try:
            exec_id = str(self._api.exec_create(container_id, argv, stdout=True, stderr=True)["Id"])
            conn = self._api.exec_start(exec_id, socket=True)
        except docker.errors.DockerException:
            return False
        raw: Any = getattr(conn, "_sock", conn)
        try:
            raw.settimeout(timeout_s)
            _exchange(raw, b"")
        except OSError:
            return False
        finally:
            raw.close()
            conn.close()
        try:
            info = self._api.exec_inspect(exec_id)
        except docker.errors.DockerException:
            return False
        return not info.get("Running") and info.get("ExitCode") == 0


def _health_test(container: Container) -> list[str] | None:
    """The container's health check test as argv for exec, or None when it has none."""
    check = container.attrs.get("Config", {}).get("Healthcheck") or {}
    test = [str(part) for part in check.get("Test") or []]
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":  # what Docker does with a string test
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return test[1:] or None
    return None


def _health_timeout(container: Container) -> float:
    nanoseconds = (container.attrs.get("Config", {}).get("Healthcheck") or {}).get("Timeout")
    return nanoseconds / 1e9 if nanoseconds else HEALTH_CHECK_TIMEOUT_S


def _env_of(container: Container) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.attrs.get("Config", {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def _address(container: Container, host: str) -> str:
    settings = container.attrs.get("HostConfig", {})
    if settings.get("NetworkMode") == "host":
        return "127.0.0.1"
    networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    for name in sorted(networks):
        address = (networks[name] or {}).get("IPAddress")
        if address:
            return str(address)
    raise RuntimeFailure(f"service {host} has no network address", service=host)


def _last_logs(container: Container) -> str:
    try:
        logs = container.logs(stdout=True, stderr=True, tail=LOG_LINES)
    except docker.errors.DockerException:
        return ""
    return _decode(logs)


def _last_health_output(container: Container) -> str:
    health = container.attrs.get("State", {}).get("Health") or {}
    log = health.get("Log") or []
    if not log:
        return ""
    output = str(log[-1].get("Output", "")).strip()
    return f"\n[last health check, exit {log[-1].get('ExitCode')}] {output}\n" if output else ""


def _decode(data: bytes | None) -> str:
    return data.decode("utf-8", errors="replace") if data else ""


def _tail(text: str, lines: int = LOG_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _exchange(sock: Any, stdin: bytes) -> tuple[bytes, bytes]:
    """Feed stdin to an attached exec (then close our write side) and read its output.

    The engine multiplexes stdout and stderr on one stream of frames: an 8-byte
    header (stream id, 3 zero bytes, big-endian payload length) and the payload.
    Stdin is written from a thread so a command that answers before reading all
    its input cannot deadlock us.
    """
    errors: list[OSError] = []

    def feed() -> None:
        try:
            if stdin:
                sock.sendall(stdin)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the command may exit without reading its input
            errors.append(exc)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = bytearray()
    err = bytearray()
    while True:
        header = _read_exactly(sock, 8)
        if header is None:
            break
        stream, length = struct.unpack(">BxxxL", header)
        payload = _read_exactly(sock, length) or b""
        (err if stream == 2 else out).extend(payload)
    writer.join(timeout=5)
    return bytes(out), bytes(err)


def _read_exactly(sock: Any, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None if not data else bytes(data)
        data.extend(chunk)
    return bytes(data)
