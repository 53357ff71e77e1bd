"""Backups of `.env`, and how long they are kept.

Every rotation copies `.env` (every secret in it) into `<state dir>/backups/` before it
changes anything: 0600 files in a 0700 folder. They are needed only until the rotation is
verified (or undone), plus a grace period for a person to restore by hand. So when a
rotation ends, the folder is pruned with the journal: the newest backup is always kept,
older ones only while they are younger than the grace (default 0: the last one only).

    pruned = prune(state_dir, grace_s=7 * 86400)
    for backup in list_backups(state_dir): ...
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError

__all__ = ["BACKUP_GRACE_ENV", "Backup", "grace_from_environment", "list_backups", "prune"]

BACKUP_GRACE_ENV = "ROTATOR_BACKUP_GRACE"
"""How long older backups are kept after a rotation ends: "7d", "12h", "30m", "0"."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Backup:
    path: Path
    modified: float
    size: int
    mode: int

    @property
    def private(self) -> bool:
        """Readable by its owner only (0600 or stricter)."""
        return self.mode & 0o077 == 0


def backups_dir(state_dir: Path) -> Path:
    return state_dir / "backups"


def list_backups(state_dir: Path) -> list[Backup]:
    """Every backup, oldest first."""
    directory = backups_dir(state_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            found.append(Backup(path, info.st_mtime, info.st_size, stat.S_IMODE(info.st_mode)))
    return sorted(found, key=lambda backup: (backup.modified, backup.path.name))


def prune(
    state_dir: Path,
    *,
    grace_s: float,
    keep: Path | None = None,
    now: float | None = None,
) -> list[Path]:
    """Delete backups older than `grace_s`, except the newest one and `keep` (the open
    rotation's own backup). Returns what was deleted."""
    backups = list_backups(state_dir)
    if not backups:
        return []
    now = time.time() if now is None else now
    spared = {backups[-1].path, *([keep] if keep is not None else [])}
    deleted = []
    for backup in backups:
        if backup.path in spared or now - backup.modified < grace_s:
            continue
        backup.path.unlink(missing_ok=True)
        deleted.append(backup.path)
    if deleted:
        fd = os.open(backups_dir(state_dir), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return deleted


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "30m", "12h" or "7d"."""
    match = _DURATION.match(text)
    if match is None:
        raise InputError(f"{text!r} is not a duration: use a number with s, m, h or d (e.g. 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def grace_from_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    text = environ.get(BACKUP_GRACE_ENV, "").strip()
    return parse_duration(text) if text else 0.0
