"""The Slack story's stack, for the tests (conftest.py) and `scripts/demo --slack`: the
whole product on one host, as it runs in production:

- a testbed deployment of real containers (tests/testbed), the project both deployments name;
- `rotator bot --port N`, a subprocess serving correctly signed HTTP requests at /slack/events
  and calling a local fake Slack Web API that records every call (tests/slack_fake.py);
- `rotator worker STORY OTHER`, a subprocess: a real RQ worker with its scheduler and the
  real DockerRuntime (`docker compose`);
- real Redis, and a loopback receiver for the status-page webhooks.

The bot's and the worker's stdout and stderr are captured in files, for the leak check.
Everything is started once for the module; the tests filter what they read by request id.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shlex
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from slack_sdk.signature import SignatureVerifier

from tests.slack_fake import (
    BOT_TOKEN,
    SIGNING_SECRET,
    Call,
    FakeSlack,
    Hooks,
    block_actions_body,
    slash_command_body,
)
from tests.testbed.testbed import Testbed, read_env
from workers.connection import SERIALIZER, make_queue
from workers.plans import PlanBook
from workers.sealed import generate_keypair
from workers.store import RequestStore, RotationRequest

ROOT = Path(__file__).resolve().parents[2]
ALICE = "UALICE1"
"""Requester."""
BOB = "UBOB1"
"""Approver."""
DAVE = "UDAVE1"
"""Approver."""
CAROL = "UCAROL1"
"""On call."""
MALLORY = "UMALLORY1"
"""Neither requester nor approver nor on call."""
ALICE_TZ = "America/New_York"
CHANNEL = "C0ROTATIONS"
ANNOUNCE = "C0STATUS"
COMPOSE = os.environ.get("ROTATOR_COMPOSE_COMMAND", "docker compose")
WEBHOOK_SECRET = "e2e-webhook-signing-secret"

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Stack:
    testbed: Testbed
    slack: FakeSlack
    hooks: Hooks
    redis: Redis
    story: str
    """A deployment with notices at 1h and 10s before the window."""
    other: str
    """The same project under another name, with notices only 2h ahead."""
    late: str
    """The same project again, whose rotations may start at most 3 s after the window."""
    bot_url: str
    deployment: ComposeDeployment
    redis_password: str

    @property
    def store(self) -> RequestStore:
        return RequestStore(self.redis)

    def queue(self, deployment: str) -> Queue:
        return make_queue(f"rotator:{deployment}", self.redis)

    def scheduled(self, deployment: str) -> ScheduledJobRegistry:
        return ScheduledJobRegistry(queue=self.queue(deployment))  # type: ignore[no-untyped-call]

    def job(self, job_id: str) -> Job:
        return Job.fetch(job_id, connection=self.redis, serializer=SERIALIZER)

    # -- Slack's side: signed requests to the bot over HTTP ------------------------------

    def post(self, body: str) -> int:
        ts = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or "",
        }
        return _post(self.bot_url, body.encode(), headers)

    def command(self, text: str, user: str) -> int:
        return self.post(slash_command_body(text, user=user, response_url=self.slack.response_url))

    def click(self, action: str, request: RotationRequest, user: str) -> int:
        """A button in the request's thread, pressed (after Slack's confirm dialog, if any)."""
        return self.post(
            block_actions_body(
                action,
                request.id,
                user=user,
                channel=request.channel,
                message_ts=request.thread_ts,
                response_url=self.slack.response_url,
            )
        )

    # -- what Slack received ---------------------------------------------------------------

    def calls(self, method: str, **match: str) -> list[Call]:
        return [
            c
            for c in self.slack.calls_to(method)
            if all(c.body.get(k) == v for k, v in match.items())
        ]

    def wait_call(
        self, method: str, test: Callable[[Call], bool], timeout: float, what: str, **match: str
    ) -> Call:
        return wait_for(
            lambda: next((c for c in self.calls(method, **match) if test(c)), None), timeout, what
        )

    def thread(self, request: RotationRequest) -> list[dict[str, Any]]:
        """Messages posted in the request's thread, in order."""
        return [
            c.body
            for c in self.calls("chat.postMessage", channel=CHANNEL)
            if c.body.get("thread_ts") == request.thread_ts
        ]

    def output(self) -> str:
        """Everything the bot, the worker and Redis have written so far."""
        return self.deployment.logs()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deployment_toml(
    name: str, testbed: Testbed, hooks: Hooks, leads: list[str], lateness: str = "15m"
) -> str:
    return f"""
[deployments.{name}]
project = "{testbed.directory}"
channel = "{CHANNEL}"
announce_channel = "{ANNOUNCE}"
requesters = ["{ALICE}", "{CAROL}"]
approvers = ["{BOB}", "{DAVE}"]
oncall = ["{CAROL}"]
notice_lead_times = {json.dumps(leads)}
lateness = "{lateness}"
webhooks = ["{hooks.url}"]
webhook_secret_file = "webhook.secret"
"""


@dataclass
class ComposeDeployment:
    """The project's docker-compose.yml, run as `docker compose` with `env`."""

    env: dict[str, str]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*shlex.split(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def logs(self) -> str:
        return self.run("logs", "--no-color", timeout=60).stdout


def build_image() -> str:
    """The rotator image for this checkout (scripts/build-image.sh): its exact tag."""
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def write_secrets(directory: Path, redis_password: str) -> None:
    """One file per secret; the bot and Redis (uid 10001) read theirs, root the worker key."""
    directory.mkdir(mode=0o755)
    for name, value in (
        ("redis-password", redis_password),
        ("slack-bot-token", BOT_TOKEN),
        ("slack-signing-secret", SIGNING_SECRET),
    ):
        path = directory / name
        path.write_text(value + "\n")
        os.chown(path, 10001, 10001)
        path.chmod(0o400)
    key = directory / "worker.pem"
    key.write_bytes(generate_keypair()[0])
    key.chmod(0o400)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> int:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _answers(url: str) -> bool:
    try:
        return _post(url, b"x=1", {"Content-Type": "application/x-www-form-urlencoded"}, 2) == 401
    except OSError:
        return False


def _listening(redis: Redis, deployment: str) -> bool:
    try:
        workers = redis.smembers("rq:workers")
    except RedisError:
        return False
    for key in workers:
        info = redis.hgetall(key)
        queues = (info.get(b"queues") or b"").decode().split(",")
        if f"rotator:{deployment}" in queues and info.get(b"state") == b"idle":
            return True
    return False


@contextmanager
def running_stack(
    testbed: Testbed, work: Path, *, show_logs_on_failure: bool = True
) -> Iterator[Stack]:
    """The project's compose deployment (bot, worker, Redis) beside `testbed`, against a
    Slack stand-in and a webhook receiver; everything stopped and removed on exit."""
    work.chmod(0o755)
    config_dir = work / "config"
    config_dir.mkdir(mode=0o755)
    slack = FakeSlack(user_tz={ALICE: ALICE_TZ}).start()
    hooks = Hooks().start()
    tag = secrets.token_hex(3)
    story, other, late = f"story{tag}", f"other{tag}", f"late{tag}"
    config = config_dir / "rotator.toml"
    config.write_text(
        _deployment_toml(story, testbed, hooks, ["1h", "10s"])
        + _deployment_toml(other, testbed, hooks, ["2h"])
        + _deployment_toml(late, testbed, hooks, ["1h"], lateness="3s")
    )
    config.chmod(0o644)
    (config_dir / "webhook.secret").write_text(WEBHOOK_SECRET)
    (config_dir / "webhook.secret").chmod(0o400)
    redis_password = secrets.token_hex(16)
    write_secrets(work / "secrets", redis_password)
    redis_port, bot_port = _free_port(), _free_port()
    # As on a host: no deployment values in the environment (compose would prefer them).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "ROTATOR_"))}
    for key in read_env(testbed.directory / ".env"):
        env.pop(key, None)
    env |= {
        "COMPOSE_PROJECT_NAME": f"rotator-e2e-{tag}",
        "ROTATOR_IMAGE": build_image(),
        "SUPABASE_DIR": str(testbed.directory),
        "ROTATOR_DEPLOYMENT": f"{story} {other} {late}",
        "ROTATOR_CONFIG_DIR": str(config_dir),
        "ROTATOR_SECRETS_DIR": str(work / "secrets"),
        "ROTATOR_BOT_PORT": str(bot_port),
        "ROTATOR_REDIS_PORT": str(redis_port),
        "SLACK_API_URL": slack.url,
    }
    deployment = ComposeDeployment(env)
    redis = Redis(host="127.0.0.1", port=redis_port, password=redis_password)
    built = Stack(
        testbed,
        slack,
        hooks,
        redis,
        story,
        other,
        late,
        f"http://127.0.0.1:{bot_port}/slack/events",
        deployment,
        redis_password,
    )
    try:
        up = deployment.run("up", "-d")
        assert up.returncode == 0, up.stderr
        # The bot is up once it refuses a badly signed request; the worker once it listens
        # and has published its deployments' plans.
        wait_for(lambda: _answers(built.bot_url), 60, "the bot to listen")
        wait_for(lambda: _listening(redis, story), 60, "the worker to register")
        wait_for(lambda: PlanBook(redis).is_fresh(story, datetime.now(UTC)), 30, "plans")
        yield built
    except BaseException:
        if show_logs_on_failure:
            print(deployment.logs()[-6000:])
        raise
    finally:
        deployment.run("down", "--volumes", "--timeout", "20")
        redis.close()
        hooks.stop()
        slack.stop()
