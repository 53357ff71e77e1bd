"""A deployment whose database cluster was made with `-E SQL_ASCII` rotates for real.

On such a cluster a client that does not set its own encoding gets role names back as
bytes; rotator once found none of the twelve roles, reported the change done and rolled
back a rotation that had changed nothing. Here the db service is initialised with
POSTGRES_INITDB_ARGS="-E SQL_ASCII --no-locale", as an install can set it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Rig, start_testbed
from tests.e2e.test_rotations import POSTGRES

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def ascii_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from start_testbed(tmp_path_factory, "e2e-ascii", initdb_args="-E SQL_ASCII --no-locale")


def test_the_cluster_is_sql_ascii(ascii_rig: Rig) -> None:
    assert ascii_rig.tb.psql("SHOW server_encoding;").strip() == "SQL_ASCII"


def test_postgres_password_rotates_every_role_on_a_sql_ascii_cluster(ascii_rig: Rig) -> None:
    rotation = ascii_rig.rotate("postgres-password", keys=POSTGRES)
    rotation.check()  # every login role takes the new password and refuses the old one
    assert "not in this database" not in ascii_rig.last_stdout, ascii_rig.last_stdout
