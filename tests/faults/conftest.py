"""Fault tests on the testbed: rotations killed, services failing, databases refusing.

Each test module starts one testbed (tests/testbed/) and reuses it; every test leaves
it consistent for the next. The `rotator` command runs as a subprocess, as an operator
would run it, so a test can SIGKILL it at any instant.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.adapters.postgres import SHARED_PASSWORD_ROLES
from core.deployment import Deployment
from core.journal import FAULT_PAUSE_ENV
from tests.conftest import service_missing
from tests.testbed.testbed import Testbed, TestbedError, image_exists, parse_env, read_env

ROOT = Path(__file__).resolve().parents[2]
ROTATOR = ROOT / ".venv" / "bin" / "rotator"
COMPOSE_COMMAND = os.environ.get("ROTATOR_COMPOSE_COMMAND", "docker compose")


def start_testbed(
    tmp: Path,
    name: str,
    prepare: Callable[[Testbed], None] | None = None,
    *,
    new_api_keys: bool = False,
) -> Iterator[Testbed]:
    """A running testbed for one test module (the body of a module-scoped fixture);
    `new_api_keys` as in Testbed.create."""
    if shutil.which("docker") is None:
        service_missing("no docker command")
    if not image_exists():
        service_missing("testbed image not built (tests/testbed/build-images.sh)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROTATOR_COMPOSE_COMMAND", COMPOSE_COMMAND)
        tb = Testbed.create(tmp, project_name=f"{name}-{os.getpid()}", new_api_keys=new_api_keys)
    try:
        if prepare is not None:
            prepare(tb)
        tb.up(timeout=180)  # as e2e's: postgres-meta's Node.js starts slowly on a busy machine
        yield tb
    finally:
        tb.down()


def rotator_env(tb: Testbed) -> dict[str, str]:
    """The environment `rotator` runs with: no shell variable may shadow .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "ROTATOR_"))}
    for key in read_env(tb.directory / ".env"):
        env.pop(key, None)
    env["ROTATOR_COMPOSE_COMMAND"] = COMPOSE_COMMAND
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_rotator(tb: Testbed, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return finish_rotator(start_rotator(tb, *args), timeout)


def start_rotator(tb: Testbed, *args: str) -> subprocess.Popen[str]:
    """`rotator ARGS --project DIR` started, for commands that only read (verify, history)
    to run beside other checks; `finish_rotator` collects it."""
    return subprocess.Popen(
        [str(ROTATOR), *args, "--project", str(tb.directory)],
        env=rotator_env(tb),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_rotator(
    process: subprocess.Popen[str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Wait for a process from `start_rotator` (killed past `timeout`, which then raises)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    args = [str(a) for a in process.args][1:-2]  # between the program and --project DIR
    print(f"$ rotator {shlex.join(args)} -> exit {process.returncode}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def journal_path(tb: Testbed) -> Path:
    return tb.directory / ".rotator" / "journal.json"


def read_journal(tb: Testbed) -> dict[str, Any] | None:
    """The open rotation's journal, or None. It is replaced atomically, so a read sees
    either the previous or the next version."""
    try:
        data: dict[str, Any] = json.loads(journal_path(tb).read_text())
    except FileNotFoundError:
        return None
    return data


@dataclass
class Running:
    """A `rotator` process in its own process group, its output collected line by line."""

    tb: Testbed
    proc: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    journals: list[dict[str, Any]] = field(default_factory=list)
    """Every distinct journal seen while polling (the last values are in the last one)."""
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, tb: Testbed, *args: str, pause: float = 0.25) -> Running:
        """`pause`: seconds each journal boundary lasts, so polling sees every one of them;
        0 for a test that stops the process inside a step that lasts anyway."""
        env = rotator_env(tb) | {FAULT_PAUSE_ENV: str(pause)} if pause else rotator_env(tb)
        proc = subprocess.Popen(
            [str(ROTATOR), *args, "--project", str(tb.directory)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: compose dies with it
        )
        running = cls(tb, proc)
        running._reader = threading.Thread(target=running._read, daemon=True)
        running._reader.start()
        return running

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def journal(self) -> dict[str, Any] | None:
        journal = read_journal(self.tb)
        if journal is not None and (not self.journals or self.journals[-1] != journal):
            self.journals.append(journal)
        return journal

    def holds_lock(self) -> bool:
        """Whether this process holds the deployment's flock (read from /proc/locks, so
        looking does not take the lock from under it)."""
        try:
            inode = (self.tb.directory / ".rotator" / "lock").stat().st_ino
            locks = Path("/proc/locks").read_text().splitlines()
        except FileNotFoundError:
            return False
        for line in locks:
            fields = line.split()
            if (
                len(fields) > 5
                and fields[1] == "FLOCK"
                and fields[4] == str(self.proc.pid)
                and fields[5].rsplit(":", 1)[-1] == str(inode)
            ):
                return True
        return False

    def wait_for(self, condition: Callable[[Running], bool], timeout: float = 120) -> bool:
        """Poll until condition(self) holds (True) or the process exits first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            if self.proc.poll() is not None:
                self.journal()
                return condition(self)
            time.sleep(0.002)
        raise AssertionError(f"condition not reached in {timeout} s; output:\n{self.output}")

    def kill(self) -> None:
        """SIGKILL the whole process group: rotator and any compose it started."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close()

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self._close()
        return code

    def close(self) -> None:
        """Kill it if still running and release its pipe (a test may fail half-way)."""
        if self.proc.poll() is None:
            self.kill()
        else:
            self._close()

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ------------------------------------------------------------------ consistency checks


def shared_roles(tb: Testbed, *, login_only: bool = True) -> list[str]:
    """The shared-password roles in the database (by default those that can log in)."""
    wanted = ",".join(f"'{r}'" for r in SHARED_PASSWORD_ROLES)  # constants, not input
    login = "rolcanlogin AND " if login_only else ""
    out = tb.psql(f"SELECT rolname FROM pg_roles WHERE {login}rolname IN ({wanted});")  # noqa: S608
    return sorted(out.split())


def db_accepts(tb: Testbed, role: str, password: str) -> bool:
    host, port = tb.db_address()
    try:
        psycopg.connect(
            host=host, port=port, dbname="postgres", user=role, password=password,
            connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return False
        raise
    return True


def assert_db_accepts_only(tb: Testbed, accepted: str, refused: str | None) -> None:
    roles = shared_roles(tb)
    assert "supabase_admin" in roles, roles
    wrong = [r for r in roles if not db_accepts(tb, r, accepted)]
    assert not wrong, f"roles refusing the password in .env: {wrong}"
    if refused is not None and refused != accepted:
        stale = [r for r in roles if db_accepts(tb, r, refused)]
        assert not stale, f"roles still accepting the other password: {stale}"


def wait_all_healthy(tb: Testbed, timeout: float = 30) -> None:
    try:
        tb.wait_healthy(timeout)
    except TestbedError as exc:
        raise AssertionError(str(exc)) from None


def assert_services_healthy(tb: Testbed) -> None:
    states = tb.container_states()
    bad = {s: st for s, st in states.items() if st not in ("healthy", "running")}
    assert states and not bad, f"services not healthy: {bad}"


def backups(tb: Testbed) -> list[Path]:
    directory = tb.directory / ".rotator" / "backups"
    return sorted(directory.iterdir()) if directory.is_dir() else []


def history(tb: Testbed) -> list[dict[str, Any]]:
    return history_records(run_rotator(tb, "history", "--json"))


def history_records(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The records `rotator history --json` printed (it must have exited 0)."""
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)["records"]
    return records


def assert_consistent(
    tb: Testbed,
    before_env: bytes,
    journal: dict[str, Any] | None,
    outcome: str | None,
) -> None:
    """The deployment after a rotation ended (finished, rolled back or never begun).

    before_env: .env as it was before the rotation; journal: the rotation's journal as
    last seen (None: it never wrote one); outcome: "finished", "rolled_back" or None.
    `rotator verify` and `rotator history` run beside the other checks (all of them only
    read; neither takes the deployment's lock).
    """
    verify = start_rotator(tb, "verify")
    recorded = start_rotator(tb, "history", "--json")
    try:
        _assert_env_db_and_services(tb, before_env, journal, outcome)
    finally:
        verified = finish_rotator(verify)
        records = finish_rotator(recorded)
    assert verified.returncode == 0, f"rotator verify:\n{verified.stdout}{verified.stderr}"
    assert not journal_path(tb).exists(), "the journal outlived the rotation"
    if journal is not None and outcome is not None:
        mine = [r for r in history_records(records) if r["rotation_id"] == journal["rotation_id"]]
        assert mine and mine[-1]["result"] == outcome, mine


def _assert_env_db_and_services(
    tb: Testbed, before_env: bytes, journal: dict[str, Any] | None, outcome: str | None
) -> None:
    """assert_consistent's checks of .env, the database's passwords and the services."""
    text = (tb.directory / ".env").read_bytes()
    assert Deployment.load(tb.directory).compose.service_names()  # .env parses; compose reads it
    before = read_env_bytes(before_env)
    now = read_env(tb.directory / ".env")
    if journal is None or outcome is None:
        assert text == before_env, ".env changed although no rotation began"
        target = before
        other = None
    else:
        old, new = journal["old"], journal["new"]
        assert set(now) == set(before), "keys were added to or lost from .env"
        unrelated = {k for k in before if k not in new and now[k] != before[k]}
        assert not unrelated, f"keys outside the rotation changed: {sorted(unrelated)}"
        wanted, unwanted = (new, old) if outcome == "finished" else (old, new)
        off = sorted(k for k in new if now[k] != wanted[k])
        assert not off, f"{outcome}: rotated keys not at their {outcome} values: {off}"
        if outcome == "rolled_back":
            assert text == before_env, ".env not byte-identical after rolling back"
        target, other = now, dict(unwanted)
        if journal.get("backup") or "backup" in journal.get("done", []):
            assert backups(tb), "the journal names a backup but backups/ is empty"
            for path in backups(tb):
                assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    if "POSTGRES_PASSWORD" in (journal or {}).get("new", {}):
        assert_db_accepts_only(
            tb, target["POSTGRES_PASSWORD"], (other or {}).get("POSTGRES_PASSWORD")
        )
    else:
        assert_db_accepts_only(tb, target["POSTGRES_PASSWORD"], None)
    assert_services_healthy(tb)


def read_env_bytes(data: bytes) -> dict[str, str]:
    """read_env for the bytes of a .env file."""
    return parse_env(data.decode())


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        print(f"{what}: {time.monotonic() - started:.1f} s")
