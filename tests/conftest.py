"""Shared fixtures: where the real services started by scripts/test live.

scripts/test exports ROTATOR_TEST_* and ROTATOR_REQUIRE_SERVICES=1. Run by hand
without them, tests that need a service skip with the reason; under
scripts/test a missing service is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.compose import ComposeCommand
from core.errors import ComposeUnsupported

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
REFERENCE_CURRENT = REFERENCE / "supabase-docker"
REFERENCE_2025_11 = REFERENCE / "supabase-docker-2025-11"


def service_missing(reason: str) -> None:
    """Skip, or fail when scripts/test promised the service would be there."""
    if os.environ.get("ROTATOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (scripts/test should have started it)")
    pytest.skip(f"{reason}; run scripts/test to start it")


@functools.cache
def compose_missing() -> str:
    """Why Docker Compose v2 cannot run here (ROTATOR_COMPOSE_COMMAND or `docker
    compose`), or "" when it can."""
    try:
        ComposeCommand.from_environment().require_v2(Path.cwd())
    except ComposeUnsupported as exc:
        return str(exc)
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `compose` plan through compose itself: they need the binary (not
    the Docker engine), and skip, or fail under scripts/test, without it."""
    if item.get_closest_marker("compose") is not None and compose_missing():
        service_missing(f"no Docker Compose v2: {compose_missing()}")


def reference_dir(path: Path) -> Path:
    """The upstream Supabase files, or a skip where ../shared is absent."""
    if not (path / "docker-compose.yml").is_file():
        pytest.skip(f"upstream reference files not found at {path}")
    return path


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    admin_user: str
    admin_password: str


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    password = os.environ.get("ROTATOR_TEST_PG_PASSWORD")
    if not password:
        service_missing("no test PostgreSQL (ROTATOR_TEST_PG_PASSWORD unset)")
    return PgServer(
        host=os.environ.get("ROTATOR_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("ROTATOR_TEST_PG_PORT", "54329")),
        admin_user=os.environ.get("ROTATOR_TEST_PG_USER", "rotator_admin"),
        admin_password=str(password),
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("ROTATOR_TEST_REDIS_URL")
    if not url:
        service_missing("no test Redis (ROTATOR_TEST_REDIS_URL unset)")
    return str(url)
