"""Bot fixtures: a fake Slack, real Redis, settings, fakes for core's catalogue and planner."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from datetime import UTC, datetime
from typing import Any

import pytest
from redis import Redis

from core.digest import PlanBasis
from core.errors import UnknownSecret
from core.plan import Plan
from tests.slack_fake import FakeSlack
from workers.config import Settings, parse_config
from workers.plans import PlanBook, PublishedPlan

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
        plans[name] = PublishedPlan(plan, basis, at)
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
