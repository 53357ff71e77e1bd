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
    """Old containers serve until recreated (except those `down` before the restart);
    new ones turn ready at the next wait, except `broken` and `studio`, which needs
    `meta` recreated first: a dependency compose does not know about."""

    def __init__(self, broken: str = "", down: Sequence[str] = ()) -> None:
        self.order: list[list[str]] = []
        self.recreated: set[str] = set()
        self.broken = broken
        self.down = set(down)
        self.checked: list[bool] = []

    def _ready(self, service: str) -> bool:
        if service not in self.recreated:
            return service not in self.down
        if service == self.broken:
            return False
        return service != "studio" or "meta" in self.recreated

    def services(self, project: ComposeProject) -> dict[str, ServiceState]:
        return {
            s: ServiceState(
                s,
                s,
                "exited" if s in self.down and s not in self.recreated else "running",
                "healthy" if self._ready(s) else "unhealthy",
            )
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


def test_dependents_go_first_while_the_old_dependency_serves_them(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime()
    announced: list[list[str]] = []
    services = ["db", "studio", "api-gw", "auth", "meta", "functions"]

    recreate_in_order(runtime, project, {}, services, announce=announced.append)

    # Each dependency in the compose call after its dependents', none waiting for
    # another's start-up; studio, which needs meta, last, and nobody waits for it.
    assert runtime.order == [["auth", "meta", "functions"], ["db", "api-gw"], ["studio"]]
    assert announced == runtime.order
    assert restart_waves(project, services) == runtime.order
    # Only the last wait: for Docker's own status, which verification reads.
    assert runtime.checked == [False]


def test_a_dependency_down_before_the_restart_goes_first_and_is_waited_for(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime(down=["db"])

    recreate_in_order(runtime, project, {}, ["db", "auth", "meta"], announce=lambda _: None)

    # Between compose calls readiness is the service's own check, run directly.
    assert runtime.order == [["db"], ["auth", "meta"]]
    assert runtime.checked == [True, False]


def test_a_dependency_that_never_turns_ready_fails_naming_it(project: ComposeProject) -> None:
    runtime = ScriptedRuntime(broken="db", down=["db"])

    with pytest.raises(RuntimeFailure) as failure:
        recreate_in_order(runtime, project, {}, ["db", "auth"], announce=lambda _: None)

    assert failure.value.service == "db"
    assert runtime.order == [["db"]]  # auth never recreated against a broken db


def test_a_service_started_dependency_goes_in_the_same_call_when_it_is_down(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime(down=["rest"])

    recreate_in_order(runtime, project, {}, ["db", "rest", "storage"], announce=lambda _: None)

    # storage needs rest only started: compose starts it first in the same call; db
    # serves both until the next call
    assert runtime.order == [["rest", "storage"], ["db"]]


def test_a_last_service_goes_once_every_other_one_is_ready(project: ComposeProject) -> None:
    runtime = ScriptedRuntime()
    services = ["db", "studio", "auth", "rest", "storage", "meta"]

    recreate_in_order(runtime, project, {}, services, announce=lambda _: None, last={"db"})

    # db keeps running on the password apply already set: its dependents go at once
    # (storage with rest, which compose starts first); db once all are ready, studio
    # included (it needs meta)
    assert runtime.order == [["studio", "auth", "rest", "storage", "meta"], ["db"]]
    # ...and after db's restart, every one passes its own check again, run directly,
    # before the wait for Docker's status
    assert runtime.checked[-2:] == [True, False] and all(runtime.checked[:-1])
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


def test_services_an_interrupted_run_recreated_are_kept_and_waited_for(
    project: ComposeProject,
) -> None:
    runtime = ScriptedRuntime()
    runtime.recreated = {"auth", "rest"}  # by the run that was killed
    services = ["db", "auth", "rest", "meta"]

    recreate_in_order(
        runtime, project, {}, services, announce=lambda _: None, last={"db"}, done={"auth", "rest"}
    )

    assert runtime.order == [["meta"], ["db"]]


def test_a_kept_service_that_is_not_ready_fails_the_restart(project: ComposeProject) -> None:
    runtime = ScriptedRuntime(broken="auth")
    runtime.recreated = {"auth"}

    with pytest.raises(RuntimeFailure) as failure:
        recreate_in_order(
            runtime,
            project,
            {},
            ["db", "auth"],
            announce=lambda _: None,
            last={"db"},
            done={"auth"},
        )

    assert failure.value.service == "auth"
    assert runtime.order == []  # the database is not restarted under a broken dependent
