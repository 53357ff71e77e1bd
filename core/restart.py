"""Recreating a plan's services in dependency order, as early as each one may go.

A service is recreated as soon as what it needs from the other planned services holds:
those it depends on with `condition: service_healthy` are back and ready; those with
`condition: service_started` are
recreated, in the same compose call or an earlier one (compose starts them first). All
the services that may go at one moment go in one compose call, so their start-ups
overlap. Nothing waits for services it does not depend on. Recreating a whole depends_on
level and waiting for all of it can deadlock: a service may need, without compose
knowing it, one from a later level (Studio checks its health through postgres-meta,
whose key rotates with Studio's), and would never turn healthy before that one is back.

Readiness between steps is the service's own health check, run in its container at each
poll (`Runtime.wait_ready(run_checks=True)`): Docker runs it only every `interval`
(30 s for Realtime), and a dependent need not wait for the next tick. The restart ends
once Docker itself reports every recreated service healthy, which verification reads.

`last` services go after every other planned one is ready, and nobody waits for them:
the database (`Plan.restart_last`). Its container reads POSTGRES_PASSWORD (and upstream's
JWT_SECRET) only when it first initialises; the apply step has already set the new
password in the running server, so its dependents come back on the new password against
it while the rest keep their open connections, and the database itself restarts once, at
the end, instead of first and under everyone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from core.compose import ComposeProject
from core.errors import RuntimeFailure
from core.runtime import Runtime


@dataclass
class Gate:
    """What one planned service waits for before it is recreated."""

    ready: set[str] = field(default_factory=set)
    """Planned services that must be back and passing their health check."""
    started: set[str] = field(default_factory=set)
    """Planned services that must be recreated first (in the same compose call at the
    latest: compose starts them before this one)."""


def recreate_in_order(
    runtime: Runtime,
    compose: ComposeProject,
    env: Mapping[str, str],
    services: Sequence[str],
    *,
    announce: Callable[[list[str]], None],
    after: Mapping[str, Sequence[str]] | None = None,
    last: Collection[str] = (),
) -> None:
    """Recreate `services` (in restart order) and return when all of them are ready.

    `after` adds order compose does not know: a service waits for these planned ones too.
    `last`: planned services recreated once every other one is ready (see the module).
    Raises RuntimeFailure (from the runtime) naming the service that failed.
    """
    gates = restart_gates(compose, services, after=after, last=last)
    pending, recreated, ready = list(gates), list[str](), set[str]()
    while pending:
        startable = _startable(pending, gates, recreated, ready)
        if startable:
            announce(startable)
            runtime.recreate(compose, env, startable)
            recreated += startable
            pending = [service for service in pending if service not in startable]
            continue
        awaited = {gate for service in pending for gate in gates[service].ready}
        waiting_on = [service for service in recreated if service in awaited - ready]
        if not waiting_on:  # only a cycle in `after` could do this; never wait forever
            raise RuntimeFailure(f"no order in which to recreate {', '.join(pending)}")
        ready |= set(runtime.wait_ready(compose, env, waiting_on, any_ready=True, run_checks=True))
    # Verification reads Docker's own health status: let it catch up.
    runtime.wait_ready(compose, env, recreated)


def restart_waves(
    compose: ComposeProject,
    services: Sequence[str],
    *,
    after: Mapping[str, Sequence[str]] | None = None,
    last: Collection[str] = (),
) -> list[list[str]]:
    """The compose calls `recreate_in_order` makes when each wave turns ready in turn
    (for plans and estimates: the real restart starts a service as soon as its own
    dependencies are ready, not a whole wave)."""
    gates = restart_gates(compose, services, after=after, last=last)
    pending, done, waves = list(gates), list[str](), list[list[str]]()
    while pending:
        wave = _startable(pending, gates, done, set(done))
        if not wave:
            raise RuntimeFailure(f"no order in which to recreate {', '.join(pending)}")
        waves.append(wave)
        done += wave
        pending = [service for service in pending if service not in wave]
    return waves


def restart_gates(
    compose: ComposeProject,
    services: Sequence[str],
    *,
    after: Mapping[str, Sequence[str]] | None = None,
    last: Collection[str] = (),
) -> dict[str, Gate]:
    """Each planned service (in the given order) and what it waits for."""
    planned = list(dict.fromkeys(services))
    final = [service for service in planned if service in set(last)]
    early = {service for service in planned if service not in final}
    gates: dict[str, Gate] = {}
    for service in planned:
        if service in final:
            gates[service] = Gate(ready=set(early))
            continue
        gate = Gate()
        # A dependency the plan leaves alone keeps running as it is: compose, starting
        # this service, would only check that one, so nothing planned behind it matters
        # (functions need not wait for Studio because the gateway between them waits
        # for Studio when it starts).
        for dependency in compose.dependencies(service) & early:
            if compose.waits_for_health(service, dependency):
                gate.ready.add(dependency)
            else:
                gate.started.add(dependency)
        gates[service] = gate
    for service, first in (after or {}).items():
        if service in gates:
            gates[service].ready |= set(first) & set(planned)
    return gates


def _startable(
    pending: Sequence[str], gates: Mapping[str, Gate], recreated: Sequence[str], ready: set[str]
) -> list[str]:
    """The pending services that may be recreated now, together, in pending's order."""
    chosen: list[str] = []
    grew = True
    while grew:  # a service_started dependency chosen now lets its dependents join
        grew = False
        allowed = {*recreated, *chosen}
        for service in pending:
            gate = gates[service]
            if service not in chosen and gate.ready <= ready and gate.started <= allowed:
                chosen.append(service)
                grew = True
    return [service for service in pending if service in chosen]
