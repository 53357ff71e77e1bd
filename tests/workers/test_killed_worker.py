"""A worker killed with SIGKILL in the middle of a rotation: a real forking RQ worker in a
subprocess, killed (worker and work horse) while the journal is open. The next sweep says
so in the thread, with the Recover button, and the recovery job finishes the rotation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job

from core.journal import Journal
from tests.workers.conftest import CHANNEL, ONCALL, Site
from workers.config import load_config
from workers.connection import SERIALIZER, make_slack_client
from workers.jobs import Context
from workers.report import RECOVER_ACTION
from workers.store import RequestStatus
from workers.sweep import sweep

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.compose]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(probe, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_rotation_leaves_a_thread_message_and_a_recoverable_journal(
    site: Site, tmp_path: Path, redis_url: str
) -> None:
    request = site.request("postgres-password")
    site.enqueue(request)
    marker = tmp_path / "hanging"
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.killable_worker", site.queue.name, str(marker)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        horse = int(wait_for(lambda: marker.exists() and marker.read_text(), 30, "restart"))
    finally:
        # As when a container is killed: the worker and its work horse (RQ puts the horse
        # in a process group of its own), both with SIGKILL, the worker first.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    os.kill(horse, signal.SIGKILL)
    journal = Journal(site.directory / ".rotator" / "journal.json")
    assert journal.exists() and journal.load().rotation_id == request.id
    assert site.store.get(request.id).status is RequestStatus.RUNNING
    job = Job.fetch(request.job_id, connection=site.redis, serializer=SERIALIZER)
    assert job.get_status() == "started"

    ctx = Context(load_config(), site.redis, make_slack_client())
    reported = wait_for(lambda: sweep(ctx, [site.name]), 15, "the lock to expire and a report")
    assert reported == [request.id]
    assert sweep(ctx, [site.name]) == []  # said once

    message = [
        c.body
        for c in site.slack.calls_to("chat.postMessage")
        if c.body["channel"] == CHANNEL and "worker died" in c.body["text"]
    ]
    assert len(message) == 1
    rendered = json.dumps(message[0]["blocks"])
    assert "step `restart`" in rendered and "journal" in rendered and f"<@{ONCALL}>" in rendered
    button = message[0]["blocks"][-1]["elements"][0]
    assert (button["action_id"], button["value"]) == (RECOVER_ACTION, request.id)
    assert site.store.get(request.id).status is RequestStatus.FAILED

    recover_id = site.enqueue(request, "workers.jobs.recover_rotation")
    site.work()
    recovered = Job.fetch(recover_id, connection=site.redis, serializer=SERIALIZER)
    assert recovered.return_value() == "finished"
    assert not journal.exists()
    assert site.store.get(request.id).status is RequestStatus.FINISHED
