"""Downtime, measured: rotator's rotation against the guide's, on the same testbed.

    .venv/bin/python -m bench.downtime [--secrets a,b] [--compose "docker compose"]

Brings up a testbed (tests/testbed) whose stand-ins take the real services' start-up
times and whose health checks run at upstream's intervals (`timing="real"`, see
tests/testbed/README.md), so the figures mean what they would on a real install; then for
each secret (default: every rotatable one
the testbed has configured, then `all`):

1. rotates it with rotator's engine (Engine + DockerRuntime, as `rotator rotate --yes`);
2. rotates it again "the guide's way": new values generated the same way
   (`Secret.new_values`), the database side done as upstream's `utils/db-passwd.sh` does
   (plain ALTER USERs, `_supavisor` reset, analytics URL) when the secret needs it, `.env`
   edited, `docker compose down`, `docker compose up -d`, wait until all are healthy;
3. rotates it a third time by "the floor": the least a person could do that still
   leaves every container with the new values. The guide's database side and `.env`
   edit, then exactly the planned services recreated (rotator's plan, so the same set)
   in one `compose up -d --no-deps --force-recreate` call, compose ordering them by their
   own conditions; when the database is planned, it is left out of that call and
   recreated alone once the others are healthy (its container reads its secrets only
   at first initialisation). No verification, no readiness checks of rotator's own.

Meanwhile one prober thread per target hits it every 50 ms: each service's health
endpoint, the database's TCP port, the gateway's /health, and a client request through the
gateway (`/rest/v1/items` with the ANON_KEY in `.env` at that instant). A target's unavailable
time is the sum of the intervals from a failed probe to the next probe. Prints figures,
asserts nothing, and tears the testbed down.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from core.adapters.docker import DockerRuntime
from core.catalogue import CATALOGUE, Source, get_secret
from core.deployment import Deployment
from core.engine import Engine, Outcome
from core.plan import make_plan
from core.progress import SilentProgress
from core.roles import SHARED_PASSWORD_ROLES
from tests.testbed.testbed import HEALTH_PATHS, Testbed, image_exists, read_env
from tests.testbed.timing import REAL

PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 1.0
SETTLE_TIMEOUT_S = 120.0
"""After a rotation, how long to wait for every target to answer again."""
HEALTHY_TIMEOUT_S = 180.0
HTTP_SERVICES = (
    "studio",
    "api-gw",
    "auth",
    "rest",
    "realtime",
    "storage",
    "imgproxy",
    "meta",
    "functions",
    "supavisor",
)
CLIENT = "client via gw"
"""GET /rest/v1/items through the gateway with the ANON_KEY that is in .env at that instant."""

# utils/db-passwd.sh, as upstream ships it (plaintext passwords, run inside the db container).
GUIDE_ROLES = SHARED_PASSWORD_ROLES  # the twelve, in db-passwd.sh order
GUIDE_POOLER_RESET = """
DROP SCHEMA IF EXISTS _supavisor CASCADE;
create schema if not exists _supavisor;
alter schema _supavisor owner to supabase_admin;
"""
GUIDE_ANALYTICS_UPDATE = """
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.tables
             WHERE table_schema = '_analytics' AND table_name = 'source_backends') THEN
    UPDATE _analytics.source_backends
    SET config = jsonb_set(config, '{url}', '"@URL@"', false)
    WHERE type = 'postgres';
  END IF;
END
$$;
"""


# --------------------------------------------------------------------------- probing


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    host, _, rest = url.removeprefix("http://").partition("/")
    hostname, _, port = host.partition(":")
    conn = http.client.HTTPConnection(hostname, int(port), timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/" + rest, headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def tcp_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def probe_targets(tb: Testbed) -> dict[str, Callable[[], bool]]:
    targets: dict[str, Callable[[], bool]] = {}
    host, port = tb.db_address()
    targets["db (tcp)"] = lambda: tcp_ok(host, port)
    for service in HTTP_SERVICES:
        url = tb.service_url(service) + HEALTH_PATHS.get(service, "/health")
        targets[service] = partial(http_ok, url)
    env_path, gateway = tb.directory / ".env", tb.service_url("api-gw")

    def client() -> bool:
        try:
            key = read_env(env_path).get("ANON_KEY", "")
        except OSError:
            return False
        return http_ok(gateway + "/rest/v1/items", {"apikey": key})

    targets[CLIENT] = client
    return targets


@dataclass
class Prober:
    """One thread per target, a probe every PROBE_INTERVAL_S; samples kept for the run."""

    targets: dict[str, Callable[[], bool]]
    samples: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, check in self.targets.items():
            self.samples[name] = []
            thread = threading.Thread(target=self._run, args=(name, check), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, name: str, check: Callable[[], bool]) -> None:
        samples = self.samples[name]
        while not self._stop.is_set():
            started = time.monotonic()
            samples.append((started, check()))
            self._stop.wait(max(0.0, started + PROBE_INTERVAL_S - time.monotonic()))

    def settled_after(self, moment: float) -> bool:
        """Every target's latest probe started after `moment` and succeeded."""
        return all(s and s[-1][0] > moment and s[-1][1] for s in self.samples.values())

    def wait_settled(self, moment: float) -> float:
        """Wait (bounded) until every target answers again; the time it did."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not self.settled_after(moment) and time.monotonic() < deadline:
            time.sleep(PROBE_INTERVAL_S)
        return time.monotonic()

    def unavailable(self, start: float, end: float) -> dict[str, float]:
        """Per target: seconds within [start, end] from a failed probe to the next probe."""
        result = {}
        for name, samples in self.samples.items():
            snapshot = list(samples)
            total = 0.0
            for (t, ok), (t_next, _) in itertools.pairwise(snapshot):
                if not ok:
                    total += max(0.0, min(t_next, end) - max(t, start))
            if snapshot and not snapshot[-1][1] and snapshot[-1][0] < end:
                total += end - max(snapshot[-1][0], start)
            result[name] = total
        return result


# ------------------------------------------------------------------------- rotations


@dataclass
class Measurement:
    seconds: float
    unavailable: dict[str, float]
    ok: bool
    note: str = ""

    @property
    def total(self) -> float:
        return sum(self.unavailable.values())


def given_values(secret_name: str) -> dict[str, str] | None:
    """SMTP credentials are issued by a provider: make some up for the benchmark."""
    secret = get_secret(secret_name)
    if secret.source is not Source.GIVEN:
        return None
    return {key: secrets.token_hex(16) for key in secret.given_keys}


def rotate_with_rotator(tb: Testbed, secret_name: str) -> tuple[bool, str]:
    engine = Engine(Deployment.load(tb.directory), DockerRuntime(), SilentProgress(), actor="bench")
    result = engine.rotate(secret_name, given=given_values(secret_name))
    return result.outcome is Outcome.FINISHED, result.error


def guide_sql(new: Mapping[str, str], env: Mapping[str, str], pooler_reset: bool) -> str:
    """What utils/db-passwd.sh sends to psql (plus only its _supavisor part for VAULT_ENC_KEY)."""
    lines = []
    password = new.get("POSTGRES_PASSWORD")
    if password:
        lines += [f"alter user {role} with password '{password}';" for role in GUIDE_ROLES]
    if password or pooler_reset:
        lines.append(GUIDE_POOLER_RESET)
    if password:
        url = (
            f"postgresql://supabase_admin:{password}@db:{env.get('POSTGRES_PORT', '5432')}/postgres"
        )
        lines.append(GUIDE_ANALYTICS_UPDATE.replace("@URL@", url))
    return "\n".join(lines)


def edit_env(path: Path, values: Mapping[str, str]) -> None:
    """Replace KEY=... lines, as a person with an editor (or sed -i) would; atomically."""
    lines = path.read_text().splitlines(keepends=True)
    for key, value in values.items():
        for i, line in enumerate(lines):
            if line.startswith(f"{key}="):
                lines[i] = f"{key}={value}\n"
                break
        else:
            lines.append(f"{key}={value}\n")
    temporary = path.with_name(".env.bench-tmp")
    temporary.write_text("".join(lines))
    temporary.chmod(0o600)
    os.replace(temporary, path)


def rotate_the_guides_way(tb: Testbed, secret_name: str) -> tuple[bool, str]:
    secret = get_secret(secret_name)
    env = tb.env()
    new = secret.new_values(env, given_values(secret_name))
    sql = guide_sql(new, env, pooler_reset="VAULT_ENC_KEY" in new)
    if sql:
        tb.psql(sql, dbname="_supabase")
    edit_env(tb.directory / ".env", new)
    tb.run_compose("down", timeout=HEALTHY_TIMEOUT_S)
    tb.run_compose("up", "-d", timeout=HEALTHY_TIMEOUT_S)
    tb.wait_healthy(HEALTHY_TIMEOUT_S)
    return True, ""


def planned(tb: Testbed, secret_name: str) -> tuple[list[str], list[str]]:
    """Rotator's plan for `secret_name` on the testbed as it is: (the services recreated
    first, the ones recreated last)."""
    plan = make_plan(Deployment.load(tb.directory), get_secret(secret_name))
    last = list(plan.restart_last)
    return [s for s in plan.services if s not in last], last


def rotate_by_the_floor(tb: Testbed, secret_name: str) -> tuple[bool, str]:
    secret = get_secret(secret_name)
    env = tb.env()
    first, last = planned(tb, secret_name)
    new = secret.new_values(env, given_values(secret_name))
    sql = guide_sql(new, env, pooler_reset="VAULT_ENC_KEY" in new)
    if sql:
        tb.psql(sql, dbname="_supabase")
    edit_env(tb.directory / ".env", new)
    for services in (first, last):
        if services:
            tb.run_compose(
                "up", "-d", "--no-deps", "--force-recreate", *services, timeout=HEALTHY_TIMEOUT_S
            )
            tb.wait_healthy(HEALTHY_TIMEOUT_S)
    return True, ""


def measure(prober: Prober, action: Callable[[], tuple[bool, str]]) -> Measurement:
    start = time.monotonic()
    try:
        ok, note = action()
    except Exception as exc:  # a figure with a reason beats a traceback halfway through
        ok, note = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    end = time.monotonic()
    settled = prober.wait_settled(end)
    return Measurement(end - start, prober.unavailable(start, settled), ok, note)


# ------------------------------------------------------------------------------ report


def ratio(guide: float, rotator: float) -> str:
    if rotator <= 0:
        return "inf" if guide > 0 else "-"
    return f"{guide / rotator:.1f}x"


@dataclass
class Result:
    secret: str
    plan: list[str]
    """The services rotator's plan recreates."""
    rotator: Measurement
    guide: Measurement
    floor: Measurement
    bound: float = 0.0
    """The planned services' own start-up times, summed (0 with fast start-up times):
    each is down at least that long however it is recreated, so no procedure's total
    goes below it, and guide / bound is the most any rotation could reach."""

    def rows(self) -> list[tuple[str, Measurement]]:
        return [("rotator", self.rotator), ("floor", self.floor), ("guide", self.guide)]


def startup_bound(services: list[str]) -> float:
    """The sum of the services' real start-up times (REAL; real processes count 0)."""
    return sum(REAL[s].ready_after_s for s in services if s in REAL)


def target_service(target: str) -> str:
    """The compose service a probe target watches ('' for the client through the gateway)."""
    return "db" if target == "db (tcp)" else "" if target == CLIENT else target


def print_secret(result: Result) -> None:
    rot, floor, guide = result.rotator, result.floor, result.guide
    print(
        f"\n== {result.secret}: rotator {rot.seconds:.1f} s, floor {floor.seconds:.1f} s, "
        f"guide {guide.seconds:.1f} s end to end (load average {load_average()})"
    )
    print(f"   planned: {', '.join(result.plan) or 'nothing'}")
    for label, m in result.rows():
        if not m.ok:
            print(f"   {label} FAILED: {m.note}")
    print(f"   {'unavailable (s)':<16} {'rotator':>8} {'floor':>8} {'guide':>8}")
    for target in rot.unavailable:
        service = target_service(target)
        outside = "   (not planned)" if service and service not in result.plan else ""
        figures = " ".join(f"{m.unavailable[target]:8.2f}" for _, m in result.rows())
        print(f"   {target:<16} {figures}{outside}")
    print(
        f"   {'total':<16} {rot.total:8.2f} {floor.total:8.2f} {guide.total:8.2f}   "
        f"guide/rotator {ratio(guide.total, rot.total)}, "
        f"rotator/floor {ratio(rot.total, floor.total)}"
    )
    if result.bound:
        print(
            f"   start-up bound {result.bound:.2f} (the planned services' own start-up "
            f"times): guide/bound {ratio(guide.total, result.bound)} is the most any "
            f"procedure could reach; rotator/bound {ratio(rot.total, result.bound)}"
        )
    sys.stdout.flush()


def load_average() -> str:
    return " ".join(f"{figure:.1f}" for figure in os.getloadavg())


def print_summary(results: list[Result]) -> None:
    print("\nSummary (unavailable = sum over targets of each target's unavailable seconds)\n")
    header = (
        f"{'secret':<20} {'rotator s':>9} {'guide s':>8} {'rot unavail':>11} "
        f"{'floor unavail':>13} {'guide unavail':>13} {'guide/rot':>9} {'rot/floor':>9} "
        f"{'unplanned':>9} {'client rot/guide':>16} {'bound':>6} {'guide/bound':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rot, floor, guide = r.rotator, r.floor, r.guide
        flag = "" if all(m.ok for _, m in r.rows()) else "  (failed, see above)"
        unplanned = sum(
            seconds
            for target, seconds in rot.unavailable.items()
            if target_service(target) and target_service(target) not in r.plan
        )
        client = f"{rot.unavailable[CLIENT]:.2f}/{guide.unavailable[CLIENT]:.2f}"
        print(
            f"{r.secret:<20} {rot.seconds:9.1f} {guide.seconds:8.1f} {rot.total:11.2f} "
            f"{floor.total:13.2f} {guide.total:13.2f} {ratio(guide.total, rot.total):>9} "
            f"{ratio(rot.total, floor.total):>9} {unplanned:9.2f} {client:>16} "
            f"{r.bound:6.1f} {ratio(guide.total, r.bound):>11}{flag}"
        )
    print(
        "\nunplanned: rotator's unavailable seconds on targets whose service it does not "
        "recreate; client: 'client via gw' seconds, rotator/guide; bound: the planned "
        "services' start-up times summed (tests/testbed/timing.py; db and postgres-meta, "
        "real processes, count 0), below which no procedure goes; guide/bound: the most "
        "any could reach"
    )


# -------------------------------------------------------------------------------- main


def default_secrets(env: Mapping[str, str]) -> list[str]:
    names = [
        s.name for s in CATALOGUE.values() if s.rotatable and not s.members and s.is_configured(env)
    ]
    return [*names, "all"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.downtime", description=__doc__)
    parser.add_argument("--secrets", help="comma-separated; default: every configured one + all")
    parser.add_argument("--compose", default="docker compose", help="the compose command")
    parser.add_argument(
        "--new-api-keys",
        action="store_true",
        help="render the testbed with opaque and asymmetric keys (adds opaque-api-keys)",
    )
    parser.add_argument(
        "--timing",
        choices=("real", "fast"),
        default="real",
        help="the stand-ins' start-up times: the real services' (default) or none",
    )
    args = parser.parse_args(argv)
    os.environ["ROTATOR_COMPOSE_COMMAND"] = args.compose
    if not image_exists():
        print("the testbed image is missing: run tests/testbed/build-images.sh", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    tb = Testbed.create(
        workdir,
        project_name=f"bench-{secrets.token_hex(3)}",
        new_api_keys=args.new_api_keys,
        timing=args.timing,
    )
    prober: Prober | None = None
    results: list[Result] = []
    try:
        started = time.monotonic()
        tb.up(timeout=HEALTHY_TIMEOUT_S)
        print(
            f"testbed {tb.project_name} up in {time.monotonic() - started:.1f} s"
            f" ({args.compose}, {args.timing} start-up times; load average {load_average()})"
        )
        names = args.secrets.split(",") if args.secrets else default_secrets(tb.env())
        print("secrets: " + ", ".join(names))
        prober = Prober(probe_targets(tb))
        prober.start()
        prober.wait_settled(time.monotonic())
        if not prober.settled_after(0):
            print("warning: not every target answers before the first rotation")
        for name in (n.strip() for n in names):
            first, last = planned(tb, name)
            rot = measure(prober, partial(rotate_with_rotator, tb, name))
            guide = measure(prober, partial(rotate_the_guides_way, tb, name))
            floor = measure(prober, partial(rotate_by_the_floor, tb, name))
            plan = [*first, *last]
            bound = startup_bound(plan) if args.timing == "real" else 0.0
            results.append(Result(name, plan, rot, guide, floor, bound))
            print_secret(results[-1])
        print_summary(results)
    finally:
        if prober is not None:
            prober.stop()
        tb.down()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
