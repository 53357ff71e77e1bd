"""The repository's docker-compose.yml: compose accepts it, and the bot, a worker and Redis
start from the locally built image (scripts/build-image.sh) beside a Supabase directory."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from core.compose import ComposeCommand
from tests.bot.conftest import fake_slack  # noqa: F401
from tests.conftest import compose_missing, service_missing
from tests.slack_fake import BOT_TOKEN, SIGNING_SECRET, FakeSlack
from workers.sealed import generate_keypair

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "mini-supabase"
COMPOSE = ComposeCommand.from_environment().argv  # Docker Compose v2, as rotator requires


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def stack_env(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[dict[str, str]]:  # noqa: F811
    if compose_missing():
        service_missing(f"no Docker Compose v2: {compose_missing()}")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        service_missing("no Docker engine")
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr[-2000:]
    project = tmp_path / "supabase"
    project.mkdir()
    shutil.copy(FIXTURE / "docker-compose.yml", project / "docker-compose.yml")
    shutil.copy(FIXTURE / "env.template", project / ".env")
    name = f"d{secrets.token_hex(3)}"
    (tmp_path / "rotator.toml").write_text(
        f'[deployments.{name}]\nproject = "{project}"\nchannel = "C0ROTATE"\n'
        'announce_channel = "C0ANNOUNCE"\napprovers = ["UAPP1", "UAPP2"]\n'
    )
    (tmp_path / "worker.pem").write_bytes(generate_keypair()[0])
    env = dict(
        os.environ,
        COMPOSE_PROJECT_NAME=f"rotatortest{secrets.token_hex(3)}",
        SUPABASE_DIR=str(project),
        ROTATOR_DEPLOYMENT=name,
        ROTATOR_CONFIG_FILE=str(tmp_path / "rotator.toml"),
        ROTATOR_WORKER_KEY_FILE=str(tmp_path / "worker.pem"),
        ROTATOR_BOT_PORT=str(free_port()),
        ROTATOR_REDIS_PORT=str(free_port()),
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake_slack.url,
    )
    yield env
    compose(env, "down", "--volumes", "--timeout", "5")


def poll(probe, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            found = probe()
            if found:
                return found
        except Exception as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"not ready in {timeout}s (last error: {last!r})")


def unsigned_post(port: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events", data=b"command=/rotate&text=help", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 -- loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_compose_accepts_the_file_and_starts_bot_worker_and_redis(
    stack_env: dict[str, str],
) -> None:
    config = compose(stack_env, "config", "--format", "json")
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    mounts = {(v["source"], v["target"]) for v in services["worker"]["volumes"]}
    assert (stack_env["SUPABASE_DIR"], stack_env["SUPABASE_DIR"]) in mounts  # the same path
    assert "--appendonly" in services["redis"]["command"]

    up = compose(stack_env, "up", "-d")
    assert up.returncode == 0, up.stderr
    try:
        assert poll(lambda: unsigned_post(stack_env["ROTATOR_BOT_PORT"]) == 401)
        redis = Redis.from_url(f"redis://127.0.0.1:{stack_env['ROTATOR_REDIS_PORT']}/0")
        workers = poll(lambda: redis.smembers("rq:workers"))
        queues = {q for w in workers for q in (redis.hget(w, "queues") or b"").decode().split(",")}
        assert f"rotator:{stack_env['ROTATOR_DEPLOYMENT']}" in queues
        assert redis.config_get("appendonly")["appendonly"] == "yes"
        redis.close()
        # the worker's compose is v2: rotator refuses anything else
        version = compose(
            stack_env, "exec", "-T", "worker", "sh", "-c", '"$ROTATOR_COMPOSE_COMMAND" version'
        )
        assert version.returncode == 0, version.stderr
        assert version.stdout.startswith("Docker Compose version v2."), version.stdout
    except AssertionError:
        print(compose(stack_env, "logs", "--no-color", timeout=30).stdout[-4000:])
        raise
