"""The journal: the durable record of one open rotation (0600, atomic)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from core.errors import InputError
from core.journal import Journal, JournalState, Phase, Step


def state() -> JournalState:
    return JournalState(
        rotation_id="r-0badcafe",
        secret="dashboard-password",
        actor="alice@host (terminal)",
        plan={"secret": "dashboard-password", "services": ["api-gw"]},
        old={"DASHBOARD_PASSWORD": "old-dashboard-value"},
        new={"DASHBOARD_PASSWORD": "new-dashboard-value"},
        backup="/somewhere/.env.bak",
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.json")


def test_saved_state_loads_back_equal(journal: Journal) -> None:
    original = state()
    journal.start(original, Step.APPLY)
    journal.complete(original, Step.APPLY)
    original.phase = Phase.ROLLING_BACK
    journal.save(original)

    loaded = journal.load()

    assert loaded == original
    assert loaded.phase is Phase.ROLLING_BACK
    assert loaded.reached(Step.APPLY)
    assert not loaded.reached(Step.COMMIT)


def test_start_records_the_step_in_progress_and_complete_clears_it(journal: Journal) -> None:
    s = state()
    journal.start(s, Step.COMMIT)
    assert journal.load().current == "commit"

    journal.complete(s, Step.COMMIT)
    journal.complete(s, Step.COMMIT)

    loaded = journal.load()
    assert loaded.current == ""
    assert loaded.done == ["commit"]


def test_the_journal_file_is_0600(journal: Journal) -> None:
    journal.save(state())

    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_the_journal_stays_0600_under_a_permissive_umask(journal: Journal) -> None:
    previous = os.umask(0)
    try:
        journal.save(state())
        journal.save(state())
    finally:
        os.umask(previous)

    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_a_crash_during_a_write_leaves_the_previous_journal_whole(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = state()
    journal.save(first)
    before = journal.path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    second = state()
    with pytest.raises(OSError, match="simulated crash"):
        journal.complete(second, Step.COMMIT)
    monkeypatch.undo()

    assert journal.path.read_bytes() == before
    assert journal.load().done == []
    # and no temporary file is left beside it
    assert sorted(p.name for p in journal.path.parent.iterdir()) == ["journal.json"]


def test_remove_deletes_the_file_and_tolerates_its_absence(journal: Journal) -> None:
    journal.save(state())
    journal.remove()
    journal.remove()

    assert not journal.exists()


@pytest.mark.parametrize(
    "content",
    [
        "{ not json",
        "[]",
        '"a string"',
        "{}",
        '{"rotation_id": "r-1"}',
        json.dumps({"phase": "sideways"}),
    ],
    ids=["broken-json", "array", "string", "empty-object", "missing-fields", "bad-phase"],
)
def test_an_unreadable_journal_raises_input_error_with_guidance(
    journal: Journal, content: str
) -> None:
    journal.path.write_text(content)

    with pytest.raises(InputError) as caught:
        journal.load()

    message = str(caught.value)
    assert str(journal.path) in message
    assert "unreadable" in message
    assert "backups/" in message
    assert "\n" not in message


def test_a_journal_with_an_unknown_field_is_unreadable_not_a_crash(journal: Journal) -> None:
    body = json.loads(json.dumps(state().__dict__ | {"phase": "forward"}))
    body["surprise"] = 1
    journal.path.write_text(json.dumps(body))

    with pytest.raises(InputError, match="unreadable"):
        journal.load()


def test_the_journal_of_a_state_holds_the_values_it_must_keep(journal: Journal) -> None:
    # Recovery needs both the old and the new value; the journal is where they rest.
    journal.save(state())

    raw = json.loads(journal.path.read_text())

    assert raw["old"] == {"DASHBOARD_PASSWORD": "old-dashboard-value"}
    assert raw["new"] == {"DASHBOARD_PASSWORD": "new-dashboard-value"}
    assert raw["phase"] == "forward"
