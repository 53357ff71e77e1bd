"""Who may ask for a rotation and who may approve it. Pure functions; each answer has a reason.

Rules, per deployment:
- Request: anyone in `requesters`, or anyone when the list is empty.
- Approve: someone in `approvers` or in a user group of `approver_groups`, never the requester,
  once per person, before the request expires.
- Quorum: `approvals` for normal secrets, `critical_approvals` for critical ones.
- Emergency (`now` + reason): one approval from someone on `oncall` (not the requester) is
  enough for normal secrets; critical secrets keep their quorum (`critical_approvals`, from
  on-call or approvers) unless `break_glass` is on. With `break_glass`, an on-call requester
  may also approve their own request: announced loudly and audited (`Decision.audit`).
- A missed window: whoever may approve may "run now"; the requester or an approver may
  "pick the next window" (which asks for approval again).
- `/rotate status`: only the deployment's requesters, approvers and on-call see it; with an
  empty requester list, any member who is not a guest.

User-group membership is looked up through `GroupMembers` (usergroups.users.list in the app),
only when the user is not listed directly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from workers.config import DeploymentConfig
from workers.store import RequestStatus, RotationRequest

__all__ = [
    "Decision",
    "GroupMembers",
    "approvals_needed",
    "is_expired",
    "may_approve",
    "may_break_glass",
    "may_cancel",
    "may_pick_next_window",
    "may_reject",
    "may_request",
    "may_run_now",
    "may_view",
]

GroupMembers = Callable[[str], Collection[str]]
"""A user group id -> the ids of its members."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    audit: bool = False
    """True for break-glass: announce loudly and write to the audit log."""

    def __bool__(self) -> bool:
        return self.allowed


def _no(reason: str) -> Decision:
    return Decision(False, reason)


def may_request(user: str, dep: DeploymentConfig) -> Decision:
    if dep.requesters and user not in dep.requesters:
        return _no(f"You are not on `{dep.name}`'s requester list; ask one of its requesters.")
    return Decision(True, "requester")


def approvals_needed(dep: DeploymentConfig, *, critical: bool, emergency: bool) -> int:
    if emergency and not (critical and not dep.break_glass):
        return 1
    return dep.critical_approvals if critical else dep.approvals


def is_expired(request: RotationRequest, now: datetime) -> bool:
    return request.status is RequestStatus.REQUESTED and now >= request.expires_at


def _is_approver(user: str, dep: DeploymentConfig, members: GroupMembers) -> str | None:
    """How `user` qualifies as an approver ("approver list", "group S..."), or None."""
    if user in dep.approvers:
        return "on the approver list"
    for group in dep.approver_groups:
        if user in members(group):
            return f"member of approver group {group}"
    return None


def _open_check(user: str, request: RotationRequest, now: datetime) -> Decision | None:
    if is_expired(request, now):
        return _no(f"Request {request.id} expired unapproved; ask again with `/rotate`.")
    if request.status is not RequestStatus.REQUESTED:
        return _no(f"Request {request.id} is already {request.status.value}; nothing changed.")
    if user in request.approvals:
        return _no(f"You already approved {request.id}; it needs another approver.")
    return None


def may_approve(
    user: str,
    request: RotationRequest,
    dep: DeploymentConfig,
    *,
    now: datetime,
    members: GroupMembers,
) -> Decision:
    if user == request.requester:
        return _no("You asked for this rotation, so someone else must approve it.")
    refused = _open_check(user, request, now)
    if refused is not None:
        return refused
    if request.emergency:
        if user in dep.oncall:
            return Decision(True, "on call: emergency approval")
        if not (request.critical and request.approvals_needed > 1):
            return _no(
                f"Emergency rotations on `{dep.name}` need an approver from the on-call list."
            )
    how = _is_approver(user, dep, members)
    if how is None:
        return _no(f"You are not an approver for `{dep.name}`; nothing changed.")
    return Decision(True, how)


def may_break_glass(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, now: datetime
) -> Decision:
    if not dep.break_glass:
        return _no(f"Break-glass is off for `{dep.name}`; an on-call approver must approve.")
    if not request.emergency:
        return _no("Break-glass is only for emergency (`now`) rotations.")
    if user != request.requester or user not in dep.oncall:
        return _no("Only the requester, and only when on call, may break the glass.")
    refused = _open_check(user, request, now)
    if refused is not None:
        return refused
    return Decision(True, "break-glass self-approval by on-call requester", audit=True)


def may_reject(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, members: GroupMembers
) -> Decision:
    if request.status is not RequestStatus.REQUESTED:
        return _no(f"Request {request.id} is already {request.status.value}; nothing changed.")
    if user == request.requester or user in dep.oncall or _is_approver(user, dep, members):
        return Decision(True, "approver")
    return _no(f"You are not an approver for `{dep.name}`; nothing changed.")


def may_cancel(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, members: GroupMembers
) -> Decision:
    if request.status not in (
        RequestStatus.REQUESTED,
        RequestStatus.APPROVED,
        RequestStatus.SCHEDULED,
    ):
        return _no(
            f"Request {request.id} is {request.status.value}; it can no longer be cancelled."
        )
    if user == request.requester or user in dep.oncall or _is_approver(user, dep, members):
        return Decision(True, "requester or approver")
    return _no(f"Only the requester or an approver of `{dep.name}` may cancel {request.id}.")


def may_recover(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, members: GroupMembers
) -> Decision:
    """The thread's Recover button: on-call or an approver, and only for a failed request."""
    if not (user in dep.oncall or _is_approver(user, dep, members)):
        return _no(f"Only on-call or an approver of `{dep.name}` may recover.")
    if request.status is not RequestStatus.FAILED:
        return _no(f"Request {request.id} is {request.status.value}.")
    return Decision(True, "on call or approver")


def may_run_now(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, members: GroupMembers
) -> Decision:
    """ "Run now" on a missed request: whoever may approve it (never the requester)."""
    if request.status is not RequestStatus.MISSED:
        return _no(f"Request {request.id} is {request.status.value}; nothing changed.")
    if user == request.requester:
        return _no("You asked for this rotation, so someone else must run it now.")
    if user in dep.oncall or _is_approver(user, dep, members):
        return Decision(True, "may approve")
    return _no(f"Only an approver of `{dep.name}` may run it now; nothing changed.")


def may_pick_next_window(
    user: str, request: RotationRequest, dep: DeploymentConfig, *, members: GroupMembers
) -> Decision:
    if request.status is not RequestStatus.MISSED:
        return _no(f"Request {request.id} is {request.status.value}; nothing changed.")
    if user == request.requester or user in dep.oncall or _is_approver(user, dep, members):
        return Decision(True, "requester or approver")
    return _no(f"Only the requester or an approver of `{dep.name}` may reschedule it.")


def may_view(
    user: str, dep: DeploymentConfig, *, members: GroupMembers, is_guest: bool
) -> Decision:
    """Who sees a deployment's requests (`/rotate status`, the App Home)."""
    if user in dep.requesters or user in dep.oncall or _is_approver(user, dep, members):
        return Decision(True, "requester or approver")
    if not dep.requesters and not is_guest:
        return Decision(True, "member")
    return _no(f"Only `{dep.name}`'s requesters and approvers see its rotations.")
