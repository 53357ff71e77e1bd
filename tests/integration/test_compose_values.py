"""What a container receives is what rotator wrote, byte for byte.

Values with `$`, `$$`, quotes, `#`, spaces, backslashes and `=` are written into `.env`
by rotator's own writer (core.envfile), then Docker Compose v2 creates real containers
from it (`DockerRuntime.recreate`, i.e. `compose up --force-recreate`, the testbed
image): one service takes each value through `${KEY}` in `environment`, one loads
`.env` itself through `env_file`. Each container's environment must hold exactly the
values written; compose's model (what plans compare) must say the same. Compose v1
reads some of these differently (it interpolates inside single quotes and keeps `$$`),
which is why rotator refuses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from core.adapters.docker import DockerRuntime
from core.compose import ComposeProject
from core.envfile import EnvFile, write_atomic
from tests.integration.conftest import IMAGE

pytestmark = pytest.mark.docker

CORPUS = (
    "plain-value-0123",
    "dollar$sign",
    "$LEADING_DOLLAR",
    "trailing-dollar$",
    "two$$dollars",
    "${LOOKS_LIKE_A_REFERENCE}",
    "${POSTGRES_PASSWORD:-default}",
    "single'quote",
    'double"quote',
    "both'and\"quotes",
    "'wrapped in single quotes'",
    '"wrapped in double quotes"',
    "hash#inside",
    "#leading-hash",
    "space then # hash",
    "inner spaces only",
    "  leading and trailing spaces  ",
    "back\\slash",
    "two\\\\backslashes",
    "trailing-backslash\\",
    "\\n is a backslash and an n",
    "\\$ backslash dollar",
    "equals=sign==",
    "=leading-equals",
    "all: $ $$ ' \" # \\ = together",
    "tab\there",
    "line\nbreak",
    "unicode-ünïcødé-✓",
)

COMPOSE_FILE = """\
services:
  interpolated:
    image: {image}
    network_mode: none
    command: ["sleep", "infinity"]
    environment:
{environment}
  loads-env:
    image: {image}
    network_mode: none
    command: ["sleep", "infinity"]
    env_file: .env
"""


def key(index: int) -> str:
    return f"VALUE_{index:02d}"


@pytest.fixture
def project(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Path]:
    name = f"rtvalues{uuid.uuid4().hex[:10]}"
    environment = "\n".join(f"      {key(i)}: ${{{key(i)}}}" for i in range(len(CORPUS)))
    (tmp_path / "compose.yaml").write_text(
        COMPOSE_FILE.format(image=IMAGE, environment=environment)
    )
    placeholders = "".join(f"{key(i)}=placeholder\n" for i in range(len(CORPUS)))
    (tmp_path / ".env").write_text(f"COMPOSE_PROJECT_NAME={name}\n{placeholders}")
    try:
        yield tmp_path
    finally:
        label = {"label": f"com.docker.compose.project={name}"}
        for container in docker_client.containers.list(all=True, filters=label):
            container.remove(force=True)


def test_every_value_reaches_the_container_as_rotator_wrote_it(
    project: Path, docker_client: docker.DockerClient
) -> None:
    written = {key(i): value for i, value in enumerate(CORPUS)}
    env = EnvFile.read(project / ".env").replace(written)
    write_atomic(project / ".env", env.render())
    assert {k: v for k, v in EnvFile.read(project / ".env").as_dict().items() if k in written} == (
        written
    )
    compose = ComposeProject.load(project, values=env.as_dict())
    runtime = DockerRuntime(client=docker_client, health_timeout_s=60)

    runtime.recreate(compose, env.as_dict(), ["interpolated", "loads-env"])

    for service in ("interpolated", "loads-env"):
        received = runtime.container_env(compose, service)
        mismatched = sorted(k for k in written if received.get(k) != written[k])
        assert not mismatched, [(k, written[k], received.get(k)) for k in mismatched]
        modelled = compose.resolve()[service]["environment"]
        assert {k: modelled[k] for k in written} == written, service
