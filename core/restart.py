"""Recreating a plan's services in dependency order, as early as each one may go.

A service is recreated as soon as what compose checks before starting it holds: the
planned services it depends on with `condition: service_healthy` are ready (the old
container, still running, or the new one), those with `condition: service_started` are
running (or go in the same compose call: compose starts them first). A healthy
dependency whose old container serves goes in the call after its dependents', not
before (in one call compose would hold them until it is healthy): each container
stops once, and the dependents do not wait out its start-up and the interval of its
health check (the gateway waits for Studio, 20 s, upstream). All the services that may
go at one moment go in one compose call, so their start-ups overlap. Nothing waits for
services it does not depend on. A service may need, without compose knowing it, one
recreated after it (Studio checks its health through postgres-meta, whose key rotates
with Studio's): nobody waits for all of a call to turn ready, only for what they need.

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

    healthy: set[str] = field(default_factory=set)
    """Planned services compose wants healthy before it starts this one: ready now,
    whether still the old container or already the new one."""
    started: set[str] = field(default_factory=set)
    """Planned services compose wants started: running now, or in the same call."""
    after: set[str] = field(default_factory=set)
    """Planned services recreated and ready before this one (`after`, `last`)."""


def recreate_in_order(
    runtime: Runtime,
    compose: ComposeProject,
    env: Mapping[str, str],
    services: Sequence[str],
    *,
    announce: Callable[[list[str]], None],
    after: Mapping[str, Sequence[str]] | None = None,
    last: Collection[str] = (),
    done: Collection[str] = (),
) -> None:
    """Recreate `services` (in restart order) and return when all of them are ready.

    `after` adds order compose does not know: a service waits for these planned ones,
    recreated and ready. `last`: planned services recreated once every other one is
    ready (see the module). `done`: planned services already recreated from the current
    values (by an interrupted run): not recreated again, waited for like the others.
    Raises RuntimeFailure (from the runtime) naming the service that failed.
    """
    gates = restart_gates(compose, services, after=after, last=last)
    recreated = [service for service in gates if service in done]
    pending, ready = [service for service in gates if service not in done], set[str]()
    while pending:
        states = runtime.services(compose)
        old = [s for s in gates if s not in recreated and s in states]
        serving = ready | {s for s in old if states[s].is_ready}
        running = {*recreated, *(s for s in old if states[s].status == "running")}
        wave = _next_wave(pending, gates, ready, serving, running)
        if wave:
            announce(wave)
            runtime.recreate(compose, env, wave)
            recreated += wave
            pending = [service for service in pending if service not in wave]
            continue
        needed = set[str]().union(
            *(gates[s].healthy | gates[s].after | gates[s].started for s in pending)
        )
        waiting_on = [service for service in recreated if service in needed - ready]
        if not waiting_on:  # only a cycle in `after` could do this; never wait forever
            raise RuntimeFailure(f"no order in which to recreate {', '.join(pending)}")
        ready |= set(runtime.wait_ready(compose, env, waiting_on, any_ready=True, run_checks=True))
    if any(service in last for service in recreated):
        # The database's restart dropped every connection the others held, after Docker
        # last found them healthy: each passes its own check again, run now.
        runtime.wait_ready(compose, env, recreated, run_checks=True)
    # Verification reads Docker's own health status: let it catch up.
    runtime.wait_ready(compose, env, recreated)


def restart_waves(
    compose: ComposeProject,
    services: Sequence[str],
    *,
    after: Mapping[str, Sequence[str]] | None = None,
    last: Collection[str] = (),
) -> list[list[str]]:
    """The compose calls `recreate_in_order` makes when every service runs and is ready
    before the restart, and each call's services turn ready in turn (for plans and
    estimates)."""
    gates = restart_gates(compose, services, after=after, last=last)
    pending, done, waves = list(gates), list[str](), list[list[str]]()
    while pending:
        serving = set(done) | {s for s in gates if s not in done}
        wave = _next_wave(pending, gates, set(done), serving, set(gates))
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
            gates[service] = Gate(after=set(early))
            continue
        gate = Gate()
        # A dependency the plan leaves alone keeps running as it is: compose, starting
        # this service, would only check that one, so nothing planned behind it matters
        # (functions need not wait for Studio because the gateway between them waits
        # for Studio when it starts).
        for dependency in compose.dependencies(service) & early:
            if compose.waits_for_health(service, dependency):
                gate.healthy.add(dependency)
            else:
                gate.started.add(dependency)
        gates[service] = gate
    for service, first in (after or {}).items():
        if service in gates:
            gates[service].after |= set(first) & set(planned)
    return gates


def _next_wave(
    pending: Sequence[str],
    gates: Mapping[str, Gate],
    ready: set[str],
    serving: set[str],
    running: set[str],
) -> list[str]:
    """The pending services to recreate now, in one compose call, in pending's order.

    A service may go when what compose checks before starting it holds now (its healthy
    dependencies ready, its started ones running or in the same call) and its `after`
    ones are back and ready. Of those, a healthy dependency goes after its dependents,
    in the next call, its running container serving them meanwhile: within one call
    compose would start them only once the new one is healthy (Docker's interval
    included). Each container stops once, and everything it serves is on the new values
    by the time it comes back, as with the database (`last`). A started dependency goes
    in the same call: compose starts it first and does not wait.
    """
    wave: list[str] = []
    grew = True
    while grew:  # a started dependency chosen now lets its dependents join
        grew = False
        for service in pending:
            gate = gates[service]
            if (
                service not in wave
                and gate.healthy <= serving
                and gate.after <= ready
                and gate.started <= running | set(wave)
            ):
                wave.append(service)
                grew = True
    deferred = {dependency for service in wave for dependency in gates[service].healthy}
    return [service for service in pending if service in wave and service not in deferred]
