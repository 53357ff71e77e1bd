"""Recreating in dependency order without waiting on what a service does not need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from textwrap import dedent

import pytest

from core.compose import ComposeProject
from core.errors import RuntimeFailure
from core.restart import planned_dependencies, recreate_in_order
from core.runtime import ServiceState

pytestmark = pytest.mark.compose  # the project comes from `docker compose config`

COMPOSE = """
services:
  db: {image: x}
  studio: {image: x}
  meta:
    image: x
    depends_on: {db: {condition: service_healthy}}
  api-gw:
    image: x
    depends_on: {studio: {condition: service_healthy}}
  functions:
    image: x
    depends_on: {api-gw: {condition: service_healthy}}
  auth:
    image: x
    depends_on: {db: {condition: service_healthy}}
"""


class ScriptedRuntime:
    """Services turn ready one poll after their recreate, except that `studio`
    needs `meta` recreated first: a dependency compose does not know about."""

    def __init__(self, broken: str = "") -> None:
        self.order: list[list[str]] = []
        self.recreated: set[str] = set()
        self.broken = broken

    def _ready(self, service: str) -> bool:
        if service == self.broken or service not in self.recreated:
            return False
        return service != "studio" or "meta" in self.recreated

    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        return {
            s: ServiceState(s, s, "running", "healthy" if self._ready(s) else "unhealthy")
            for s in project.service_names()
        }

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        self.order.append(list(services))
        self.recreated |= set(services)

    def wait_ready(
        self,
        project: ComposeProject,
        env: Mapping[str, str],
        services: Sequence[str],
        *,
        timeout_s: float | None = None,
        any_ready: bool = False,
    ) -> None:
        ready = [s for s in services if self._ready(s)]
        if (any_ready and not ready) or (not any_ready and len(ready) < len(services)):
            failed = next(s for s in services if not self._ready(s))
            raise RuntimeFailure(f"service {failed} stayed unhealthy", service=failed)


@pytest.fixture
def project(tmp_path: Path) -> ComposeProject:
    (tmp_path / "docker-compose.yml").write_text(dedent(COMPOSE))
    return ComposeProject.load(tmp_path)


def test_a_service_waiting_on_a_later_one_does_not_deadlock_the_restart(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime()
    announced: list[list[str]] = []
    services = ["db", "studio", "api-gw", "auth", "meta", "functions"]

    recreate_in_order(runtime, project, {}, services, announce=announced.append)

    # db and studio first; meta and auth once db is ready (studio is not, yet: it
    # needs meta); api-gw once studio recovers; functions last.
    assert runtime.order == [["db", "studio"], ["auth", "meta"], ["api-gw"], ["functions"]]
    assert announced == runtime.order


def test_a_dependency_that_never_turns_ready_fails_naming_it(project: ComposeProject) -> None:
    runtime = ScriptedRuntime(broken="db")

    with pytest.raises(RuntimeFailure) as failure:
        recreate_in_order(runtime, project, {}, ["db", "auth"], announce=lambda _: None)

    assert failure.value.service == "db"
    assert runtime.order == [["db"]]  # auth never recreated against a broken db


def test_dependencies_are_found_through_services_the_plan_leaves_running(
    project: ComposeProject,
) -> None:
    # functions -> api-gw (not planned) -> studio (planned)
    assert planned_dependencies(project, "functions", {"studio", "functions"}) == {"studio"}
    assert planned_dependencies(project, "functions", {"api-gw", "studio"}) == {"api-gw"}
    assert planned_dependencies(project, "auth", {"studio"}) == set()
