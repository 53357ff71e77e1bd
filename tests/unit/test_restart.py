"""Recreating in dependency order without waiting on what a service does not need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from textwrap import dedent

import pytest

from core.compose import ComposeProject
from core.errors import RuntimeFailure
from core.restart import recreate_in_order, restart_waves
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
  rest:
    image: x
    depends_on: {db: {condition: service_healthy}}
  storage:
    image: x
    depends_on:
      db: {condition: service_healthy}
      rest: {condition: service_started}
"""


class ScriptedRuntime:
    """Services turn ready one poll after their recreate, except that `studio`
    needs `meta` recreated first: a dependency compose does not know about."""

    def __init__(self, broken: str = "") -> None:
        self.order: list[list[str]] = []
        self.recreated: set[str] = set()
        self.broken = broken
        self.checked: list[bool] = []

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
        run_checks: bool = False,
    ) -> list[str]:
        self.checked.append(run_checks)
        ready = [s for s in services if self._ready(s)]
        if (any_ready and not ready) or (not any_ready and len(ready) < len(services)):
            failed = next(s for s in services if not self._ready(s))
            raise RuntimeFailure(f"service {failed} stayed unhealthy", service=failed)
        return ready


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
    # Between compose calls readiness is the services' own checks, run directly; the
    # last wait is for Docker's own status, which verification reads.
    assert runtime.checked == [True, True, True, False]


def test_a_dependency_that_never_turns_ready_fails_naming_it(project: ComposeProject) -> None:
    runtime = ScriptedRuntime(broken="db")

    with pytest.raises(RuntimeFailure) as failure:
        recreate_in_order(runtime, project, {}, ["db", "auth"], announce=lambda _: None)

    assert failure.value.service == "db"
    assert runtime.order == [["db"]]  # auth never recreated against a broken db


def test_a_service_started_dependency_goes_in_the_same_compose_call(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime()

    recreate_in_order(runtime, project, {}, ["db", "rest", "storage"], announce=lambda _: None)

    # storage needs db healthy, but rest only started: compose starts rest first itself
    assert runtime.order == [["db"], ["rest", "storage"]]


def test_a_last_service_goes_once_every_other_one_is_ready(project: ComposeProject) -> None:
    runtime = ScriptedRuntime()
    services = ["db", "studio", "auth", "rest", "storage", "meta"]

    recreate_in_order(runtime, project, {}, services, announce=lambda _: None, last={"db"})

    # db keeps running on the password apply already set: its dependents go at once,
    # studio's late readiness (it needs meta) holds up only db
    assert runtime.order == [["studio", "auth", "rest", "storage", "meta"], ["db"]]
    assert restart_waves(project, services, last={"db"}) == runtime.order


def test_a_dependency_the_plan_leaves_running_holds_nobody_up(project: ComposeProject) -> None:
    runtime = ScriptedRuntime()

    # functions -> api-gw (not planned, running and healthy) -> studio (planned)
    services = ["studio", "meta", "functions"]
    recreate_in_order(runtime, project, {}, services, announce=lambda _: None)

    assert runtime.order == [["studio", "meta", "functions"]]


def test_after_adds_order_compose_does_not_know(project: ComposeProject) -> None:
    runtime = ScriptedRuntime()
    services = ["auth", "rest", "storage"]

    recreate_in_order(
        runtime, project, {}, services, announce=lambda _: None, after={"auth": ["rest"]}
    )

    assert runtime.order == [["rest", "storage"], ["auth"]]
    assert restart_waves(project, services, after={"auth": ["rest"]}) == runtime.order


def test_waves_refuse_an_order_that_cannot_be(project: ComposeProject) -> None:
    with pytest.raises(RuntimeFailure, match="no order"):
        restart_waves(project, ["auth", "rest"], after={"auth": ["rest"], "rest": ["auth"]})
