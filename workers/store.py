"""Rotation requests in Redis: who asked, who approved, where the thread is, what state it is in.

States (a request moves only along these arrows; see `TRANSITIONS`)::

    requested -> approved -> scheduled -> running -> finished | rolled_back | failed
    requested | approved | scheduled -> cancelled
    requested -> rejected | expired
    approved | scheduled -> missed   (approved too late, or not started within the window)
    missed -> requested          ("pick the next window": approved again for it)
    missed -> approved           ("run now", by someone who may approve)
    scheduled -> requested       (the plan changed since it was approved: approve it again)
    failed -> running            (`rotator recover` or the thread's button resumes it)

Keys (prefix `rotator:`):

- `rotator:request:<id>`      a hash, one field per `RotationRequest` attribute (strings)
- `rotator:requests`          a sorted set of ids by creation time
- `rotator:sealed:<id>`       sealed (encrypted) given values for the worker, with a TTL
- `rotator:once:<key>`        SET NX EX markers that drop Slack retries and double clicks

Every transition is a WATCH/MULTI transaction on the request's hash, so two clicks, two bot
processes or a retried request can never both move a request, and only the caller whose
transition succeeded goes on to enqueue. No secret value is ever stored here: given values
are stored sealed for the worker's key (see `workers.sealed`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline

from core.errors import InputError

__all__ = [
    "CALLED_OFF_NOTICE",
    "ENDED_STATES",
    "OPEN_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "RequestNotFound",
    "RequestStatus",
    "RequestStore",
    "RotationRequest",
]


class RequestStatus(StrEnum):
    REQUESTED = "requested"
    """Waiting for approvals; `approvals` holds those given so far."""
    APPROVED = "approved"
    """Quorum reached; the bot is scheduling it."""
    SCHEDULED = "scheduled"
    """Its job waits in RQ's ScheduledJobRegistry for `window_start`."""
    RUNNING = "running"
    FINISHED = "finished"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    MISSED = "missed"
    """Not run: approved after its window, or not started within it (`workers.windows`)."""


S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.REQUESTED: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.CANCELLED, S.MISSED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.CANCELLED, S.MISSED, S.REQUESTED}),
    S.MISSED: frozenset({S.REQUESTED, S.APPROVED}),
    S.RUNNING: frozenset({S.FINISHED, S.ROLLED_BACK, S.FAILED}),
    S.FAILED: frozenset({S.RUNNING}),
    S.FINISHED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
OPEN_STATES = frozenset({S.REQUESTED, S.APPROVED, S.SCHEDULED, S.RUNNING, S.MISSED})
ENDED_STATES = frozenset(set(S) - OPEN_STATES)


class RequestNotFound(InputError):
    pass


class InvalidTransition(InputError):
    """The request is not in a state that allows this (already approved, cancelled, ...)."""

    def __init__(self, request_id: str, current: RequestStatus, wanted: RequestStatus) -> None:
        super().__init__(
            f"Request {request_id} is {current.value}; it cannot become {wanted.value}."
        )
        self.request_id, self.current, self.wanted = request_id, current, wanted


CALLED_OFF_NOTICE = "called-off"
"""send_notice's id for "the maintenance is off" (cancelled, missed, refused, ...)."""


@dataclass(frozen=True)
class RotationRequest:
    id: str
    deployment: str
    secret: str
    requester: str
    reason: str
    window_start: datetime
    """When the rotation starts, UTC."""
    created_at: datetime
    expires_at: datetime
    """Unapproved after this instant, the request expires."""
    status: RequestStatus = RequestStatus.REQUESTED
    emergency: bool = False
    critical: bool = False
    needs_value: bool = False
    """A given secret: its value is stored sealed under `rotator:sealed:<id>`."""
    approvals: tuple[str, ...] = ()
    approvals_needed: int = 1
    break_glass: bool = False
    requester_tz: str = "UTC"
    channel: str = ""
    """The channel of the approval message, which is the thread's parent."""
    thread_ts: str = ""
    progress_ts: str = ""
    """The message the worker updates with each step."""
    decided_by: str = ""
    """Who rejected or cancelled it."""
    plan_json: str = ""
    """The plan shown for approval (`Plan.to_json()`; names only), to redraw the message."""
    plan_digest: str = ""
    """`core.digest.PlanBasis.digest` of the approved plan: what the approval is bound to."""
    plan_basis: str = ""
    """That basis as JSON, to say what changed when the worker finds another one."""
    incident: str = ""
    """The incident reference an emergency's reason carries (when the deployment asks)."""
    note: str = ""
    """Why it ended as it did (missed, refused, ...), for the redrawn approval message."""
    job_ids: tuple[str, ...] = ()
    """RQ jobs scheduled for it (the rotation and its notices), for cancel."""
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def job_id(self) -> str:
        return f"rotate-{self.id}"

    def notice_job_id(self, notice: str) -> str:
        """The RQ job id of one of this request's notices (`before-1h`, `cancelled`, ...)."""
        return f"notice-{self.id}-{notice}"

    def notice_marker(self, notice: str) -> str:
        """The once-marker `send_notice` sets when it has announced `notice`."""
        return f"notice:{self.id}:{notice}"

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if isinstance(value, datetime):
                out[key] = value.astimezone(UTC).isoformat()
            elif isinstance(value, Enum):
                out[key] = str(value.value)
            elif isinstance(value, bool):
                out[key] = "1" if value else "0"
            elif isinstance(value, (tuple, list)):
                out[key] = json.dumps(list(value))
            else:
                out[key] = str(value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> RotationRequest:
        data = {_text(k): _text(v) for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for f in cls.__dataclass_fields__.values():
            if f.name not in data:
                continue
            value = data[f.name]
            kind = str(f.type)
            if "datetime" in kind:
                kwargs[f.name] = datetime.fromisoformat(value)
            elif "RequestStatus" in kind:
                kwargs[f.name] = RequestStatus(value)
            elif kind == "bool":
                kwargs[f.name] = value == "1"
            elif kind == "int":
                kwargs[f.name] = int(value)
            elif "tuple" in kind:
                kwargs[f.name] = tuple(json.loads(value))
            else:
                kwargs[f.name] = value
        return cls(**kwargs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class ApprovalResult:
    request: RotationRequest
    added: bool
    """False when this user had already approved, or the request was no longer open."""
    quorum_reached: bool
    """True for exactly one caller: the one whose approval moved it to `approved`."""


class RequestStore:
    """Rotation requests, moved between states atomically."""

    def __init__(self, redis: Redis, *, prefix: str = "rotator") -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}:request:{request_id}"

    def new_id(self) -> str:
        """A request id not in use yet (the bot posts the message first, then stores)."""
        for _ in range(20):
            request_id = f"r-{secrets.token_hex(4)}"
            if not self.redis.exists(self._key(request_id)):
                return request_id
        raise RuntimeError("could not find a free request id")  # pragma: no cover

    def create(self, request: RotationRequest) -> RotationRequest:
        """Store a new request: under `request.id` if set (InputError if taken), else a
        fresh id."""
        created = request if request.id else replace(request, id=self.new_id())
        key = self._key(created.id)

        def run(pipe: Pipeline) -> None:
            # One transaction: a reader never sees the id without the rest of the request.
            if pipe.exists(key):
                raise InputError(f"request id {created.id} is already taken; ask again")
            pipe.multi()
            pipe.hset(key, mapping=created.to_hash())  # type: ignore[arg-type]
            pipe.zadd(f"{self.prefix}:requests", {created.id: created.created_at.timestamp()})

        self.redis.transaction(run, key)
        return created

    def delete(self, request_id: str) -> None:
        """Forget a request whose message could not be posted (or was taken back)."""
        pipe = self.redis.pipeline()
        pipe.delete(self._key(request_id), f"{self.prefix}:sealed:{request_id}")
        pipe.zrem(f"{self.prefix}:requests", request_id)
        pipe.execute()

    def find(self, request_id: str) -> RotationRequest | None:
        raw = self.redis.hgetall(self._key(request_id))
        return RotationRequest.from_hash(raw) if raw else None  # type: ignore[arg-type]

    def get(self, request_id: str) -> RotationRequest:
        """The request, or RequestNotFound. The worker loads requests with this."""
        request = self.find(request_id)
        if request is None:
            raise RequestNotFound(f"No rotation request {request_id}. `/rotate status` lists them.")
        return request

    def list_requests(
        self, *, statuses: Collection[RequestStatus] | None = None, limit: int = 50
    ) -> list[RotationRequest]:
        """Newest first."""
        ids = self.redis.zrevrange(f"{self.prefix}:requests", 0, limit * 4)
        found = (self.find(_text(i)) for i in cast(list[bytes], ids))
        return [r for r in found if r and (statuses is None or r.status in statuses)][:limit]

    def _update(
        self,
        request_id: str,
        change: Callable[[RotationRequest], RotationRequest | None],
    ) -> tuple[RotationRequest, bool]:
        """Apply `change` under WATCH; None means leave it. Returns (request, changed)."""
        key = self._key(request_id)
        result: list[tuple[RotationRequest, bool]] = []

        def run(pipe: Pipeline) -> None:
            raw = pipe.hgetall(key)
            if not raw:
                raise RequestNotFound(
                    f"No rotation request {request_id}. `/rotate status` lists them."
                )
            current = RotationRequest.from_hash(raw)  # type: ignore[arg-type]
            new = change(current)
            pipe.multi()
            if new is not None:
                new = replace(new, updated_at=datetime.now(UTC))
                pipe.hset(key, mapping=new.to_hash())  # type: ignore[arg-type]
            result[:] = [(new or current, new is not None)]

        self.redis.transaction(run, key)
        return result[0]

    def transition(self, request_id: str, to: RequestStatus, **fields: Any) -> RotationRequest:
        """Move to `to` (and set `fields`), or raise InvalidTransition. Atomic."""

        def change(current: RotationRequest) -> RotationRequest:
            if to not in TRANSITIONS[current.status]:
                raise InvalidTransition(request_id, current.status, to)
            return replace(current, status=to, **fields)

        return self._update(request_id, change)[0]

    def add_approval(self, request_id: str, user: str) -> ApprovalResult:
        """Record `user`'s approval; move to `approved` when the quorum is reached. Atomic."""
        outcome: list[bool] = [False]

        def change(current: RotationRequest) -> RotationRequest | None:
            if current.status is not RequestStatus.REQUESTED or user in current.approvals:
                return None
            approvals = (*current.approvals, user)
            reached = len(approvals) >= current.approvals_needed
            outcome[0] = reached
            status = RequestStatus.APPROVED if reached else current.status
            return replace(current, approvals=approvals, status=status)

        request, changed = self._update(request_id, change)
        return ApprovalResult(request, changed, changed and outcome[0])

    def update(self, request_id: str, **fields: Any) -> RotationRequest:
        """Set plain fields (thread_ts, progress_ts, job_ids) without a state change."""
        if "status" in fields:
            raise ValueError("use transition() to change the status")
        return self._update(request_id, lambda r: replace(r, **fields))[0]

    def once(self, marker: str, ttl_s: int = 600) -> bool:
        """True the first time `marker` is seen within `ttl_s` (Slack retries, double clicks)."""
        return bool(self.redis.set(f"{self.prefix}:once:{marker}", b"1", nx=True, ex=ttl_s))

    def seen(self, marker: str) -> bool:
        """Whether `once(marker)` has been called (and its marker has not expired)."""
        return bool(self.redis.exists(f"{self.prefix}:once:{marker}"))

    def put_sealed(self, request_id: str, blob: bytes, ttl_s: int) -> None:
        """Store a value sealed for the worker (workers.sealed.seal); never plaintext."""
        self.redis.set(f"{self.prefix}:sealed:{request_id}", blob, ex=max(ttl_s, 60))

    def get_sealed(self, request_id: str) -> bytes | None:
        value = self.redis.get(f"{self.prefix}:sealed:{request_id}")
        return value if isinstance(value, bytes) else None

    def delete_sealed(self, request_id: str) -> None:
        self.redis.delete(f"{self.prefix}:sealed:{request_id}")
