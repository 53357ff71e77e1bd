from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from core.errors import InputError
from tests.bot.conftest import APPROVER, APPROVER2, REQUESTER
from workers.store import (
    ApprovalResult,
    InvalidTransition,
    RequestNotFound,
    RequestStatus,
    RequestStore,
    RotationRequest,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def request_value(needed: int = 1) -> RotationRequest:
    return RotationRequest(
        id="",
        deployment="prod",
        secret="jwt-secret",
        requester=REQUESTER,
        reason="quarterly",
        window_start=NOW + timedelta(hours=2),
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        approvals_needed=needed,
        requester_tz="Europe/Berlin",
    )


def new_request(store: RequestStore, needed: int = 1) -> RotationRequest:
    return store.create(request_value(needed))


def test_a_request_round_trips_with_a_job_safe_id(redis: Redis) -> None:
    store = RequestStore(redis)
    created = new_request(store)
    assert re.fullmatch(r"r-[0-9a-f]{8}", created.id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", created.job_id)
    loaded = store.get(created.id)
    assert loaded.window_start == created.window_start
    assert loaded.status is RequestStatus.REQUESTED
    assert loaded.requester_tz == "Europe/Berlin"
    assert loaded.approvals == ()


def test_an_unknown_id_is_not_found(redis: Redis) -> None:
    with pytest.raises(RequestNotFound, match="No rotation request r-nope00"):
        RequestStore(redis).get("r-nope00")


def test_transitions_follow_the_state_machine(redis: Redis) -> None:
    store = RequestStore(redis)
    request = new_request(store)
    with pytest.raises(InvalidTransition, match="is requested; it cannot become running"):
        store.transition(request.id, RequestStatus.RUNNING)
    store.transition(request.id, RequestStatus.CANCELLED, decided_by=APPROVER)
    with pytest.raises(InvalidTransition):
        store.transition(request.id, RequestStatus.APPROVED)
    assert store.get(request.id).decided_by == APPROVER


def test_quorum_is_reached_once_with_two_distinct_approvers(redis: Redis) -> None:
    store = RequestStore(redis)
    request = new_request(store, needed=2)
    first = store.add_approval(request.id, APPROVER)
    again = store.add_approval(request.id, APPROVER)
    second = store.add_approval(request.id, APPROVER2)
    assert (first.added, first.quorum_reached) == (True, False)
    assert (again.added, again.quorum_reached) == (False, False)
    assert (second.added, second.quorum_reached) == (True, True)
    assert second.request.status is RequestStatus.APPROVED
    assert store.get(request.id).approvals == (APPROVER, APPROVER2)


def test_concurrent_approvals_reach_quorum_exactly_once(redis: Redis) -> None:
    store = RequestStore(redis)
    request = new_request(store)
    results: list[ApprovalResult] = []
    users = [f"UAPP{i}" for i in range(8)]
    threads = [
        threading.Thread(
            target=lambda u=u: results.append(RequestStore(redis).add_approval(request.id, u))
        )
        for u in users
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.quorum_reached for r in results) == 1
    assert len(store.get(request.id).approvals) == 1


def test_a_request_being_created_is_never_read_half_written(redis: Redis) -> None:
    # The bot stores a request right after posting it, while the worker and App Home read.
    store = RequestStore(redis)
    ids = [store.new_id() for _ in range(300)]  # free now (the test Redis is not flushed)
    seen: set[str] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                for request_id in ids:
                    found = store.find(request_id)  # raised TypeError on a half-written one
                    if found is not None:
                        seen.add(found.id)
        except BaseException as exc:  # reported by the test's thread below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for request_id in ids:
            store.create(replace(request_value(), id=request_id))
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert seen  # the reads overlapped the writes
    with pytest.raises(InputError, match="already taken"):
        store.create(replace(request_value(), id=ids[0]))


def test_once_drops_repeats(redis: Redis) -> None:
    store = RequestStore(redis)
    marker = f"trigger-{NOW.timestamp()}-{id(store)}"
    assert store.once(marker)
    assert not store.once(marker)


def test_sealed_values_expire(redis: Redis) -> None:
    store = RequestStore(redis)
    request = new_request(store)
    store.put_sealed(request.id, b"RS1sealed", ttl_s=120)
    assert store.get_sealed(request.id) == b"RS1sealed"
    assert 60 < redis.ttl(f"rotator:sealed:{request.id}") <= 120
    store.delete_sealed(request.id)
    assert store.get_sealed(request.id) is None
