from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot import policy
from tests.bot.conftest import (
    APPROVER,
    GROUP,
    GROUP_MEMBER,
    ONCALL,
    REQUESTER,
    STRANGER,
    make_settings,
)
from workers.store import RequestStatus, RotationRequest

NOW = datetime(2025, 6, 6, 12, 0, tzinfo=UTC)
DEP = make_settings().deployment("prod")
GLASS = make_settings(break_glass=True).deployment("prod")
looked_up: list[str] = []


def members(group: str) -> Collection[str]:
    looked_up.append(group)
    return [GROUP_MEMBER] if group == GROUP else []


def request(**overrides: object) -> RotationRequest:
    base = RotationRequest(
        id="r-abc123",
        deployment="prod",
        secret="jwt-secret",
        requester=REQUESTER,
        reason="",
        window_start=NOW + timedelta(hours=3),
        created_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(hours=23),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def approve(user: str, req: RotationRequest | None = None) -> policy.Decision:
    return policy.may_approve(user, req or request(), DEP, now=NOW, members=members)


def test_the_requester_may_not_approve_their_own_request() -> None:
    decision = approve(REQUESTER)
    assert not decision
    assert "someone else must approve" in decision.reason


def test_an_approver_on_the_list_may_approve() -> None:
    assert approve(APPROVER).allowed


def test_a_member_of_an_approver_group_may_approve() -> None:
    looked_up.clear()
    decision = approve(GROUP_MEMBER)
    assert decision.allowed
    assert decision.reason == f"member of approver group {GROUP}"
    assert looked_up == [GROUP]


def test_someone_else_is_refused_and_told_why() -> None:
    decision = approve(STRANGER)
    assert not decision
    assert decision.reason == "You are not an approver for `prod`; nothing changed."


def test_critical_secrets_need_two_approvals() -> None:
    assert policy.approvals_needed(DEP, critical=True, emergency=False) == 2
    assert policy.approvals_needed(DEP, critical=False, emergency=False) == 1
    # Critical secrets keep their quorum in an emergency, unless break-glass is on.
    assert policy.approvals_needed(DEP, critical=True, emergency=True) == 2
    assert policy.approvals_needed(DEP, critical=False, emergency=True) == 1


def test_the_same_approver_cannot_count_twice() -> None:
    decision = approve(APPROVER, request(approvals=(APPROVER,), approvals_needed=2))
    assert not decision
    assert "already approved" in decision.reason


def test_an_expired_request_cannot_be_approved() -> None:
    decision = approve(APPROVER, request(expires_at=NOW - timedelta(seconds=1)))
    assert not decision
    assert "expired" in decision.reason
    assert policy.is_expired(request(expires_at=NOW), NOW)
    assert not policy.is_expired(request(), NOW)


def test_a_decided_request_cannot_be_approved() -> None:
    decision = approve(APPROVER, request(status=RequestStatus.CANCELLED))
    assert not decision
    assert "already cancelled" in decision.reason


def test_an_emergency_needs_an_oncall_approver() -> None:
    emergency = request(emergency=True)
    assert approve(ONCALL, emergency).allowed
    refused = approve(APPROVER, emergency)
    assert not refused
    assert "on-call list" in refused.reason


def test_break_glass_is_off_unless_configured() -> None:
    req = request(emergency=True, requester=ONCALL)
    decision = policy.may_break_glass(ONCALL, req, DEP, now=NOW)
    assert not decision
    assert "Break-glass is off" in decision.reason


def test_break_glass_lets_an_oncall_requester_self_approve_loudly() -> None:
    req = request(emergency=True, requester=ONCALL)
    decision = policy.may_break_glass(ONCALL, req, GLASS, now=NOW)
    assert decision.allowed
    assert decision.audit is True


def test_break_glass_is_refused_to_others_and_to_scheduled_requests() -> None:
    assert not policy.may_break_glass(REQUESTER, request(emergency=True), GLASS, now=NOW)
    not_emergency = request(requester=ONCALL)
    assert (
        "only for emergency" in policy.may_break_glass(ONCALL, not_emergency, GLASS, now=NOW).reason
    )


def test_who_may_request() -> None:
    assert policy.may_request(REQUESTER, DEP).allowed
    refused = policy.may_request(STRANGER, DEP)
    assert not refused
    assert "requester list" in refused.reason
    assert policy.may_request(STRANGER, make_settings(requesters=[]).deployment("prod")).allowed


def test_who_may_reject_and_cancel() -> None:
    assert policy.may_reject(APPROVER, request(), DEP, members=members).allowed
    assert not policy.may_reject(STRANGER, request(), DEP, members=members)
    assert policy.may_cancel(REQUESTER, request(), DEP, members=members).allowed
    assert not policy.may_cancel(STRANGER, request(), DEP, members=members)
    done = request(status=RequestStatus.FINISHED)
    assert (
        "can no longer be cancelled"
        in policy.may_cancel(REQUESTER, done, DEP, members=members).reason
    )


def test_recover_is_for_on_call_and_approvers_and_only_after_a_failure() -> None:
    failed = request(status=RequestStatus.FAILED)

    assert policy.may_recover(GROUP_MEMBER, failed, DEP, members=members).allowed
    assert not policy.may_recover(REQUESTER, failed, DEP, members=members).allowed
    running = policy.may_recover(
        GROUP_MEMBER, request(status=RequestStatus.RUNNING), DEP, members=members
    )
    assert not running.allowed
    assert "running" in running.reason
