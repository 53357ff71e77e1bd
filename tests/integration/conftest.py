"""Integration fixtures: a Supabase-shaped set of roles and databases in the test cluster.

Roles are cluster-wide, so `supabase_db` serialises its users with a session advisory
lock (across pytest processes too), creates everything fresh for each test, and drops
it all afterwards. The cluster superuser (`pg_server.admin_user`, rotator_admin) is
never rotated; it is how the fixture sets up, inspects and cleans up.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import psycopg
import pytest
from psycopg import sql

from core.adapters.postgres import SHARED_PASSWORD_ROLES, DbAddress
from tests.conftest import PgServer, service_missing

IMAGE = "rotator-testbed:latest"
"""The testbed image (tests/testbed/build-images.sh): Debian with PostgreSQL and Python."""

READ_ONLY_ROLE = "supabase_read_only_user"
ALL_ROLES = (*SHARED_PASSWORD_ROLES, READ_ONLY_ROLE)
METADATA_DB = "_supabase"
ANALYTICS_URL_TEMPLATE = "postgresql://supabase_admin:{password}@db:5432/postgres"
OTHER_BACKEND_CONFIG = '{"url": "https://bigquery.example/untouched"}'

# Any constant will do; it only has to be the same for every process using the fixture.
_LOCK_KEY = 0x5B_0A_7A_70


@dataclass(frozen=True)
class SupabaseDb:
    """A Supabase-shaped cluster: every role in SHARED_PASSWORD_ROLES has `password`."""

    host: str
    port: int
    dbname: str
    password: str = field(repr=False)  # pytest prints fixture values on failure
    admin_user: str
    """The cluster superuser (rotator_admin): for inspection only, never rotated."""
    admin_password: str = field(repr=False)

    @property
    def address(self) -> DbAddress:
        return DbAddress(self.host, self.port, self.dbname)

    def admin_connect(self, dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection as the cluster superuser."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=dbname or self.dbname,
            user=self.admin_user,
            password=self.admin_password,
            autocommit=True,
        )


def _verifier(conn: psycopg.Connection[Any], role: str, password: str) -> sql.Literal:
    return sql.Literal(
        conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    )


def _drop_everything(admin: psycopg.Connection[Any]) -> None:
    """Remove what `supabase_db` creates; fine on a clean cluster or a crashed run's debris."""
    admin.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(METADATA_DB))
    )
    existing = [
        name
        for (name,) in admin.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(ALL_ROLES)]
        )
    ]
    if not existing:
        return
    roles = sql.SQL(", ").join(sql.Identifier(r) for r in existing)
    admin.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(roles))
    admin.execute(sql.SQL("DROP OWNED BY {}").format(roles))
    admin.execute(sql.SQL("DROP ROLE {}").format(roles))


def _create_roles(admin: psycopg.Connection[Any], password: str) -> None:
    for role in SHARED_PASSWORD_ROLES:
        if role == "supabase_admin":
            attributes = "SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS"
        elif role == "postgres":
            # Current Supabase images demote postgres: no longer a superuser.
            attributes = "CREATEDB CREATEROLE REPLICATION BYPASSRLS"
        else:
            attributes = ""
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN " + attributes + " PASSWORD {}").format(
                sql.Identifier(role), _verifier(admin, role, password)
            )
        )
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(READ_ONLY_ROLE)))


def _create_metadata_db(server: PgServer, password: str) -> None:
    with psycopg.connect(
        host=server.host,
        port=server.port,
        dbname=METADATA_DB,
        user=server.admin_user,
        password=server.admin_password,
        autocommit=True,
    ) as conn:
        conn.execute("SET ROLE supabase_admin")
        conn.execute("CREATE SCHEMA _supavisor")
        conn.execute("CREATE TABLE _supavisor.tenants (id serial PRIMARY KEY, external_id text)")
        conn.execute("INSERT INTO _supavisor.tenants (external_id) VALUES ('dev_tenant')")
        conn.execute("CREATE SCHEMA _analytics")
        conn.execute(
            "CREATE TABLE _analytics.source_backends"
            " (id serial PRIMARY KEY, type text, config jsonb)"
        )
        conn.execute(
            "INSERT INTO _analytics.source_backends (type, config)"
            " VALUES ('postgres', jsonb_build_object('url', %s::text)), ('bigquery', %s::jsonb)",
            [ANALYTICS_URL_TEMPLATE.format(password=password), OTHER_BACKEND_CONFIG],
        )


@pytest.fixture
def supabase_db(pg_server: PgServer) -> Iterator[SupabaseDb]:
    """The twelve shared-password roles (LOGIN; supabase_admin SUPERUSER), the passwordless
    supabase_read_only_user, and database `_supabase` with `_supavisor.tenants` (one row) and
    `_analytics.source_backends` (a postgres row whose URL holds the password, and a
    bigquery row). All dropped again afterwards."""
    lock = psycopg.connect(
        host=pg_server.host,
        port=pg_server.port,
        dbname="postgres",
        user=pg_server.admin_user,
        password=pg_server.admin_password,
        autocommit=True,
    )
    try:
        lock.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        _drop_everything(lock)
        password = secrets.token_hex(16)
        _create_roles(lock, password)
        lock.execute(
            sql.SQL("CREATE DATABASE {} OWNER supabase_admin").format(sql.Identifier(METADATA_DB))
        )
        _create_metadata_db(pg_server, password)
        yield SupabaseDb(
            host=pg_server.host,
            port=pg_server.port,
            dbname="postgres",
            password=password,
            admin_user=pg_server.admin_user,
            admin_password=pg_server.admin_password,
        )
    finally:
        try:
            _drop_everything(lock)
        finally:
            lock.close()  # also releases the advisory lock


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker SDK client on the engine, once the testbed image is there."""
    base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.DockerClient(base_url=base_url)
        client.ping()
    except docker.errors.DockerException as exc:
        service_missing(f"no Docker engine at {base_url} ({type(exc).__name__})")
        raise  # unreachable: service_missing skips or fails
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        client.close()
        service_missing(f"image {IMAGE} not built (tests/testbed/build-images.sh)")
    yield client
    client.close()
