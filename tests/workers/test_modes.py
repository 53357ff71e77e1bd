"""Modes on the worker: an emergency is a compromise rotation, and a planned signing-key
rotation's revoke phase is scheduled by the worker itself."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from core.envfile import EnvFile
from core.jwtkeys import b64url
from core.key_schedule import KeySchedule
from core.signing_keys import KeySet, api_keys_signed_by, kid_of, new_ec_key
from tests.workers.conftest import CHANNEL, Site
from workers.connection import SERIALIZER
from workers.store import RequestStatus

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.compose]


def _thread(site: Site) -> str:
    calls = site.slack.calls_to("chat.postMessage") + site.slack.calls_to("chat.update")
    return json.dumps([c.body for c in calls if c.body.get("channel") == CHANNEL])


def test_an_emergency_runs_the_compromise_plan_it_was_approved_with(site: Site) -> None:
    request = site.request("jwt-secret", emergency=True)
    plan = json.loads(request.plan_json)
    assert plan["revokes_sessions"] and plan["logs_out_users"]
    assert plan["options"]["mode"] == "compromise"

    site.enqueue(request)
    site.work()

    assert site.store.get(request.id).status is RequestStatus.FINISHED  # digest matched
    assert "revoke" in _thread(site) and "session" in _thread(site)


def _with_signing_key(site: Site) -> dict[str, Any]:
    path = site.directory / ".env"
    env = EnvFile.read(path)
    first = new_ec_key()
    legacy = {"kty": "oct", "k": b64url(env.as_dict()["JWT_SECRET"].encode()), "alg": "HS256"}
    keys = KeySet((first, legacy))
    text = env.replace({"JWT_KEYS": keys.jwt_keys(), "JWT_JWKS": keys.jwt_jwks()}).render()
    text += "".join(f"{k}={v}\n" for k, v in api_keys_signed_by(first).items())
    path.write_text(text)
    return first


def test_the_rotate_phase_schedules_the_revoke_phase_which_removes_the_old_key(
    site: Site,
) -> None:
    first = _with_signing_key(site)
    for phase in ("standby", "rotate"):
        request = site.request("jwt-signing-key")
        assert json.loads(request.plan_json)["options"]["phase"] == phase
        site.enqueue(request)
        site.work()
        assert site.store.get(request.id).status is RequestStatus.FINISHED, phase

    queue = Queue(f"rotator:{site.name}", connection=site.redis, serializer=SERIALIZER)
    scheduled = ScheduledJobRegistry(queue=queue).get_job_ids()
    assert f"revoke-{request.id}" in scheduled
    record = KeySchedule.read(site.directory / ".rotator")
    assert record is not None and record.revoke_after > time.time()
    assert "the worker revokes it at" in _thread(site)

    # Its time comes: every token the old key signed has expired; the scheduler moves the
    # job to the queue (done here by hand, as RQ's scheduler would).
    KeySchedule(**{**record.__dict__, "revoke_after": time.time() - 1}).write(
        site.directory / ".rotator"
    )
    job = Job.fetch(f"revoke-{request.id}", connection=site.redis, serializer=SERIALIZER)
    ScheduledJobRegistry(queue=queue).remove(job)
    queue.enqueue_job(job)
    site.job_ids.append(job.id)
    site.work()
    assert job.return_value(refresh=True) == "finished"

    keys = KeySet.parse(site.env()["JWT_KEYS"])
    assert [kid_of(k) for k in keys.asymmetric] != [first["kid"]]
    assert first["kid"] not in site.env()["JWT_JWKS"]
    assert "old signing key of" in _thread(site) and "is revoked" in _thread(site)
