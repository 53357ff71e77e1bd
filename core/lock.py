"""One rotation per deployment at a time, across processes on this host."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import RotationInProgress


@contextmanager
def deployment_lock(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on `<state dir>/lock`; refuse at once if someone holds it.

    flock dies with its process, so a rotation killed with SIGKILL leaves no stale
    lock behind; what it leaves is the journal, which `recover` reads.
    """
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationInProgress(
                f"another rotator process is working on {state_dir.parent} right now; "
                "wait for it to finish (rotator history shows what ran)"
            ) from None
        yield
    finally:
        os.close(fd)
