"""Worker fixtures: a mini Supabase deployment on real PostgreSQL, real Redis and RQ, a
local fake Slack, a loopback webhook receiver, and a config file naming them all.

`supabase_db`, `fake_slack`, `redis` and `deployment_name` are the integration and bot
fixtures, re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from core.catalogue import Mode
from core.deployment import Deployment
from core.envfile import EnvFile
from tests.bot.conftest import deployment_name, fake_slack, redis  # noqa: F401
from tests.fakes import RecordingRuntime, make_mini_deployment
from tests.integration.conftest import supabase_db  # noqa: F401
from tests.slack_fake import BOT_TOKEN, FakeSlack, Hooks
from workers import jobs, webhooks
from workers.connection import make_queue
from workers.plans import current_plan
from workers.runner import RotatorSimpleWorker
from workers.store import RequestStatus, RequestStore, RotationRequest

CHANNEL = "C0ROTATE"
ANNOUNCE = "C0ANNOUNCE"
ONCALL = "UONC1"
APPROVER = "UAPP1"
REQUESTER = "UREQ1"


@dataclass
class Site:
    """One deployment as the worker sees it."""

    name: str
    directory: Path
    redis: Redis
    slack: FakeSlack
    hooks: Hooks
    runtime: RecordingRuntime
    config: Path
    job_ids: list[str] = field(default_factory=list)

    @property
    def store(self) -> RequestStore:
        return RequestStore(self.redis)

    @property
    def queue(self) -> Queue:
        return make_queue(f"rotator:{self.name}", self.redis)

    def env(self) -> dict[str, str]:
        return EnvFile.read(self.directory / ".env").as_dict()

    def request(self, secret: str, **fields: Any) -> RotationRequest:
        """A request approved and scheduled, with its approval message posted (the thread)."""
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        mode = Mode.COMPROMISE if fields.get("emergency") else Mode.PLANNED
        published = current_plan(Deployment.load(self.directory), secret, mode)
        fields.setdefault("plan_json", json.dumps(published.plan.to_json()))
        fields.setdefault("plan_digest", published.digest)
        fields.setdefault("plan_basis", json.dumps(published.basis.to_json()))
        fields.setdefault("window_start", now)
        created = self.store.create(
            RotationRequest(
                id="",
                deployment=self.name,
                secret=secret,
                requester=REQUESTER,
                reason="test",
                created_at=now,
                expires_at=now + timedelta(hours=1),
                **fields,
            )
        )
        self.store.transition(created.id, RequestStatus.APPROVED, approvals=(APPROVER,))
        return self.store.transition(
            created.id, RequestStatus.SCHEDULED, channel=CHANNEL, thread_ts="1700000000.000100"
        )

    def enqueue(self, request: RotationRequest, func: str = "workers.jobs.run_rotation") -> str:
        job_id = request.job_id if func.endswith("run_rotation") else f"recover-{request.id}"
        self.queue.enqueue(func, request.id, job_id=job_id, job_timeout=600)
        self.job_ids.append(job_id)
        return job_id

    def work(self) -> None:
        """Run the queued jobs in this process with a real RQ worker."""
        RotatorSimpleWorker([self.queue], connection=self.redis).work(burst=True)

    def thread_texts(self) -> list[str]:
        return [
            json.dumps(c.body)
            for c in self.slack.calls
            if c.method in ("chat.postMessage", "chat.update") and c.body.get("channel") == CHANNEL
        ]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def site(
    tmp_path: Path,
    supabase_db: Any,  # noqa: F811
    redis: Redis,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
    hooks: Hooks,
    deployment_name: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    project = make_mini_deployment(
        tmp_path / "supabase",
        password=supabase_db.password,
        host=supabase_db.host,
        port=supabase_db.port,
    )
    config = tmp_path / "rotator.toml"
    config.write_text(
        f"""
[deployments.{deployment_name}]
project = "{project}"
channel = "{CHANNEL}"
announce_channel = "{ANNOUNCE}"
approvers = ["{APPROVER}", "UAPP2"]
oncall = ["{ONCALL}"]
webhooks = ["{hooks.url}"]
gateway_probes = false  # the mini deployment has a database, no gateway nor pooler
pooler_probe = false
"""
    )
    runtime = RecordingRuntime(Deployment.load(project).compose)
    monkeypatch.setenv("ROTATOR_CONFIG", str(config))
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.delenv("ROTATOR_STATE_DIR", raising=False)
    monkeypatch.setattr(jobs, "make_runtime", lambda deployment: runtime)
    monkeypatch.setattr(webhooks, "BACKOFF_S", (0.05, 0.05))
    site = Site(deployment_name, project, redis, fake_slack, hooks, runtime, config)
    yield site
    for job_id in site.job_ids:
        redis.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    redis.delete(f"rq:queue:rotator:{deployment_name}", jobs.lock_key(deployment_name))
