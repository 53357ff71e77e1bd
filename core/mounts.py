"""Literal copies of a value being rotated, in files the containers mount.

Rotator rewrites `.env`, and compose carries the new values into the containers'
environments. A value typed into a file that a container bind-mounts (a legacy
`volumes/api/kong.yml` with the API keys written in, a key pasted into an edge
function) is not rewritten: after the rotation the old value would still be in force
there. The plan refuses such a rotation, naming each file, before anything changes.

Only bind mounts whose source lies inside the deployment directory are searched
(the deployment's own files; a socket or /etc/localtime is not one), and never the
`.env` rotator rewrites nor its own state directory. The search is bounded, and
says what it skipped: files larger than MAX_FILE_BYTES, binary files (a NUL byte in
their first SNIFF_BYTES), files it may not read, and whatever is left once MAX_FILES
files or TIME_BUDGET_S seconds are spent (a database's data directory can be big).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.compose import Mount

__all__ = ["MountScan", "find_copies"]

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are skipped: configuration and code are smaller, data files are not read."""

SNIFF_BYTES = 8192
"""A NUL byte among a file's first bytes marks it binary, as git and grep decide."""

MAX_FILES = 5000
"""Files examined at most, all mounts together."""

TIME_BUDGET_S = 3.0
"""Time spent searching at most, all mounts together."""

MIN_VALUE_LENGTH = 8
"""Shorter values (a port, `true`) would match by accident; no generated secret is this short."""


@dataclass
class MountScan:
    """What a search of the mounted files found, and what it left out."""

    copies: dict[Path, set[str]] = field(default_factory=dict)
    """File -> the keys whose value it holds."""
    mounted_as: dict[Path, str] = field(default_factory=dict)
    """File -> `service:/path/in/container` of one mount that shows it."""
    searched: int = 0
    skipped: dict[str, list[Path]] = field(default_factory=dict)
    """Why -> the files skipped for that reason ("larger than 1 MiB", "binary", ...)."""
    stopped: str = ""
    """Why the search ended early, if it did."""

    def notes(self, directory: Path) -> list[str]:
        """Sentences for the plan about what was not searched."""
        notes = [
            f"{len(paths)} mounted file(s) not searched for the rotated values ({why}): "
            + _some(paths, directory)
            for why, paths in sorted(self.skipped.items())
        ]
        if self.stopped:
            notes.append(f"the search of mounted files for the rotated values {self.stopped}")
        return notes

    def _skip(self, why: str, path: Path) -> None:
        self.skipped.setdefault(why, []).append(path)


def find_copies(
    mounts: Iterable[Mount],
    values: Mapping[str, str],
    *,
    directory: Path,
    exclude: Iterable[Path] = (),
) -> MountScan:
    """Search the files of `mounts` inside `directory` for the `values` (key -> value).

    `exclude` are paths never searched (the `.env` rotator rewrites, its state
    directory). Values shorter than MIN_VALUE_LENGTH are not looked for.
    """
    needles = {
        key: value.encode() for key, value in values.items() if len(value) >= MIN_VALUE_LENGTH
    }
    scan = MountScan()
    if not needles:
        return scan
    root = directory.resolve()
    excluded = {_resolved(path) for path in exclude}
    deadline = time.monotonic() + TIME_BUDGET_S
    seen: set[Path] = set()
    # Mounted files first (configuration: kong.yml, pooler.exs), then directories, so a
    # big data directory cannot use up the budget before them.
    for mount in sorted(mounts, key=lambda m: (not m.source.is_file(), str(m.source))):
        source = _resolved(mount.source)
        if not source.is_relative_to(root) or _under(source, excluded):
            continue
        for path in _files(source, excluded):
            if path in seen:
                continue
            out_of_time = time.monotonic() >= deadline
            if len(seen) >= MAX_FILES or out_of_time:
                limit = f"{TIME_BUDGET_S:g} s" if out_of_time else f"{MAX_FILES} files"
                scan.stopped = f"stopped after {limit}, at {path.relative_to(root)}"
                return scan
            seen.add(path)
            keys = _search(path, needles, scan)
            if keys:
                scan.copies[path] = keys
                scan.mounted_as[path] = f"{mount.service}:{_inside(mount, source, path)}"
    return scan


def _files(source: Path, excluded: set[Path]) -> Iterator[Path]:
    """The regular files at or under `source`, in a stable order, symlinks not followed."""
    try:
        mode = source.lstat().st_mode
    except OSError:
        return  # not there yet: compose creates a missing bind source as a directory
    if stat.S_ISREG(mode):
        yield source
        return
    if not stat.S_ISDIR(mode):
        return
    for top, dirs, files in os.walk(source, followlinks=False):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if here / d not in excluded)
        for name in sorted(files):
            path = here / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except OSError:
                continue  # gone since the walk listed it: a live database's temp files
            if regular and path not in excluded:
                yield path


def _search(path: Path, needles: Mapping[str, bytes], scan: MountScan) -> set[str]:
    """The keys whose value `path` contains; records why when it is not read."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            scan._skip(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", path)
            return set()
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError:
        scan._skip("not readable", path)
        return set()
    if b"\0" in data[:SNIFF_BYTES]:
        scan._skip("binary", path)
        return set()
    scan.searched += 1
    return {key for key, needle in needles.items() if needle in data}


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _under(path: Path, roots: set[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _inside(mount: Mount, source: Path, path: Path) -> str:
    """Where `path` shows inside the container."""
    if path == source:
        return mount.target
    return f"{mount.target.rstrip('/')}/{path.relative_to(source).as_posix()}"


def _some(paths: list[Path], directory: Path, shown: int = 3) -> str:
    root = directory.resolve()
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
