"""Recreating a plan's services in dependency order, the way compose starts them.

A service is recreated as soon as every planned service it depends on (directly,
or through services the plan leaves alone) is back and ready. Nothing waits for
services it does not depend on. Recreating a whole depends_on level and waiting
for all of it can deadlock: a service may need, without compose knowing it, one
from a later level (Studio checks its health through postgres-meta, whose key
rotates with Studio's), and would never turn healthy before that one is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from core.compose import ComposeProject
from core.runtime import Runtime


def recreate_in_order(
    runtime: Runtime,
    compose: ComposeProject,
    env: Mapping[str, str],
    services: Sequence[str],
    *,
    announce: Callable[[list[str]], None],
    after: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Recreate `services` (in restart order) and return when all of them are ready.

    `after` adds order compose does not know: a service waits for these planned ones too.
    Raises RuntimeFailure (from the runtime) naming the service that failed.
    """
    planned = list(services)
    gates = {service: planned_dependencies(compose, service, set(planned)) for service in planned}
    for service, first in (after or {}).items():
        if service in gates:
            gates[service] |= set(first) & set(planned)
    pending, recreated, ready = list(planned), list[str](), set[str]()
    while pending:
        startable = [service for service in pending if gates[service] <= ready]
        if startable:
            announce(startable)
            runtime.recreate(compose, env, startable)
            recreated += startable
            pending = [service for service in pending if service not in startable]
            continue
        waiting_on = sorted({gate for service in pending for gate in gates[service]} - ready)
        runtime.wait_ready(compose, env, waiting_on, any_ready=True)
        states = runtime.services(compose)
        ready |= {
            service for service in recreated if service in states and states[service].is_ready
        }
    runtime.wait_ready(compose, env, recreated)


def planned_dependencies(compose: ComposeProject, service: str, planned: set[str]) -> set[str]:
    """The planned services `service` waits for: its dependencies in the plan, and those
    reached through dependencies the plan does not recreate (they keep running)."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = list(compose.dependencies(service))
    while stack:
        dependency = stack.pop()
        if dependency in seen:
            continue
        seen.add(dependency)
        if dependency in planned:
            found.add(dependency)
        else:
            stack.extend(compose.dependencies(dependency))
    return found
