"""The audit log: hash-chained, one JSON object per line, names only, 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from core.audit import GENESIS, AuditLog, AuditRecord, new_record

RECORD_FIELDS = {"at", "rotation_id", "actor", "action", "secret", "result", "detail"}


def write_log(path: Path, count: int = 4) -> AuditLog:
    log = AuditLog(path)
    for n in range(count):
        log.append(
            new_record(f"r-{n:08x}", "alice@host (terminal)", "rotate", "jwt-secret", "finished")
        )
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def test_an_untouched_log_verifies_and_reads_back_in_order(log_path: Path) -> None:
    log = write_log(log_path)

    assert log.verify_chain() is None
    assert [r.rotation_id for r in log.records()] == [f"r-{n:08x}" for n in range(4)]


def test_a_missing_log_is_an_empty_unbroken_chain(log_path: Path) -> None:
    log = AuditLog(log_path)

    assert log.records() == []
    assert log.verify_chain() is None


def test_each_record_chains_to_the_hash_of_the_one_before(log_path: Path) -> None:
    write_log(log_path, 3)

    rows = [json.loads(line) for line in lines(log_path)]

    assert rows[0]["prev"] == GENESIS
    assert [row["prev"] for row in rows[1:]] == [row["hash"] for row in rows[:-1]]
    assert len({row["hash"] for row in rows}) == 3


def test_the_file_is_0600_and_holds_only_names_and_outcomes(log_path: Path) -> None:
    write_log(log_path, 2)

    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    for line in lines(log_path):
        assert set(json.loads(line)) == RECORD_FIELDS | {"prev", "hash"}
    # The API has no place for a value: only these fields exist.
    assert set(AuditRecord.__dataclass_fields__) == RECORD_FIELDS


@pytest.mark.parametrize(
    ("field", "forged"),
    [("result", "rolled_back"), ("actor", "mallory"), ("at", 0.0), ("secret", "smtp")],
)
def test_editing_a_field_breaks_the_chain_at_that_line(
    log_path: Path, field: str, forged: object
) -> None:
    write_log(log_path)
    text = lines(log_path)
    row = json.loads(text[2])
    row[field] = forged
    text[2] = json.dumps(row, sort_keys=True) + "\n"
    log_path.write_text("".join(text))

    assert AuditLog(log_path).verify_chain() == 3


def test_editing_a_field_and_recomputing_its_own_hash_still_breaks_at_the_next_line(
    log_path: Path,
) -> None:
    import hashlib

    write_log(log_path)
    text = lines(log_path)
    row = json.loads(text[1])
    row.pop("hash")
    row["result"] = "finished-by-someone-else"
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"))
    row["hash"] = hashlib.sha256((row["prev"] + canonical).encode()).hexdigest()
    text[1] = json.dumps(row, sort_keys=True) + "\n"
    log_path.write_text("".join(text))

    assert AuditLog(log_path).verify_chain() == 3


def test_deleting_a_line_breaks_the_chain_where_it_was(log_path: Path) -> None:
    write_log(log_path)
    text = lines(log_path)
    del text[1]
    log_path.write_text("".join(text))

    assert AuditLog(log_path).verify_chain() == 2


def test_deleting_the_first_line_breaks_the_chain_at_line_1(log_path: Path) -> None:
    write_log(log_path)
    log_path.write_text("".join(lines(log_path)[1:]))

    assert AuditLog(log_path).verify_chain() == 1


def test_reordering_lines_breaks_the_chain_at_the_first_moved_line(log_path: Path) -> None:
    write_log(log_path)
    text = lines(log_path)
    text[1], text[2] = text[2], text[1]
    log_path.write_text("".join(text))

    assert AuditLog(log_path).verify_chain() == 2


def test_a_line_that_is_not_a_json_object_breaks_the_chain_and_the_rest_still_reads(
    log_path: Path,
) -> None:
    write_log(log_path)
    text = lines(log_path)
    text[1] = "[1, 2, 3]\n"
    text[2] = "not json at all\n"
    log_path.write_text("".join(text))
    log = AuditLog(log_path)

    assert log.verify_chain() == 2
    assert [r.rotation_id for r in log.records()] == ["r-00000000", "r-00000003"]


def test_appending_after_an_edit_does_not_repair_the_chain(log_path: Path) -> None:
    write_log(log_path, 2)
    text = lines(log_path)
    log_path.write_text(text[0].replace("finished", "refused") + text[1])
    log = AuditLog(log_path)

    log.append(new_record("r-new", "bob", "rotate", "smtp", "finished"))

    assert log.verify_chain() == 1
