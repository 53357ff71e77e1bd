"""States a rotation can be left in, and `rotator recover` bringing each one back.

One testbed for the module. Each test breaks a rotation in a new way (SIGKILL at random
instants of the restart step, Ctrl-C at every step, a database that accepts neither
password, a disk that fills during the backup, a database that restarts during apply) and
proves that `rotator recover` leaves a consistent deployment, as `assert_consistent`
(conftest.py) defines it.

ROTATOR_FAULT_KILLS sets how many random kills the restart-step test makes (default 50);
ROTATOR_FAULT_SEED fixes their instants (the seed used is printed). The kills are dealt
round-robin to KILL_SHARDS tests, which parallel workers run each on its own testbed
(tests/conftest.py gives each shard to a worker of its own).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.conftest import (
    ROTATOR,
    Running,
    assert_consistent,
    assert_db_accepts_only,
    assert_services_healthy,
    read_journal,
    rotator_env,
    run_rotator,
    shared_roles,
    start_testbed,
    timed,
    wait_all_healthy,
)
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.docker

SEED = int(os.environ.get("ROTATOR_FAULT_SEED") or time.time_ns() % 1_000_000)
KILLS = int(os.environ.get("ROTATOR_FAULT_KILLS") or 50)
KILL_SHARDS = max(1, min(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1), KILLS))
"""One shard per parallel worker (xdist sets the count in every worker, so they all collect
the same ids): 50 kills one after another took longer than all the other tests together.
Every shard gets at least one kill."""


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    yield from start_testbed(tmp_path_factory.mktemp("states"), "faults-states")


@pytest.fixture
def tb(testbed: Testbed) -> Testbed:
    wait_all_healthy(testbed, timeout=120)
    return testbed


def _after(moment: float) -> Callable[[Running], bool]:
    def condition(run: Running) -> bool:
        run.journal()
        return time.monotonic() >= moment

    return condition


def _recover_until_done(tb: Testbed, *extra: str) -> subprocess.CompletedProcess[str]:
    result = run_rotator(tb, "recover", *extra)
    print(result.stdout + result.stderr)
    return result


# --------------------------------------------------------------------------- the restart step


@pytest.mark.parametrize(
    "shard", range(KILL_SHARDS), ids=[f"shard{i + 1}of{KILL_SHARDS}" for i in range(KILL_SHARDS)]
)
def test_sigkill_at_random_instants_of_the_restart_step_is_always_recovered(
    tb: Testbed, shard: int
) -> None:
    """At least 50 kills anywhere in the restart step (compose mid-recreate included: its
    half-made `<id>_<name>` containers, a database stopped or still starting), each
    followed by `rotator recover`, which must finish the rotation every time. This shard
    makes kills shard+1, shard+1+KILL_SHARDS, ... of KILLS."""
    print(f"ROTATOR_FAULT_SEED={SEED} ROTATOR_FAULT_KILLS={KILLS} shard {shard + 1}/{KILL_SHARDS}")
    rng = random.Random(SEED)
    instants = [rng.random() for _ in range(KILLS)]  # where in the restart, as a fraction
    restart_s = 4.0  # a first estimate; each finished restart refines it
    for kill in range(shard + 1, KILLS + 1, KILL_SHARDS):
        wait_all_healthy(tb, timeout=120)
        before = (tb.directory / ".env").read_bytes()
        # No pause at the journal's boundaries: the restart step lasts seconds anyway, and
        # the kill falls in its real work rather than in a test's pause.
        run = Running.start(tb, "rotate", "postgres-password", "--yes", pause=0)
        try:
            run.wait_for(lambda r: (j := r.journal()) is not None and j["current"] == "restart")
            entered = time.monotonic()
            delay = instants[kill - 1] * restart_s
            reached = run.wait_for(_after(entered + delay))
        except BaseException:
            run.close()
            raise
        if not reached:  # the rotation finished before the instant: nothing to recover
            assert run.finish() == 0, run.output
            restart_s = max(1.0, time.monotonic() - entered)
            assert_consistent(tb, before, run.journals[-1], "finished")
            continue
        run.kill()
        journal = read_journal(tb)
        assert journal is not None, f"kill {kill}: no journal after a kill in the restart step"
        recovered = _recover_until_done(tb)
        assert recovered.returncode == 0, f"kill {kill} at {delay:.2f}s: {recovered.stderr}"
        print(f"kill {kill}/{KILLS} at {delay:.2f} s into the restart: recovered")
        assert_consistent(tb, before, journal, "finished")


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("step", ["backup", "stage", "apply", "commit", "restart", "verify"])
def test_ctrl_c_at_every_step_exits_3_and_recover_ends_it(tb: Testbed, step: str) -> None:
    before = (tb.directory / ".env").read_bytes()
    run = Running.start(tb, "rotate", "postgres-password", "--yes")
    try:
        run.wait_for(lambda r: (j := r.journal()) is not None and j["current"] == step)
        os.killpg(run.proc.pid, signal.SIGINT)  # the terminal sends it to the whole group
        code = run.finish(timeout=120)
    finally:
        run.close()
    print(run.output)
    assert code == 3, run.output
    assert f"rotator recover --project {tb.directory}" in run.output
    journal = read_journal(tb)
    assert journal is not None
    recovered = _recover_until_done(tb)
    committed = "commit" in journal["done"]
    assert recovered.returncode == (0 if committed else 1), recovered.stderr
    assert_consistent(tb, before, journal, "finished" if committed else "rolled_back")


# --------------------------------------------------------------------------- neither password


def tb_roles(tb: Testbed) -> list[str]:
    return shared_roles(tb, login_only=False)


def test_sigkill_while_the_database_accepts_neither_password_is_recovered_through_the_socket(
    tb: Testbed,
) -> None:
    """The database already refuses the password in .env (someone changed it by hand), so
    the rotation goes through the db container's socket; it is killed before the socket
    script runs. Recover then finds the database accepting neither password: it says how
    to go on (exit 3, nothing changed), and with --via-socket puts the old one back."""
    before = (tb.directory / ".env").read_bytes()
    env = tb.env()
    stranger = "set-by-hand-" + os.urandom(8).hex()
    for role in tb_roles(tb):
        tb.psql(f"ALTER ROLE \"{role}\" PASSWORD '{stranger}';")
    run = Running.start(tb, "rotate", "postgres-password", "--yes", "--via-socket")
    try:
        run.wait_for(lambda r: (j := r.journal()) is not None and j["current"] == "apply")
        run.kill()
    finally:
        run.close()
    journal = read_journal(tb)
    assert journal is not None and "apply" not in journal["done"]

    stuck = _recover_until_done(tb)
    assert stuck.returncode == 3, stuck.stderr
    assert "accepts neither" in stuck.stderr and "--via-socket" in stuck.stderr
    assert read_journal(tb) is not None  # nothing decided, nothing lost

    recovered = _recover_until_done(tb, "--via-socket")
    assert recovered.returncode == 1, recovered.stderr  # undone: the old password is back
    assert (tb.directory / ".env").read_bytes() == before
    assert_db_accepts_only(tb, env["POSTGRES_PASSWORD"], stranger)
    assert_consistent(tb, before, journal, "rolled_back")


# --------------------------------------------------------------------------- a full disk


@contextmanager
def _small_disk(size: str) -> Iterator[Path]:
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"rotator-small-disk-{os.getpid()}"
    directory.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)
        directory.rmdir()


def _fill(directory: Path, leave: int) -> Path:
    """Fill the file system of `directory` until about `leave` bytes are free."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    filler = directory / "filler"
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def test_a_disk_that_fills_during_the_backup_changes_nothing_and_is_recovered(
    tb: Testbed,
) -> None:
    before = (tb.directory / ".env").read_bytes()
    with _small_disk("256k") as disk:
        state = disk / "state"
        state.mkdir(mode=0o700)
        env = rotator_env(tb) | {"ROTATOR_STATE_DIR": str(state)}
        # Room for the preflight's write test (4 KiB) and the journal, not for the backup
        # of .env as well.
        filler = _fill(disk, leave=len(before) + 2048)
        done = subprocess.run(
            [str(ROTATOR), "rotate", "postgres-password", "--yes", "--project",
             str(tb.directory)],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        print(done.stdout + done.stderr)
        assert done.returncode in (1, 2, 3), done.stdout + done.stderr
        assert "No space left" in done.stdout + done.stderr or "ENOSPC" in done.stderr + (
            done.stdout
        )
        assert (tb.directory / ".env").read_bytes() == before  # nothing was changed
        filler.unlink()  # the operator frees space
        if (state / "journal.json").exists():
            recovered = subprocess.run(
                [str(ROTATOR), "recover", "--project", str(tb.directory)],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            print(recovered.stdout + recovered.stderr)
            assert recovered.returncode == 1, recovered.stderr
        assert not (state / "journal.json").exists()
    assert (tb.directory / ".env").read_bytes() == before
    assert_db_accepts_only(tb, tb.env()["POSTGRES_PASSWORD"], None)
    assert_services_healthy(tb)


# --------------------------------------------------------------------------- the database restarts


def test_a_database_that_restarts_during_apply_is_recovered(tb: Testbed) -> None:
    before = (tb.directory / ".env").read_bytes()
    run = Running.start(tb, "rotate", "postgres-password", "--yes")
    db = tb.container_name("db")
    restart = ["docker", "restart", "-t", "1", db]
    restarting = threading.Thread(
        target=lambda: subprocess.run(restart, capture_output=True, check=False)
    )
    try:
        run.wait_for(lambda r: (j := r.journal()) is not None and j["current"] == "apply")
        restarting.start()
        code = run.finish(timeout=300)
    finally:
        run.close()
        restarting.join(timeout=60)
    print(run.output)
    journal = run.journals[-1]
    assert code in (0, 1, 3), run.output
    if code == 3:
        with timed("recover"):
            recovered = _recover_until_done(tb)
        committed = "commit" in journal["done"] and journal["phase"] == "forward"
        assert recovered.returncode == (0 if committed else 1), recovered.stderr
        outcome = "finished" if committed else "rolled_back"
    else:
        outcome = "finished" if code == 0 else "rolled_back"
    assert_consistent(tb, before, journal, outcome)
