"""The whole product on one host, as it runs in production:

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

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from slack_sdk.signature import SignatureVerifier

from tests.conftest import service_missing
from tests.slack_fake import (
    BOT_TOKEN,
    SIGNING_SECRET,
    Call,
    FakeSlack,
    Hooks,
    block_actions_body,
    slash_command_body,
)
from tests.testbed.testbed import DEFAULT_IMAGE, Testbed, image_exists, read_env
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
    bot_url: str
    logs: Path

    @property
    def store(self) -> RequestStore:
        return RequestStore(self.redis)

    def queue(self, deployment: str) -> Queue:
        return Queue(f"rotator:{deployment}", connection=self.redis)

    def scheduled(self, deployment: str) -> ScheduledJobRegistry:
        return ScheduledJobRegistry(queue=self.queue(deployment))  # type: ignore[no-untyped-call]

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
        """Everything the bot and the worker have written to stdout and stderr so far."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rotator() -> list[str]:
    script = Path(sys.executable).parent / "rotator"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from core.cli import main; sys.exit(main())"]


def _start(argv: list[str], env: dict[str, str], logs: Path, name: str) -> subprocess.Popen[bytes]:
    out = (logs / f"{name}.stdout.log").open("wb")
    err = (logs / f"{name}.stderr.log").open("wb")
    with out, err:
        return subprocess.Popen(
            [*_rotator(), *argv], cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this fixture started (RQ: a warm shutdown), then KILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _deployment_toml(name: str, testbed: Testbed, hooks: Hooks, leads: list[str]) -> str:
    return f"""
[deployments.{name}]
project = "{testbed.directory}"
channel = "{CHANNEL}"
announce_channel = "{ANNOUNCE}"
requesters = ["{ALICE}", "{CAROL}"]
approvers = ["{BOB}", "{DAVE}"]
oncall = ["{CAROL}"]
notice_lead_times = {json.dumps(leads)}
webhooks = ["{hooks.url}"]
"""


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        service_missing("no Docker engine (docker info failed)")
    if not image_exists():
        service_missing(f"image {DEFAULT_IMAGE} not built (tests/testbed/build-images.sh)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROTATOR_COMPOSE_COMMAND", COMPOSE)
        tb = Testbed.create(
            tmp_path_factory.mktemp("e2e-slack"), project_name=f"slstory-{os.getpid()}"
        )
    try:
        tb.up(timeout=120)
        yield tb
    finally:
        tb.down()


@pytest.fixture(scope="module")
def stack(
    testbed: Testbed, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("e2e-slack-stack")
    logs = work / "logs"
    logs.mkdir()
    slack = FakeSlack(user_tz={ALICE: ALICE_TZ}).start()
    hooks = Hooks().start()
    tag = secrets.token_hex(3)
    story, other = f"story{tag}", f"other{tag}"
    config = work / "rotator.toml"
    config.write_text(
        _deployment_toml(story, testbed, hooks, ["1h", "10s"])
        + _deployment_toml(other, testbed, hooks, ["2h"])
    )
    redis = Redis.from_url(redis_url)
    port = _free_port()
    # As on a host: no deployment values in the environment (compose would prefer them).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "ROTATOR_"))}
    for key in read_env(testbed.directory / ".env"):
        env.pop(key, None)
    env |= {
        "ROTATOR_CONFIG": str(config),
        "ROTATOR_COMPOSE_COMMAND": COMPOSE,
        "REDIS_URL": redis_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "PYTHONUNBUFFERED": "1",
    }
    processes = [
        _start(["bot", "--port", str(port)], env, logs, "bot"),
        _start(["worker", story, other], env, logs, "worker"),
    ]
    built = Stack(
        testbed, slack, hooks, redis, story, other, f"http://127.0.0.1:{port}/slack/events", logs
    )
    try:
        # The bot is up once it refuses a badly signed request; the worker once it listens.
        wait_for(lambda: _answers(built.bot_url), 30, "the bot to listen")
        wait_for(lambda: _listening(redis, processes[1].pid), 30, "the worker to register")
        for process in processes:
            assert process.poll() is None, built.output()
        yield built
    finally:
        for process in processes:
            _stop(process)
        for name in (story, other):
            for key in redis.scan_iter(match=f"rq:*rotator:{name}*"):
                redis.delete(key)
        redis.close()
        hooks.stop()
        slack.stop()


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


def _listening(redis: Redis, pid: int) -> bool:
    for key in redis.smembers("rq:workers"):
        info = redis.hgetall(key)
        if info.get(b"pid") == str(pid).encode() and info.get(b"state") == b"idle":
            return True
    return False
