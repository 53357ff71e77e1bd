"""Literal copies of a rotated value in files the containers mount (core.mounts), and the
plan's refusal over them: exit 2, the file named, nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.cli import main
from core.compose import Mount
from core.envfile import EnvFile
from core.mounts import MAX_FILE_BYTES, _files, find_copies
from tests.conftest import REFERENCE_2025_11, REFERENCE_CURRENT, reference_dir

VALUE = "old-anon-key-value-0123456789"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


# -- the search ---------------------------------------------------------------------------


def test_a_mounted_file_holding_a_value_is_found_with_the_key_and_where_it_shows(
    tmp_path: Path,
) -> None:
    kong = write(tmp_path / "volumes/api/kong.yml", f"keyauth_credentials:\n  - key: {VALUE}\n")
    write(tmp_path / "volumes/api/clean.yml", "key: $SUPABASE_ANON_KEY\n")
    mounts = [
        Mount("kong", tmp_path / "volumes/api/kong.yml", "/home/kong/temp.yml"),
        Mount("studio", tmp_path / "volumes/api", "/app/api"),
    ]

    scan = find_copies(mounts, {"ANON_KEY": VALUE, "OTHER": "x" * 12}, directory=tmp_path)

    assert scan.copies == {kong: {"ANON_KEY"}}
    assert scan.mounted_as[kong] == "kong:/home/kong/temp.yml"  # the first mount showing it
    assert scan.searched == 2  # each file once, though two mounts show kong.yml


def test_files_that_vanish_during_the_walk_are_passed_over(tmp_path: Path) -> None:
    # A running database's data directory: temp files go while it is walked.
    data = tmp_path / "volumes/db/data"
    names = [f"pgsql_tmp{i:02d}" for i in range(6)]
    for name in names:
        write(data / name, "temp")
    walk = _files(data, excluded=set())
    first = next(walk)  # the directory is listed now; then the server removes files
    for name in names[1::2]:
        (data / name).unlink()

    rest = list(walk)

    assert [first, *rest] == [data / name for name in names[0::2]]


def test_files_outside_the_project_env_and_the_state_dir_are_not_searched(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"ANON_KEY={VALUE}\n")
    write(project / ".rotator/backups/env-1", f"ANON_KEY={VALUE}\n")
    outside = write(tmp_path / "elsewhere/keys.txt", VALUE)
    mounts = [Mount("app", project, "/project"), Mount("app", outside, "/keys.txt")]

    scan = find_copies(
        mounts,
        {"ANON_KEY": VALUE},
        directory=project,
        exclude=(project / ".env", project / ".rotator"),
    )

    assert scan.copies == {}
    assert scan.searched == 0


def test_short_values_are_not_looked_for(tmp_path: Path) -> None:
    write(tmp_path / "conf/app.conf", "port = 5432\nenabled = true\n")
    scan = find_copies(
        [Mount("app", tmp_path / "conf", "/conf")], {"PORT": "5432"}, directory=tmp_path
    )
    assert scan.copies == {}


def test_large_binary_and_unreadable_files_are_skipped_and_said_so(tmp_path: Path) -> None:
    write(tmp_path / "data/big.sql", "-- " + VALUE + "\n" + "x" * MAX_FILE_BYTES)
    write(tmp_path / "data/pg_filenode.map", b"\0\1\2" + VALUE.encode())
    write(tmp_path / "data/small.conf", "nothing here\n")
    (tmp_path / "data/dangling").symlink_to(tmp_path / "nowhere")

    scan = find_copies(
        [Mount("db", tmp_path / "data", "/var/lib/postgresql/data")],
        {"ANON_KEY": VALUE},
        directory=tmp_path,
    )

    assert scan.copies == {}  # said below: the search is bounded
    assert scan.searched == 1
    notes = scan.notes(tmp_path)
    assert any("(binary): data/pg_filenode.map" in note for note in notes), notes
    assert any("(larger than 1 MiB): data/big.sql" in note for note in notes), notes


def test_the_search_stops_at_its_file_budget_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.mounts.MAX_FILES", 3)
    for index in range(6):
        write(tmp_path / f"functions/f{index}.ts", "export default 1\n")

    scan = find_copies(
        [Mount("functions", tmp_path / "functions", "/home/deno/functions")],
        {"ANON_KEY": VALUE},
        directory=tmp_path,
    )

    assert scan.searched == 3
    assert scan.notes(tmp_path) == [
        "the search of mounted files for the rotated values stopped after 3 files, "
        "at functions/f3.ts"
    ]


def test_mounted_files_are_searched_before_directories_use_up_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.mounts.MAX_FILES", 2)
    for index in range(5):
        write(tmp_path / f"a-data/file{index}", "rows\n")
    kong = write(tmp_path / "z/kong.yml", f"key: {VALUE}\n")
    mounts = [Mount("db", tmp_path / "a-data", "/data"), Mount("kong", kong, "/kong.yml")]

    scan = find_copies(mounts, {"ANON_KEY": VALUE}, directory=tmp_path)

    assert scan.copies == {kong: {"ANON_KEY"}}
    assert "stopped after 2 files" in scan.stopped


def test_the_search_stops_at_its_time_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.mounts.TIME_BUDGET_S", 0.0)
    write(tmp_path / "functions/main.ts", VALUE)

    scan = find_copies(
        [Mount("functions", tmp_path / "functions", "/f")], {"K": VALUE}, directory=tmp_path
    )

    assert scan.searched == 0
    assert "stopped after 0 s" in scan.notes(tmp_path)[0]


# -- the plan refuses -------------------------------------------------------------------------


def deploy(reference: Path, target: Path) -> Path:
    """An upstream layout with its mounted files (volumes/), `.env` from `.env.example`."""
    source = reference_dir(reference)
    for path in sorted(source.glob("docker-compose*.yml")):
        shutil.copyfile(path, target / path.name)
    shutil.copytree(source / "volumes", target / "volumes")
    shutil.copyfile(source / ".env.example", target / ".env")
    return target


@pytest.mark.compose
@pytest.mark.parametrize(
    "reference", [REFERENCE_CURRENT, REFERENCE_2025_11], ids=["current", "2025-11"]
)
def test_upstream_mounted_files_hold_no_value_so_every_plan_goes_through(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy(reference, tmp_path)

    code = main(["plan", "all", "--project", str(project), "--json"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["services"]


@pytest.mark.compose
def test_a_legacy_kong_yml_with_the_keys_written_in_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = deploy(REFERENCE_2025_11, tmp_path)
    env = EnvFile.read(project / ".env").as_dict()
    kong = project / "volumes/api/kong.yml"
    kong.write_text(
        kong.read_text()
        .replace("$SUPABASE_ANON_KEY", env["ANON_KEY"])
        .replace("$SUPABASE_SERVICE_KEY", env["SERVICE_ROLE_KEY"])
    )
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}

    plan = main(["plan", "api-keys", "--project", str(project)])
    _, plan_err = capsys.readouterr()
    rotate = main(["rotate", "api-keys", "--project", str(project), "--yes"])
    _, rotate_err = capsys.readouterr()

    assert plan == rotate == 2
    for err in (plan_err, rotate_err):
        assert err.count("\n") == 1, err
        assert "volumes/api/kong.yml (mounted as kong:/home/kong/temp.yml)" in err
        assert "holds ANON_KEY, SERVICE_ROLE_KEY" in err
        assert "Nothing was changed" in err
        assert env["ANON_KEY"] not in err and env["SERVICE_ROLE_KEY"] not in err
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
    assert not (project / ".rotator").exists()
    # a secret whose values the file does not hold plans as usual
    assert main(["plan", "dashboard-password", "--project", str(project)]) == 0
