"""Windows kept and approvals bound to their plan, in the worker: a job that starts after its
window does not rotate and says so; a plan that changed since approval goes back for
approval before anything changes; plans are published for the bot and go stale when the
worker stops answering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job

from core.catalogue import get_secret
from core.deployment import Deployment
from core.digest import plan_basis
from core.plan import make_plan
from tests.workers.conftest import ANNOUNCE, CHANNEL, Site
from workers.approval import APPROVE_ACTION, NEXT_WINDOW_ACTION, RUN_NOW_ACTION
from workers.connection import SERIALIZER
from workers.plans import NoFreshPlan, PlanBook, PlanPublisher
from workers.store import RequestStatus

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def result_of(site: Site, job_id: str) -> object:
    return Job.fetch(job_id, connection=site.redis, serializer=SERIALIZER).return_value()


def test_a_job_that_starts_after_its_window_does_not_rotate(site: Site) -> None:
    before = site.env()
    late = datetime.now(UTC) - timedelta(minutes=20)  # lateness is 15 min by default
    request = site.request("jwt-secret", window_start=late)
    job_id = site.enqueue(request)
    site.work()
    site.work()  # the called-off notice the report enqueued
    assert result_of(site, job_id) == "missed"
    assert site.env() == before and site.runtime.recreated == []
    stored = site.store.get(request.id)
    assert stored.status is RequestStatus.MISSED and "after the window closed" in stored.note
    thread = [
        c.body for c in site.slack.calls_to("chat.postMessage") if c.body["channel"] == CHANNEL
    ]
    missed = next(m for m in thread if "missed its window" in m["text"])
    assert [b["action_id"] for b in missed["blocks"][-1]["elements"]] == [
        NEXT_WINDOW_ACTION,
        RUN_NOW_ACTION,
    ]
    announced = [
        c.body["text"]
        for c in site.slack.calls_to("chat.postMessage")
        if c.body["channel"] == ANNOUNCE
    ]
    assert len(announced) == 1 and "did not take place" in announced[0]
    assert [h["event"] for h in site.hooks.bodies] == ["called_off"]


def test_a_plan_that_changed_since_approval_goes_back_for_approval(site: Site) -> None:
    request = site.request("postgres-password")
    # Someone adds a service using the password after the approval.
    compose = site.directory / "docker-compose.yml"
    compose.write_text(compose.read_text() + "\n# edited after the approval\n")
    before = site.env()
    job_id = site.enqueue(request)
    site.work()
    assert result_of(site, job_id) == "replanned"
    assert site.env() == before and site.runtime.recreated == []
    stored = site.store.get(request.id)
    assert stored.status is RequestStatus.REQUESTED and stored.approvals == ()
    assert stored.plan_digest != request.plan_digest
    message = next(
        c.body for c in site.slack.calls_to("chat.postMessage") if "plan changed" in c.body["text"]
    )
    assert (
        "the compose files changed" in message["text"] and "Nothing was changed" in message["text"]
    )
    assert message["blocks"][-1]["elements"][0]["action_id"] == APPROVE_ACTION


def test_the_digest_binds_keys_services_roles_and_files_not_values(site: Site) -> None:
    deployment = Deployment.load(site.directory)
    plan = make_plan(deployment, get_secret("postgres-password"))
    basis = plan_basis(deployment, plan)
    assert basis.env_keys == plan.env_keys and basis.services == plan.services
    rendered = json.dumps(basis.to_json())
    for key, value in deployment.values().items():
        if len(value) >= 8 and ("PASSWORD" in key or "SECRET" in key):
            assert value not in rendered
    (site.directory / ".env").write_text((site.directory / ".env").read_text() + "NEW_KEY=x\n")
    again = plan_basis(Deployment.load(site.directory), plan)
    assert again.digest != basis.digest and basis.differences(again) == [".env gained or lost keys"]


def test_the_worker_publishes_plans_and_they_go_stale(site: Site) -> None:
    book = PlanBook(site.redis)
    publisher = PlanPublisher(book, site.name, site.directory)
    now = datetime.now(UTC)
    assert publisher.refresh(now) is True
    assert publisher.refresh(now) is False  # nothing changed on disk: only confirmed
    published = book.get(site.name, "jwt-secret", now=now)
    assert "JWT_SECRET" in published.plan.env_keys
    with pytest.raises(Exception, match="cannot be rotated"):
        book.get(site.name, "s3-protocol-keys", now=now)  # not configured in the mini deployment
    with pytest.raises(NoFreshPlan, match=f"No worker answered for deployment `{site.name}` since"):
        book.get(site.name, "jwt-secret", now=now + timedelta(minutes=5))
    with pytest.raises(NoFreshPlan, match="No worker has answered"):
        book.get("nobody-here", "jwt-secret", now=now)
    (site.directory / ".env").write_text((site.directory / ".env").read_text() + "X_KEY=1\n")
    assert publisher.refresh(now + timedelta(seconds=2)) is True  # a changed file: replanned
    site.redis.delete(f"rotator:plans:{site.name}", f"rotator:plans:{site.name}:at")
