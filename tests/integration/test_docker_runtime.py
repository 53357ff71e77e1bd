"""DockerRuntime against a real Docker engine and a real compose command.

Each test gets its own three-service project (tests/fixtures/docker/trio: db <-
auth <- api, host networking, health checks) under a unique project name, started
with the same compose command the runtime uses, and removed afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from core.adapters.docker import DockerRuntime
from core.compose import ComposeCommand, ComposeProject
from core.errors import PreflightFailed, RuntimeFailure
from core.redact import REDACTED

TRIO = Path(__file__).resolve().parents[1] / "fixtures" / "docker" / "trio"
SERVICES = ("db", "auth", "api")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def compose_command() -> ComposeCommand:
    """The compose command rotator uses (ROTATOR_COMPOSE_COMMAND or `docker compose`)."""
    return ComposeCommand.from_environment()


@dataclass
class Trio:
    """A running three-service project and the runtime pointed at it."""

    directory: Path
    env: dict[str, str]
    runtime: DockerRuntime
    client: docker.DockerClient
    project: ComposeProject = field(init=False)

    def __post_init__(self) -> None:
        self.write_env()

    def write_env(self, **changes: str) -> None:
        """Rewrite .env with these changes, as the engine's commit step would."""
        self.env.update(changes)
        text = "".join(f"{key}={value}\n" for key, value in self.env.items())
        (self.directory / ".env").write_text(text)
        self.project = ComposeProject.load(self.directory, values=self.env)

    @property
    def name(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    def container(self, service: str) -> Container:
        found = self.client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.name}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        assert len(found) == 1, f"{service}: {len(found)} containers"
        return found[0]

    def snapshot(self) -> dict[str, tuple[str, str]]:
        """Each service's (container id, State.StartedAt)."""
        snap = {}
        for service in SERVICES:
            c = self.container(service)
            snap[service] = (str(c.id), str(c.attrs["State"]["StartedAt"]))
        return snap

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.runtime.services(self.project)
            if len(states) == len(SERVICES) and all(s.is_ready for s in states.values()):
                return
            assert time.monotonic() < deadline, f"trio never turned ready: {states}"
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remove_project(client: docker.DockerClient, name: str) -> None:
    label: dict[str, str | list[str] | bool] = {"label": f"com.docker.compose.project={name}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()


@pytest.fixture
def trio(
    tmp_path: Path, docker_client: docker.DockerClient, compose_command: ComposeCommand
) -> Iterator[Trio]:
    directory = tmp_path / "trio"
    directory.mkdir()
    shutil.copy(TRIO / "docker-compose.yml", directory / "docker-compose.yml")
    name = f"rtrio{uuid.uuid4().hex[:10]}"
    env = {
        "COMPOSE_PROJECT_NAME": name,
        "DB_PORT": str(_free_port()),
        "AUTH_PORT": str(_free_port()),
        "API_PORT": str(_free_port()),
        "DB_PASSWORD": secrets.token_hex(16),
        "AUTH_JWT_SECRET": secrets.token_urlsafe(24) + "/+=",  # URL-encoding changes it
        "API_KEY": secrets.token_hex(20),
    }
    runtime = DockerRuntime(health_timeout_s=30, client=docker_client)
    t = Trio(directory=directory, env=env, runtime=runtime, client=docker_client)
    try:
        compose_command.run(directory, ["up", "-d"], timeout_s=180).check_returncode()
        t.wait_ready()
        yield t
    finally:
        _remove_project(docker_client, name)


# -- services ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_services_finds_each_service_by_its_compose_labels(trio: Trio) -> None:
    states = trio.runtime.services(trio.project)

    assert sorted(states) == sorted(SERVICES)
    for service, state in states.items():
        assert state.service == service
        assert state.container == trio.container(service).name
        assert (state.status, state.health) == ("running", "healthy")


@pytest.mark.docker
def test_containers_started_from_another_directory_are_refused(trio: Trio, tmp_path: Path) -> None:
    # Same project name, different directory: another deployment, or a worker that
    # sees the Supabase directory at another path than the Docker host does.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trio.directory, elsewhere)
    impostor = ComposeProject.load(elsewhere, values=trio.env)
    before = trio.snapshot()

    with pytest.raises(PreflightFailed) as services_error:
        trio.runtime.services(impostor)
    with pytest.raises(PreflightFailed) as recreate_error:
        trio.runtime.recreate(impostor, trio.env, ["auth"])

    for error in (services_error, recreate_error):
        assert str(trio.directory.resolve()) in str(error.value)
        assert "same absolute path" in str(error.value)
    assert trio.snapshot() == before


# -- recreate ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_recreate_gives_the_service_a_new_container_and_leaves_the_others_running(
    trio: Trio,
) -> None:
    before = trio.snapshot()
    old_secret = trio.env["AUTH_JWT_SECRET"]
    trio.write_env(AUTH_JWT_SECRET=secrets.token_hex(24))

    started = time.monotonic()
    trio.runtime.recreate(trio.project, trio.env, ["auth"])
    trio.runtime.wait_ready(trio.project, trio.env, ["auth"])
    elapsed = time.monotonic() - started
    print(f"recreate auth ({trio.project.command.display}): {elapsed:.2f} s")

    after = trio.snapshot()
    assert after["auth"][0] != before["auth"][0]
    assert after["db"] == before["db"]  # same container, never restarted (StartedAt)
    assert after["api"] == before["api"]  # a dependent is not touched either
    env = trio.runtime.container_env(trio.project, "auth")
    assert env["SERVICE_SECRET"] == trio.env["AUTH_JWT_SECRET"] != old_secret
    assert all(s.is_ready for s in trio.runtime.services(trio.project).values())


@pytest.mark.docker
def test_recreate_takes_values_from_env_file_not_from_the_callers_environment(
    trio: Trio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose prefers the shell's environment to .env; the runtime must not hand it one.
    monkeypatch.setenv("AUTH_JWT_SECRET", "shell-value-that-must-not-win")
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "some-other-project")
    trio.write_env(AUTH_JWT_SECRET=secrets.token_hex(24))

    trio.runtime.recreate(trio.project, trio.env, ["auth"])

    env = trio.runtime.container_env(trio.project, "auth")
    assert env["SERVICE_SECRET"] == trio.env["AUTH_JWT_SECRET"]
    assert "AUTH_JWT_SECRET" not in trio.project.command.environment()


@pytest.mark.docker
def test_an_unhealthy_service_fails_the_wait_with_its_name_and_redacted_logs(
    trio: Trio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.adapters.docker.UNHEALTHY_GRACE_S", 2.0)
    secret = trio.env["AUTH_JWT_SECRET"]
    trio.write_env(AUTH_HEALTHY="no")

    with pytest.raises(RuntimeFailure) as failure:
        trio.runtime.recreate(trio.project, trio.env, ["auth"])
        trio.runtime.wait_ready(trio.project, trio.env, ["auth"])

    error = failure.value
    assert error.service == "auth"
    assert "auth" in str(error)
    assert "stayed unhealthy for 2 s" in str(error)  # after the grace, not the timeout
    assert "starting with secret" in error.logs  # the service's own log line is there...
    assert REDACTED in error.logs
    assert secret not in error.logs  # ...without the secret, raw or URL-encoded
    assert quote(secret, safe="") not in error.logs
    assert secret not in str(error)


@pytest.mark.docker
def test_a_crashing_service_fails_the_wait_without_waiting_for_the_timeout(
    trio: Trio,
) -> None:
    trio.write_env(AUTH_CRASH="yes")
    trio.runtime.health_timeout_s = 600

    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as failure:
        trio.runtime.recreate(trio.project, trio.env, ["auth"])
        trio.runtime.wait_ready(trio.project, trio.env, ["auth"])

    assert failure.value.service == "auth"
    assert "exited" in str(failure.value)
    assert time.monotonic() - started < 600
    assert trio.env["DB_PASSWORD"] not in failure.value.logs  # auth was given it too


@pytest.mark.docker
def test_run_checks_finds_a_service_ready_before_dockers_first_check(trio: Trio) -> None:
    # Docker runs the first check only after `interval`; realtime's is 30 s upstream.
    trio.write_env(HC_INTERVAL="120s")
    trio.runtime.recreate(trio.project, trio.env, ["auth"])

    started = time.monotonic()
    ready = trio.runtime.wait_ready(trio.project, trio.env, ["auth"], run_checks=True)
    elapsed = time.monotonic() - started
    print(f"auth ready by its own check, run directly: {elapsed:.2f} s")

    assert ready == ["auth"]
    assert elapsed < 30
    assert trio.runtime.services(trio.project)["auth"].health == "starting"  # Docker's view


@pytest.mark.docker
def test_run_checks_refuses_what_the_health_check_refuses(trio: Trio) -> None:
    # The server answers but its check exits 1: the direct run must say not ready, too.
    trio.write_env(HC_INTERVAL="120s", AUTH_HEALTHY="no")
    trio.runtime.recreate(trio.project, trio.env, ["auth"])

    with pytest.raises(RuntimeFailure) as failure:
        trio.runtime.wait_ready(trio.project, trio.env, ["auth"], timeout_s=4, run_checks=True)

    assert failure.value.service == "auth"
    assert "within 4 s (health: starting)" in str(failure.value)


@pytest.mark.docker
def test_run_checks_with_any_ready_returns_the_ready_ones_only(trio: Trio) -> None:
    trio.write_env(HC_INTERVAL="120s", AUTH_HEALTHY="no")
    # Two calls: in one, compose would hold auth back until Docker called db healthy,
    # which its first check, 120 s away, decides.
    trio.runtime.recreate(trio.project, trio.env, ["auth"])
    trio.runtime.recreate(trio.project, trio.env, ["db"])

    ready = trio.runtime.wait_ready(
        trio.project, trio.env, ["auth", "db"], any_ready=True, run_checks=True
    )

    assert ready == ["db"]


@pytest.mark.docker
def test_a_service_still_starting_at_the_deadline_fails_the_wait(trio: Trio) -> None:
    # Failed checks during start_period do not count, so health stays "starting".
    trio.write_env(AUTH_HEALTHY="no", START_PERIOD="300s")
    trio.runtime.health_timeout_s = 3

    with pytest.raises(RuntimeFailure) as failure:
        trio.runtime.recreate(trio.project, trio.env, ["auth"])
        trio.runtime.wait_ready(trio.project, trio.env, ["auth"])

    assert failure.value.service == "auth"
    assert "within 3 s (health: starting)" in str(failure.value)


@pytest.mark.docker
def test_a_compose_error_fails_the_recreate_and_stops_nothing(trio: Trio) -> None:
    before = trio.snapshot()

    with pytest.raises(RuntimeFailure) as failure:
        trio.runtime.recreate(trio.project, trio.env, ["no-such-service"])

    # Compose refuses the name (non-zero exit), or exits 0 having created nothing: both fail.
    message = str(failure.value)
    assert "exited with code" in message or "no container for service" in message
    assert "no-such-service" in failure.value.logs
    assert trio.snapshot() == before


# -- reading containers --------------------------------------------------------------------------


@pytest.mark.docker
def test_recreated_since_names_containers_created_since_from_the_current_config(
    trio: Trio,
) -> None:
    trio.write_env(AUTH_JWT_SECRET=secrets.token_hex(24))  # committed: auth's configuration changes
    since = trio.runtime.now()  # Docker's clock: here, this host's
    assert abs(since - time.time()) < 5
    trio.runtime.recreate(trio.project, trio.env, ["auth"])
    everything = ["db", "auth", "api"]

    # db: created before; api: its container predates the change; auth: made from it
    assert trio.runtime.recreated_since(trio.project, everything, since) == ["auth"]
    assert trio.runtime.recreated_since(trio.project, everything, since + 60) == []
    # A container made from other values than compose would use now is not kept either.
    trio.write_env(AUTH_JWT_SECRET=secrets.token_hex(24))
    assert trio.runtime.recreated_since(trio.project, everything, since) == []


@pytest.mark.docker
def test_container_env_is_the_environment_the_container_was_created_with(trio: Trio) -> None:
    env = trio.runtime.container_env(trio.project, "auth")

    assert env["SERVICE_SECRET"] == trio.env["AUTH_JWT_SECRET"]
    assert env["DB_PASSWORD"] == trio.env["DB_PASSWORD"]
    assert env["PORT"] == trio.env["AUTH_PORT"]


@pytest.mark.docker
def test_resolve_host_maps_service_names_and_passes_other_hosts_through(trio: Trio) -> None:
    db_name = trio.container("db").name
    assert db_name is not None

    # Host networking (the testbed): a service is reached on loopback.
    assert trio.runtime.resolve_host(trio.project, "db") == "127.0.0.1"
    assert trio.runtime.resolve_host(trio.project, db_name) == "127.0.0.1"
    assert trio.runtime.resolve_host(trio.project, "db.example.internal") == "db.example.internal"


@pytest.mark.docker
def test_exec_in_feeds_stdin_and_returns_exit_code_and_output(trio: Trio) -> None:
    program = (
        "import sys; data = sys.stdin.buffer.read(); "
        "sys.stdout.buffer.write(data[::-1]); sys.stderr.write('done'); sys.exit(3)"
    )
    payload = secrets.token_bytes(64)

    code, output = trio.runtime.exec_in(trio.project, "db", ["python3", "-c", program], payload)
    split = trio.runtime.exec_split(trio.project, "db", ["python3", "-c", program], payload)

    assert (code, output) == (3, payload[::-1] + b"done")
    assert split == (3, payload[::-1], b"done")


@pytest.mark.docker
def test_exec_in_streams_large_input_and_closes_stdin(trio: Trio) -> None:
    payload = secrets.token_bytes(4 * 1024 * 1024)  # larger than any pipe buffer

    assert trio.runtime.exec_in(trio.project, "db", ["cat"], payload) == (0, payload)
    assert trio.runtime.exec_in(trio.project, "db", ["cat"]) == (0, b"")  # EOF reached


@pytest.mark.docker
def test_runtime_calls_on_a_missing_service_raise_runtime_failure(trio: Trio) -> None:
    with pytest.raises(RuntimeFailure):
        trio.runtime.container_env(trio.project, "no-such-service")
    with pytest.raises(RuntimeFailure):
        trio.runtime.exec_in(trio.project, "no-such-service", ["true"])


def _half_recreated(trio: Trio, service: str) -> str:
    """The state a compose killed mid-recreate leaves: the service's container exists only
    under compose's temporary `<id[:12]>_<name>` name, and is not running."""
    container = trio.container(service)
    container.stop(timeout=1)
    temporary = f"{str(container.id)[:12]}_{container.name}"
    container.rename(temporary)
    return temporary


@pytest.mark.docker
@pytest.mark.parametrize("compose_command", ["docker compose"], indirect=True)
def test_a_half_recreated_service_is_not_taken_for_the_service(trio: Trio) -> None:
    temporary = _half_recreated(trio, "auth")

    states = trio.runtime.services(trio.project)

    assert "auth" not in states  # the leftover is not the service's container
    assert trio.runtime.remove_leftovers(trio.project, ["auth"]) == [temporary]
    assert trio.runtime.remove_leftovers(trio.project, ["auth"]) == []


@pytest.mark.docker
@pytest.mark.parametrize("compose_command", ["docker compose"], indirect=True)
def test_recreating_a_half_recreated_service_brings_it_back(trio: Trio) -> None:
    _half_recreated(trio, "db")

    trio.runtime.recreate(trio.project, trio.env, ["db"])
    trio.runtime.wait_ready(trio.project, trio.env, ["db"])

    container = trio.container("db")  # exactly one, under its real name
    assert container.status == "running"
    assert container.name == f"{trio.name}-db-1"
