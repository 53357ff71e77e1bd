"""Slack-side decisions in the deployment's hash-chained audit log, and its anchor.

The bot decides (request, approve, reject, cancel, expire, break glass, run now, ...) but the
audit log lives in the deployment's state directory on the worker host (`core.audit`), beside
the engine's own records. So the bot queues each decision in Redis and the worker appends it,
under the deployment's lock so it never interleaves with a running rotation's records.

After each append the worker anchors the chain's head (line count and hash) in Redis. A log
that is later shorter than its anchor, or whose anchored line no longer has the anchored hash,
was truncated or rewritten on the host: `check` says so, and the worker posts it in Slack.

Keys (prefix `rotator:`): `rotator:audit:pending:<deployment>` (a list of JSON records),
`rotator:audit:head:<deployment>` (JSON {lines, hash, at}).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from redis import Redis

from core.audit import AuditLog, AuditRecord
from core.errors import RotationInProgress
from core.lock import deployment_lock

__all__ = ["DecisionLog"]

log = logging.getLogger("rotator.audit")


class DecisionLog:
    def __init__(self, redis: Redis, *, prefix: str = "rotator") -> None:
        self.redis, self.prefix = redis, prefix

    def _pending(self, deployment: str) -> str:
        return f"{self.prefix}:audit:pending:{deployment}"

    def _head(self, deployment: str) -> str:
        return f"{self.prefix}:audit:head:{deployment}"

    def record(
        self,
        deployment: str,
        *,
        request_id: str,
        actor: str,
        action: str,
        secret: str,
        result: str,
        detail: str = "",
    ) -> None:
        """Queue one decision for the worker to write. `actor` is a Slack user id, or
        `rotator` for what rotator decided by itself (a missed window, an expiry)."""
        who = actor if actor == "rotator" else f"slack:{actor}"
        record = AuditRecord(time.time(), request_id, who, action, secret, result, detail)
        self.redis.rpush(self._pending(deployment), json.dumps(asdict(record)))
        log.info("%s %s on %s by %s: %s", action, request_id, deployment, actor, result)

    def pending(self, deployment: str) -> int:
        return int(self.redis.llen(self._pending(deployment)))

    def drain(self, deployment: str, state_dir: Path) -> int:
        """Append the queued decisions to the audit log in `state_dir`; the number written.
        Leaves them queued while a rotation holds the deployment (its lock)."""
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        written = 0
        try:
            with deployment_lock(state_dir):
                audit = AuditLog(state_dir / "audit.log")
                while raw := cast(bytes | None, self.redis.lindex(self._pending(deployment), 0)):
                    fields: dict[str, Any] = json.loads(raw)
                    audit.append(AuditRecord(**fields))
                    # Popped only once written: a crash in between repeats one record
                    # rather than losing it.
                    self.redis.lpop(self._pending(deployment))
                    written += 1
        except RotationInProgress:
            return written
        return written

    def anchor(self, deployment: str, audit: AuditLog) -> str | None:
        """Move the Redis anchor to the log's head, unless the log no longer contains the
        anchored head: then say what is wrong and leave the anchor as it was."""
        problem = self.check(deployment, audit)
        if problem:
            return problem
        lines = audit.path.read_text().splitlines() if audit.path.exists() else []
        if lines:
            head = json.loads(lines[-1]).get("hash", "")
            self.redis.set(
                self._head(deployment),
                json.dumps({"lines": len(lines), "hash": head, "at": time.time()}),
            )
        return None

    def head(self, deployment: str) -> dict[str, Any] | None:
        raw = cast(bytes | None, self.redis.get(self._head(deployment)))
        return cast(dict[str, Any], json.loads(raw)) if raw else None

    def check(self, deployment: str, audit: AuditLog) -> str | None:
        """What is wrong with the log compared with its anchor, or None."""
        anchored = self.head(deployment)
        if anchored is None:
            return None
        lines = audit.path.read_text().splitlines() if audit.path.exists() else []
        count = int(anchored["lines"])
        if len(lines) < count:
            return (
                f"the audit log {audit.path} has {len(lines)} record(s), but {count} were "
                f"anchored: records {len(lines) + 1}-{count} are gone (truncated)"
            )
        try:
            found = json.loads(lines[count - 1]).get("hash")
        except ValueError:
            found = None
        if found != anchored["hash"]:
            return (
                f"the audit log {audit.path} was rewritten: record {count} is not the anchored one"
            )
        broken = audit.verify_chain()
        if broken is not None:
            return f"the audit log {audit.path} was edited: the chain breaks at line {broken}"
        return None
