"""Shared fixtures: where the real services started by scripts/test live.

scripts/test exports ROTATOR_TEST_* and ROTATOR_REQUIRE_SERVICES=1. Run by hand
without them, tests that need a service skip with the reason; under
scripts/test a missing service is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """ROTATOR_TEST_REDIS_URL; under pytest-xdist, database N+1 for worker gwN, so RQ's
    global keys (rq:workers, schedulers' locks) of one worker's tests never meet another's."""
    url = os.environ.get("ROTATOR_TEST_REDIS_URL")
    if not url:
        service_missing("no test Redis (ROTATOR_TEST_REDIS_URL unset)")
    return worker_redis_url(str(url), os.environ.get("PYTEST_XDIST_WORKER", ""))


def worker_redis_url(url: str, worker: str) -> str:
    """`url` with its database number replaced by 1 + the xdist worker's index ("gw3" -> 4);
    `url` itself outside xdist (worker "")."""
    if not worker:
        return url
    index = int(worker.removeprefix("gw"))
    if index + 1 >= REDIS_DATABASES:
        raise pytest.UsageError(f"more xdist workers than Redis databases ({REDIS_DATABASES})")
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{index + 1}"))


REDIS_DATABASES = 16
"""Redis's default `databases`; scripts/lib.sh starts the test server with it."""


# --- order under pytest-xdist -------------------------------------------------------------

SLOWEST_FIRST = (
    "tests/faults/test_recovery_states.py",
    "tests/faults/test_kill_and_recover.py",
    "tests/e2e/test_rotations.py",
    "tests/faults/test_signing_key_kills.py",
    "tests/e2e_slack/test_story.py",
    "tests/faults/test_failures.py",
    "tests/testbed/test_testbed.py",
    "tests/e2e/test_verify_catches.py",
    "tests/testbed/test_testbed_options.py",
    "tests/e2e/test_sql_ascii.py",
    "tests/integration/test_docker_runtime.py",
)
"""Test modules that wait on containers, longest first (`scripts/test --durations`). xdist
(`--dist loadscope --no-loadscope-reorder`) hands out whole modules in collection order:
starting the longest first keeps one of them from being the tail of the run."""


SHARD_ID = re.compile(r"\[shard\d+of\d+\]$")
"""A test parametrized into shards ("[shard2of4]"): each shard goes to xdist as a unit of
its own, so shards run side by side (each worker starting its own module fixtures)."""


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadscope, with each shard (SHARD_ID) a scope of its own."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndShards(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if SHARD_ID.search(nodeid) else super()._split_scope(nodeid)

    return ModulesAndShards(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the slow modules first (each keeps its own order of tests; the others
    keep theirs). A run without xdist keeps the files' order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
