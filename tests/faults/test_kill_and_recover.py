"""A rotation killed with SIGKILL at any moment is brought back by `rotator recover`.

One testbed for the module. Each case starts `rotator rotate SECRET --project D --yes`,
SIGKILLs its process group (rotator and any compose it runs) at a step boundary read
from the journal (or at a restart level read from its output, or at a random instant),
runs `rotator recover`, and checks the deployment is consistent: .env holds either
the old or the new values of the rotated keys and nothing else changed, the database
accepts exactly the password in .env for every login role, every service is healthy,
`rotator verify` passes, backups exist and the audit log has the recovery.

ROTATOR_FAULT_SEED fixes the random instants (the seed used is printed).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import (
    Running,
    assert_consistent,
    read_journal,
    run_rotator,
    start_testbed,
    timed,
    wait_all_healthy,
)
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.docker

SEED = int(os.environ.get("ROTATOR_FAULT_SEED") or time.time_ns() % 1_000_000)
FULL_ROTATION_S = 8.0  # a postgres-password rotation on the testbed, about


def _journal_is(test: Callable[[str, list[str]], bool]) -> Callable[[Running], bool]:
    def condition(run: Running) -> bool:
        journal = run.journal()
        return journal is not None and test(journal["current"], journal["done"])

    return condition


def _recreating(level: int, delay: float = 0.0) -> Callable[[Running], bool]:
    """Level `level` (1-based) of the restart has begun, `delay` seconds ago."""
    seen: list[float] = []

    def condition(run: Running) -> bool:
        run.journal()
        if not seen and sum("recreating " in line for line in run.lines) >= level:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay

    return condition


def _after(seconds: float) -> Callable[[Running], bool]:
    def condition(run: Running) -> bool:
        run.journal()
        return run.elapsed >= seconds

    return condition


def _in_preflight(run: Running) -> bool:
    """The lock is held and no journal is written yet."""
    return run.holds_lock() and run.journal() is None


@dataclass(frozen=True)
class Kill:
    secret: str
    when: Callable[[Running], bool]


KILLS: dict[str, Kill] = {
    "pg-preflight": Kill("postgres-password", _in_preflight),
    "pg-backup": Kill("postgres-password", _journal_is(lambda cur, done: cur == "backup")),
    "pg-stage-done": Kill("postgres-password", _journal_is(lambda cur, done: "stage" in done)),
    "pg-apply": Kill("postgres-password", _journal_is(lambda cur, done: cur == "apply")),
    "pg-apply-done": Kill("postgres-password", _journal_is(lambda cur, done: "apply" in done)),
    "pg-commit": Kill("postgres-password", _journal_is(lambda cur, done: cur == "commit")),
    "pg-commit-done": Kill("postgres-password", _journal_is(lambda cur, done: "commit" in done)),
    # the restart's compose calls: the dependents, then db, last
    "pg-restart-level1-dependents-down": Kill("postgres-password", _recreating(1, delay=0.7)),
    "pg-restart-level2": Kill("postgres-password", _recreating(2)),
    "pg-restart-level2-db-down": Kill("postgres-password", _recreating(2, delay=0.7)),
    "pg-verify": Kill("postgres-password", _journal_is(lambda cur, done: cur == "verify")),
    "jwt-restart-level2": Kill("jwt-secret", _recreating(2)),
    "jwt-verify": Kill("jwt-secret", _journal_is(lambda cur, done: cur == "verify")),
}
_rng = random.Random(SEED)
for _i in range(3):
    _at = round(_rng.uniform(0.0, FULL_ROTATION_S), 2)
    KILLS[f"pg-random-{_i + 1}"] = Kill("postgres-password", _after(_at))


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    yield from start_testbed(tmp_path_factory.mktemp("kill"), "faults-kill")


@pytest.mark.parametrize("case", list(KILLS))
def test_sigkill_then_recover_leaves_a_consistent_deployment(testbed: Testbed, case: str) -> None:
    print(f"ROTATOR_FAULT_SEED={SEED}")
    kill = KILLS[case]
    wait_all_healthy(testbed)
    before = (testbed.directory / ".env").read_bytes()

    run = Running.start(testbed, "rotate", kill.secret, "--yes")
    try:
        reached = run.wait_for(kill.when)
    except BaseException:
        run.close()
        raise
    if not reached:
        # Only a random instant can fall after the end: then there is nothing to recover.
        code = run.finish()
        assert case.startswith("pg-random"), f"{case}: never reached\n{run.output}"
        assert code == 0, run.output
        print(f"{case}: the rotation finished at {run.elapsed:.2f} s, before the kill instant")
        assert_consistent(testbed, before, run.journals[-1], "finished")
        return
    run.kill()
    containers = testbed.container_ids()
    journal = read_journal(testbed)
    print(
        f"{case}: killed at {run.elapsed:.2f} s; journal: "
        + (f"current={journal['current']!r} done={journal['done']}" if journal else "none")
    )
    print("rotate output:\n" + run.output)

    with timed("recover"):
        recovered = run_rotator(testbed, "recover")
    print(recovered.stdout + recovered.stderr)
    if journal is None:
        # Killed before the journal was written: nothing began, nothing to recover.
        assert recovered.returncode == 2, recovered.stderr
        assert "no rotation is open" in recovered.stderr
        assert_consistent(testbed, before, None, None)
        return
    committed = "commit" in journal["done"] and journal["phase"] == "forward"
    assert recovered.returncode == (0 if committed else 1), recovered.stderr
    if case == "pg-restart-level2":
        # The first call's services were recreated, from the committed .env, before the
        # kill: recover keeps their containers instead of taking them down a second time.
        first = next(line for line in run.lines if "recreating " in line)
        kept = first.split("recreating ", 1)[1].split(", ")
        said = f"already recreated before the interruption: {', '.join(kept)}"
        assert said in recovered.stdout + recovered.stderr
        now = testbed.container_ids()
        assert {s: now[s] for s in kept} == {s: containers[s] for s in kept}
    outcome = "finished" if committed else "rolled_back"
    assert_consistent(testbed, before, journal, outcome)
    if "backup" in journal["done"]:
        # Older backups are pruned when the rotation ends; its own, the newest, stays.
        backups = sorted(Path(journal["backup"]).parent.glob("*"))
        assert backups and backups[-1] == Path(journal["backup"]), "the backup of .env is missing"
