"""Bot fixtures: a fake Slack, real Redis, settings, fakes for core's catalogue and planner."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from slack_bolt import App

from bot.app import build_app
from core.catalogue import Mode
from core.digest import PlanBasis
from core.errors import UnknownSecret
from core.plan import Plan
from tests.slack_fake import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    block_actions_body,
    signed_request,
    slash_command_body,
)
from workers.config import Settings, parse_config
from workers.connection import SERIALIZER, make_queue, make_slack_client
from workers.plans import PlanBook, PublishedPlan, plan_key
from workers.sealed import generate_keypair
from workers.store import RequestStatus, RequestStore, RotationRequest

REQUESTER = "UREQ1"
APPROVER = "UAPP1"
APPROVER2 = "UAPP2"
ONCALL = "UONC1"
STRANGER = "USTR1"
GROUP = "SGRP1"
GROUP_MEMBER = "UGRP1"


class Risk(Enum):
    NORMAL = "normal"
    CRITICAL = "critical"


class Source(Enum):
    GENERATED = "generated"
    GIVEN = "given"


@dataclass(frozen=True)
class FakeSecret:
    name: str
    title: str
    risk: Risk
    source: Source
    given_keys: tuple[str, ...] = ()


SECRETS = {
    "anon-key": FakeSecret("anon-key", "anon key", Risk.NORMAL, Source.GENERATED),
    "jwt-secret": FakeSecret("jwt-secret", "JWT secret", Risk.CRITICAL, Source.GENERATED),
    "smtp": FakeSecret("smtp", "SMTP password", Risk.NORMAL, Source.GIVEN, ("SMTP_PASS",)),
}


class FakeCatalogue:
    def get_secret(self, name: str) -> FakeSecret:
        if name not in SECRETS:
            raise UnknownSecret(f"unknown secret {name}; one of {', '.join(SECRETS)}")
        return SECRETS[name]

    def secret_names(self) -> Sequence[str]:
        return list(SECRETS)


def fake_plan(secret: str) -> Plan:
    return Plan(
        secret=secret,
        title=SECRETS[secret].title,
        env_keys=("JWT_SECRET", "ANON_KEY") if secret == "jwt-secret" else ("SMTP_PASS",),
        services=("auth", "rest", "kong"),
        restart_levels=(("auth", "rest"), ("kong",)),
        db_roles=(),
        impact="API clients must use the new keys.",
        logs_out_users=secret == "jwt-secret",
        downtime_estimate_s=45,
    )


def publish_plans(redis: Redis, deployment: str, when: datetime | None = None) -> None:
    """As the deployment's worker would: a plan for each fake secret, confirmed at `when`."""
    at = when or datetime.now(UTC)
    plans: dict[str, PublishedPlan | str] = {}
    for name in SECRETS:
        plan = fake_plan(name)
        basis = PlanBasis(name, plan.env_keys, plan.services, plan.db_roles, "e" * 64, "c" * 64)
        for mode in Mode:  # an emergency's compromise plan has its own entry where it differs
            plans[plan_key(name, mode)] = PublishedPlan(plan, basis, at)
    PlanBook(redis).publish(deployment, plans, at=at)


def deployment_table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "project": "/srv/supabase",
        "channel": "C0ROTATE",
        "announce_channel": "C0ANNOUNCE",
        "requesters": [REQUESTER, APPROVER, ONCALL],
        "approvers": [APPROVER, APPROVER2],
        "approver_groups": [GROUP],
        "oncall": [ONCALL],
        "windows": ["daily 00:00-23:59 UTC"],
    }
    table.update(overrides)
    return table


def make_settings(name: str = "prod", **overrides: Any) -> Settings:
    return parse_config({"deployments": {name: deployment_table(**overrides)}}, "test.toml")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(user_tz={REQUESTER: "Europe/Berlin"}, usergroups={GROUP: [GROUP_MEMBER]})
    fake.start()
    yield fake
    fake.stop()
    # Every message and view this test sent was checked against Block Kit's limits.
    assert fake.refused == [], f"Slack would have refused: {fake.refused}"


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """Real Redis; keys are made unique per test (deployment names, request ids), never flushed."""
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def deployment_name() -> str:
    """A unique deployment name, so each test has its own RQ queue on the shared Redis."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture(autouse=True)
def clean_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SLACK_BOT_TOKEN_FILE",
        "SLACK_SIGNING_SECRET_FILE",
        "SLACK_CLIENT_ID",
        "SLACK_CLIENT_SECRET",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


T = TypeVar("T")


@dataclass
class Bot:
    app: App
    fake: FakeSlack
    redis: Redis
    settings: Settings
    name: str

    @property
    def store(self) -> RequestStore:
        return RequestStore(self.redis)

    @property
    def queue(self) -> Queue:
        return make_queue(f"rotator:{self.name}", self.redis)

    def scheduled_job_ids(self) -> list[str]:
        return ScheduledJobRegistry(queue=self.queue).get_job_ids()  # type: ignore[no-untyped-call]

    def command(
        self,
        text: str,
        user: str = REQUESTER,
        trigger_id: str | None = None,
        channel: str = "C0CHAN1",
    ) -> int:
        body = slash_command_body(
            text,
            user=user,
            response_url=self.fake.response_url,
            trigger_id=trigger_id,
            channel=channel,
        )
        return self.app.dispatch(signed_request(body)).status

    def click(self, action: str, request: RotationRequest, user: str) -> int:
        body = block_actions_body(
            action,
            request.id,
            user=user,
            channel=request.channel,
            message_ts=request.thread_ts,
            response_url=self.fake.response_url,
        )
        return self.app.dispatch(signed_request(body)).status

    def requested(self, text: str) -> RotationRequest:
        """Run `/rotate text` and return the request once its approval message is posted."""
        assert self.command(text) == 200
        posted = self.fake.wait_for("chat.postMessage")[-1]
        request_id = posted.body["blocks"][-1]["elements"][0]["value"]
        # Posted first, stored right after: wait for the store too.
        return wait_until(lambda: _with_thread(self.store.find(request_id)))


def _with_thread(request: RotationRequest | None) -> RotationRequest | None:
    return request if request is not None and request.thread_ts else None


def wait_until(probe: Callable[[], T | None], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[bytes, Path]:
    private, public = generate_keypair()
    (tmp_path / "worker.pub.pem").write_bytes(public)
    return private, tmp_path / "worker.pub.pem"


@pytest.fixture
def make_bot(
    fake_slack: FakeSlack, redis: Redis, deployment_name: str, keypair: tuple[bytes, Path]
) -> Iterator[Callable[..., Bot]]:
    """Builds the app for `deployment_name` (settings overridable), with the worker's plans
    published, as the bot meets them in production."""
    made: list[Bot] = []

    def make(**overrides: Any) -> Bot:
        table = {"windows": [], "worker_public_key": str(keypair[1]), "break_glass": True}
        settings = make_settings(deployment_name, **(table | overrides))
        app = build_app(
            settings,
            client=make_slack_client(BOT_TOKEN, fake_slack.url),
            redis=redis,
            signing_secret=SIGNING_SECRET,
            catalogue=FakeCatalogue(),
        )
        publish_plans(redis, deployment_name)
        made.append(Bot(app, fake_slack, redis, settings, deployment_name))
        return made[-1]

    yield make
    for b in made[:1]:
        for job_id in [*b.scheduled_job_ids(), *b.queue.get_job_ids()]:
            Job.fetch(job_id, connection=redis, serializer=SERIALIZER).delete()
    for key in redis.scan_iter(match=f"rotator:*{deployment_name}*"):
        redis.delete(key)


@pytest.fixture
def bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot()


def _status(bot: Bot, request: RotationRequest, status: RequestStatus) -> RotationRequest | None:
    current = bot.store.get(request.id)
    return current if current.status is status else None
