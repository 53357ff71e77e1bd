"""A signing-key rotation killed in any of its phases is brought back by `rotator recover`,
and the phase record (.rotator/signing-key.json) agrees with .env afterwards.

One testbed with upstream's new auth keys (add-new-auth-keys.sh run). The phases run in
order in one test, each killed with SIGKILL somewhere different: standby while compose
recreates the services (after commit: recover finishes it), rotate while the database
side is applied (before commit: recover undoes it, the record still says standby), rotate
again while verifying (recover finishes it), revoke while recreating.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.key_schedule import KeySchedule
from core.signing_keys import KeySet, Phase, kid_of
from tests.faults.conftest import (
    Running,
    assert_consistent,
    read_journal,
    run_rotator,
    start_testbed,
    wait_all_healthy,
)
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    yield from start_testbed(tmp_path_factory.mktemp("keys"), "faults-keys", new_api_keys=True)


def _in_step(step: str, delay: float = 0.0) -> Callable[[Running], bool]:
    """The journal says `step` is under way, and has been for `delay` seconds."""
    seen: list[float] = []

    def condition(run: Running) -> bool:
        journal = run.journal()
        if not seen and journal is not None and journal["current"] == step:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay

    return condition


def kill_and_recover(tb: Testbed, step: str, delay: float = 0.0) -> str:
    """Start the next signing-key phase, SIGKILL it in `step`, recover; returns the
    outcome recover reached ("finished" or "rolled_back")."""
    wait_all_healthy(tb)
    before = (tb.directory / ".env").read_bytes()
    run = Running.start(tb, "rotate", "jwt-signing-key", "--yes")
    try:
        assert run.wait_for(_in_step(step, delay)), f"never reached {step}\n{run.output}"
    finally:
        run.close()
    journal = read_journal(tb)
    assert journal is not None, run.output
    print(f"killed in {journal['current']!r} after {journal['done']}\n{run.output}")
    recovered = run_rotator(tb, "recover")
    print(recovered.stdout + recovered.stderr)
    committed = "commit" in journal["done"]
    outcome = "finished" if committed else "rolled_back"
    assert recovered.returncode == (0 if committed else 1), recovered.stdout + recovered.stderr
    assert_consistent(tb, before, journal, outcome)
    return outcome


def signing_kid(tb: Testbed) -> str:
    return kid_of(KeySet.parse(tb.env()["JWT_KEYS"]).signing)


def record(tb: Testbed) -> KeySchedule | None:
    return KeySchedule.read(tb.directory / ".rotator")


def test_each_signing_key_phase_killed_and_recovered_keeps_record_and_env_agreeing(
    testbed: Testbed,
) -> None:
    first = signing_kid(testbed)

    # standby, killed while compose recreates: finished by recover.
    outcome = kill_and_recover(testbed, "restart", delay=0.5)
    assert outcome == "finished"
    standby = record(testbed)
    assert standby is not None and standby.finished is Phase.STANDBY
    assert signing_kid(testbed) == first and standby.new_kid in testbed.env()["JWT_JWKS"]

    # rotate, killed while the database side is applied: undone, still after standby.
    env_before = testbed.env()
    outcome = kill_and_recover(testbed, "apply")
    assert outcome == "rolled_back"
    assert testbed.env() == env_before
    assert record(testbed) == standby

    # rotate again, killed while verifying: finished, the new key signs.
    outcome = kill_and_recover(testbed, "verify")
    assert outcome == "finished"
    rotated = record(testbed)
    assert rotated is not None and rotated.finished is Phase.ROTATE
    assert signing_kid(testbed) == standby.new_kid != first
    assert first in testbed.env()["JWT_JWKS"], "the old key must stay trusted until revoke"

    # revoke (its clock moved: waiting out JWT_EXPIRY is the schedule's job), killed while
    # recreating: finished, the old key gone and the record cleared.
    KeySchedule(**{**rotated.__dict__, "revoke_after": time.time() - 1}).write(
        testbed.directory / ".rotator"
    )
    outcome = kill_and_recover(testbed, "restart", delay=0.5)
    assert outcome == "finished"
    assert record(testbed) is None
    env = testbed.env()
    assert first not in env["JWT_KEYS"] and first not in env["JWT_JWKS"]
    assert not Path(testbed.directory / ".rotator" / "journal.json").exists()
