"""The audit log: who rotated what, when, and how it ended. Never values.

One JSON object per line in `<state dir>/audit.log`. Each record carries the
hash of the one before it, so editing, removing or reordering a record breaks
the chain at that point and `verify_chain` names the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    at: float
    rotation_id: str
    actor: str
    action: str
    """rotate, recover, verify, ..."""
    secret: str
    result: str
    """finished, rolled_back, failed, needs_recovery, refused, ..."""
    detail: str = ""


def _digest(prev: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: AuditRecord) -> None:
        prev = self._last_hash()
        body = record.__dict__ | {"prev": prev}
        line = json.dumps(body | {"hash": _digest(prev, body)}, sort_keys=True) + "\n"
        # O_APPEND keeps concurrent appends whole; 0600 because actors are people.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[AuditRecord]:
        """Every record that can still be read; a mangled line is skipped here and
        reported by `verify_chain`, so `rotator history` can show the rest."""
        fields = AuditRecord.__dataclass_fields__
        records = []
        for raw in self._raw():
            try:
                records.append(AuditRecord(**{k: v for k, v in raw.items() if k in fields}))
            except TypeError:
                continue
        return records

    def verify_chain(self) -> int | None:
        """The 1-based line number of the first record that does not chain, or None."""
        prev = GENESIS
        for line_no, raw in enumerate(self._raw(), start=1):
            claimed = raw.pop("hash", None)
            if raw.get("prev") != prev or claimed != _digest(prev, raw):
                return line_no
            prev = claimed
        return None

    def _raw(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            rows.append(row if isinstance(row, dict) else {"unreadable": True})
        return rows

    def _last_hash(self) -> str:
        rows = self._raw()
        return str(rows[-1].get("hash", GENESIS)) if rows else GENESIS


def new_record(
    rotation_id: str, actor: str, action: str, secret: str, result: str, detail: str = ""
) -> AuditRecord:
    return AuditRecord(time.time(), rotation_id, actor, action, secret, result, detail)
