"""How long each service takes to become ready, and how often compose checks its health.

`Testbed.create(timing="real")` gives each stand-in the start-up time of the real service
(its TESTBED_READY_AFTER) and each health check upstream's interval; `timing="fast"`
(the default) gives the stand-ins no wait and checks every second, for tests that are
about secrets, not time. Where each figure comes from: README.md, "Start-up times".
PostgreSQL and postgres-meta are real in both: they take their own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Timing = Literal["fast", "real"]


@dataclass(frozen=True)
class ServiceTiming:
    ready_after_s: float
    """Seconds from container start until the real service answers."""
    interval: str
    """Upstream's healthcheck interval (docker-compose.yml / docker-compose.logs.yml)."""


REAL: dict[str, ServiceTiming] = {
    "studio": ServiceTiming(20.0, "5s"),
    "api-gw": ServiceTiming(2.0, "10s"),
    "auth": ServiceTiming(2.0, "5s"),
    "rest": ServiceTiming(1.0, "5s"),
    "realtime": ServiceTiming(10.0, "30s"),
    "storage": ServiceTiming(5.0, "5s"),
    "imgproxy": ServiceTiming(0.5, "5s"),
    "functions": ServiceTiming(2.0, "5s"),
    "supavisor": ServiceTiming(15.0, "10s"),
    "analytics": ServiceTiming(25.0, "5s"),
    "vector": ServiceTiming(1.0, "5s"),
    "db": ServiceTiming(0.0, "5s"),  # real PostgreSQL: its own time
}
FAST_INTERVAL = "1s"


def placeholders(timing: Timing) -> dict[str, str]:
    """The compose templates' @@READY_<SVC>@@ and @@HC_<SVC>@@ values for `timing`."""
    if timing not in ("fast", "real"):
        raise ValueError(f"timing must be 'fast' or 'real', not {timing!r}")
    values = {}
    for service, real in REAL.items():
        name = service.upper().replace("-", "_")
        values[f"READY_{name}"] = str(real.ready_after_s) if timing == "real" else "0"
        values[f"HC_{name}"] = real.interval if timing == "real" else FAST_INTERVAL
    return values
