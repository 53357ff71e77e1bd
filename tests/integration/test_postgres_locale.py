"""A refused login is told apart by its SQLSTATE, not by the server's words.

A server whose lc_messages is German says "Passwort-Authentifizierung für Benutzer ...
fehlgeschlagen"; matching English text would turn that refusal into an unknown error.
This starts a small cluster of its own (as the postgres user, like scripts/lib.sh), with
German messages, on a free loopback port.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.adapters.postgres import DbAddress, accepts_password, connect_as
from core.errors import DatabaseError, DatabaseRefused
from tests.conftest import service_missing

pytestmark = pytest.mark.postgres

PG_BIN = Path("/usr/lib/postgresql/15/bin")
LOCALE = "de_DE.UTF-8"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_locale() -> None:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=True).stdout
    if "de_DE.utf8" in listed.split():
        return
    if shutil.which("localedef") is None:
        service_missing("localedef not installed (Debian's locales package)")
    made = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", LOCALE], capture_output=True)
    if made.returncode not in (0, 1):  # 1: warnings only
        service_missing(f"cannot generate the {LOCALE} locale: {made.stderr.decode()[-200:]}")


@pytest.fixture(scope="module")
def german_server() -> Iterator[tuple[DbAddress, str]]:
    if not (PG_BIN / "initdb").is_file() or shutil.which("runuser") is None:
        service_missing("PostgreSQL 15 binaries or runuser not found")
    if not Path("/usr/share/locale/de/LC_MESSAGES/postgres-15.mo").is_file():
        service_missing("PostgreSQL's German translation is not installed")
    _ensure_locale()
    # Not pytest's tmp_path: it sits in a 0700 root folder the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="rotator-german-pg-"))
    data, password, port = root / "data", secrets.token_hex(16), _free_port()
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(root, "postgres")
    shutil.chown(pwfile, "postgres")

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)

    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-U", "tester", "--locale=C",
        f"--lc-messages={LOCALE}", "--auth=scram-sha-256", f"--pwfile={pwfile}",
    )  # fmt: skip
    as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start",
    )  # fmt: skip
    try:
        yield DbAddress("127.0.0.1", port, "postgres"), password
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_server_really_speaks_german(german_server: tuple[DbAddress, str]) -> None:
    address, _ = german_server
    with pytest.raises(psycopg.OperationalError) as failed:
        psycopg.connect(
            host=address.host, port=address.port, dbname="postgres", user="tester",
            password="wrong-password", connect_timeout=5,
        )  # fmt: skip
    text = str(failed.value)
    assert "Passwort" in text
    assert "password authentication failed" not in text


def test_a_wrong_password_is_a_refusal_in_any_language(
    german_server: tuple[DbAddress, str],
) -> None:
    address, password = german_server

    assert accepts_password(address, "tester", password)
    assert not accepts_password(address, "tester", "wrong-password")
    with pytest.raises(DatabaseRefused, match="SQLSTATE 28P01"):
        connect_as(address, "tester", "wrong-password")


def test_a_missing_database_is_named_by_its_sqlstate(german_server: tuple[DbAddress, str]) -> None:
    address, password = german_server
    with pytest.raises(DatabaseError) as failed:
        connect_as(address, "tester", password, dbname="keine_solche")
    assert not isinstance(failed.value, DatabaseRefused)
    assert "3D000" in str(failed.value)
    assert "database does not exist" in str(failed.value)
