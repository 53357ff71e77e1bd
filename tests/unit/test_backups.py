"""Backups of .env live until the rotation ends, plus a grace; the newest always stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.backups import list_backups, parse_duration, prune
from core.envfile import backup
from core.errors import InputError


def _backups(state: Path, ages_s: list[float]) -> list[Path]:
    env = state.parent / ".env"
    env.write_text("POSTGRES_PASSWORD=x\n")
    made = []
    now = time.time()
    for age in ages_s:
        path = backup(env, state / "backups")
        os.utime(path, (now - age, now - age))
        made.append(path)
    return made


def test_by_default_only_the_newest_backup_survives(tmp_path: Path) -> None:
    state = tmp_path / ".rotator"
    made = _backups(state, [3000, 2000, 1000])

    deleted = prune(state, grace_s=0)

    assert sorted(deleted) == sorted(made[:2])
    assert [b.path for b in list_backups(state)] == [made[2]]


def test_a_grace_keeps_younger_backups_too(tmp_path: Path) -> None:
    state = tmp_path / ".rotator"
    made = _backups(state, [10 * 86400, 3600, 60])

    prune(state, grace_s=parse_duration("7d"))

    assert [b.path for b in list_backups(state)] == made[1:]


def test_an_open_rotations_backup_is_never_pruned(tmp_path: Path) -> None:
    state = tmp_path / ".rotator"
    made = _backups(state, [3000, 1000])

    prune(state, grace_s=0, keep=made[0])

    assert [b.path for b in list_backups(state)] == made


def test_backups_are_private_files_in_a_private_folder(tmp_path: Path) -> None:
    state = tmp_path / ".rotator"
    _backups(state, [0])
    assert all(b.private for b in list_backups(state))
    assert (state / "backups").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30m", 1800), ("12h", 43200)])
def test_durations_read_like_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_duration_without_a_unit_we_know_is_refused() -> None:
    with pytest.raises(InputError, match="not a duration"):
        parse_duration("a week")
