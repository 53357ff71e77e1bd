"""Verification: prove that the new secret works and the old one is refused.

Each check returns `CheckResult`s with evidence a person can read (role names,
service names, HTTP status codes, fingerprints), never values. The engine
runs them after a restart; `rotator verify` runs them on the current state.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.adapters.postgres import DbAddress, role_passwords_match
from core.deployment import Deployment
from core.errors import DatabaseError
from core.progress import CheckResult
from core.roles import SHARED_PASSWORD_ROLES
from core.runtime import Runtime

ADMIN_ROLE = "supabase_admin"
"""The role rotator logs in as, like upstream's utils/db-passwd.sh."""

MIN_STRAGGLER_LEN = 8
"""Shorter values (ports, booleans) would match by accident in unrelated variables."""

GATEWAY_PREFIX = "gateway: "

API_KEY_PROBE_PATH = "/auth/v1/settings"
"""Key-protected on both upstream gateways, answered by auth: 200 with a valid apikey."""


def db_address(deployment: Deployment, runtime: Runtime) -> DbAddress:
    env = deployment.values()
    host = env.get("POSTGRES_HOST") or "db"
    return DbAddress(
        host=runtime.resolve_host(deployment.compose, host),
        port=int(env.get("POSTGRES_PORT") or "5432"),
        dbname=env.get("POSTGRES_DB") or "postgres",
    )


def check_services_ready(
    deployment: Deployment, runtime: Runtime, services: Sequence[str] | None = None
) -> CheckResult:
    states = runtime.services(deployment.compose)
    wanted = list(services) if services is not None else deployment.compose.service_names()
    bad = [s for s in wanted if s not in states or not states[s].is_ready]
    if bad:
        return CheckResult("services healthy", False, "not ready: " + ", ".join(sorted(bad)))
    return CheckResult("services healthy", True, f"{len(wanted)} services running and healthy")


def check_no_stragglers(
    deployment: Deployment,
    runtime: Runtime,
    stale_values: Mapping[str, str],
    *,
    stale_is: str = "old",
) -> CheckResult:
    """No running container's environment still holds any of `stale_values` (by key)."""
    needles = {k: v for k, v in stale_values.items() if len(v) >= MIN_STRAGGLER_LEN}
    holders: set[str] = set()
    for service in runtime.services(deployment.compose):
        env = runtime.container_env(deployment.compose, service)
        if any(needle in value for value in env.values() for needle in needles.values()):
            holders.add(service)
    name = f"no container holds the {stale_is} value"
    if holders:
        return CheckResult(name, False, "still holding: " + ", ".join(sorted(holders)))
    return CheckResult(
        name, True, f"environments of all containers searched for {len(needles)} value(s)"
    )


def check_db_passwords(
    address: DbAddress,
    roles: Sequence[str],
    accepted: str,
    refused: str | None,
    *,
    accepted_is: str = "new",
) -> list[CheckResult]:
    """Every login role accepts `accepted`; none accepts `refused`.

    `accepted_is` names the accepted password in the report: "new" after a rotation,
    "old" after a rollback (then the refused one is the new one)."""
    refused_is = "old" if accepted_is == "new" else "new"
    results = []
    try:
        new_ok = role_passwords_match(address, roles, accepted)
        failing = sorted(r for r, ok in new_ok.items() if not ok)
        results.append(
            CheckResult(
                f"database accepts the {accepted_is} password",
                not failing,
                f"refused for: {', '.join(failing)}"
                if failing
                else f"login works for {len(new_ok)} roles: {', '.join(sorted(new_ok))}",
            )
        )
        if refused is not None and refused != accepted:
            old_ok = role_passwords_match(address, roles, refused)
            leaking = sorted(r for r, ok in old_ok.items() if ok)
            results.append(
                CheckResult(
                    f"database refuses the {refused_is} password",
                    not leaking,
                    f"still accepted for: {', '.join(leaking)}"
                    if leaking
                    else f"{refused_is} password refused for {len(old_ok)} roles",
                )
            )
    except DatabaseError as exc:
        results.append(CheckResult("database reachable", False, str(exc)))
    return results


@dataclass(frozen=True)
class HttpProbe:
    """One request through the gateway and what its status code means."""

    name: str
    """Starts with GATEWAY_PREFIX, which is how reports group these checks."""
    path: str
    headers: Mapping[str, str]
    expect_ok: bool


def gateway_url(env: Mapping[str, str]) -> str:
    """Where the API gateway answers on this host (the upstream port mapping)."""
    explicit = os.environ.get("ROTATOR_GATEWAY_URL")
    if explicit:
        return explicit.rstrip("/")
    port = env.get("API_GW_HTTP_PORT") or env.get("KONG_HTTP_PORT") or "8000"
    return f"http://127.0.0.1:{port}"


def gateway_probes(
    old: Mapping[str, str], new: Mapping[str, str], *, dashboard_user: str, old_is: str = "old"
) -> list[HttpProbe]:
    """Probes for every changed value the gateway checks: new accepted, old refused.

    `old_is` names the refused values in the report ("new" after a rollback)."""
    new_is = "old" if old_is == "new" else "new"
    probes: list[HttpProbe] = []

    def both(
        name: str, path: str, accepted: dict[str, str], refused: dict[str, str] | None
    ) -> None:
        probes.append(
            HttpProbe(f"{GATEWAY_PREFIX}{name} with the {new_is} value", path, accepted, True)
        )
        if refused is not None:
            probes.append(
                HttpProbe(
                    f"{GATEWAY_PREFIX}{name} with the {old_is} value refused", path, refused, False
                )
            )

    for key in ("ANON_KEY", "SERVICE_ROLE_KEY", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"):
        if new.get(key):
            stale = old.get(key) if old.get(key) != new[key] else None
            both(
                key,
                API_KEY_PROBE_PATH,
                {"apikey": new[key]},
                {"apikey": stale} if stale else None,
            )
    if new.get("DASHBOARD_PASSWORD"):
        stale = old.get("DASHBOARD_PASSWORD")
        stale = stale if stale != new["DASHBOARD_PASSWORD"] else None
        both(
            "dashboard login",
            "/",
            _basic(dashboard_user, new["DASHBOARD_PASSWORD"]),
            _basic(dashboard_user, stale) if stale else None,
        )
    return probes


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def run_probe(base_url: str, probe: HttpProbe, timeout_s: float = 5) -> CheckResult:
    if not base_url.startswith(("http://", "https://")):
        return CheckResult(probe.name, False, f"gateway URL must be http(s): {base_url}")
    request = urllib.request.Request(base_url + probe.path, headers=dict(probe.headers))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return CheckResult(probe.name, False, f"gateway unreachable at {base_url} ({reason})")
    refused = status in (401, 403)
    ok = (not refused and status < 500) if probe.expect_ok else refused
    return CheckResult(probe.name, ok, f"GET {probe.path} -> HTTP {status}")


def check_containers_match_env(deployment: Deployment, runtime: Runtime) -> CheckResult:
    """Every running container was created from the current .env.

    Catches the commonest silent failure: `.env` edited, containers restarted
    (not recreated), still running on the old values. Names only in the evidence.
    """
    resolved = deployment.compose.resolve()
    stale: list[str] = []
    for service in runtime.services(deployment.compose):
        expected = resolved.get(service, {}).get("environment") or {}
        actual = runtime.container_env(deployment.compose, service)
        drifted = sorted(
            k for k, v in expected.items() if v is not None and actual.get(k) != str(v)
        )
        if drifted:
            stale.append(f"{service} ({', '.join(drifted)})")
    if stale:
        return CheckResult("containers match .env", False, "recreate needed: " + "; ".join(stale))
    return CheckResult("containers match .env", True, "every container was created from this .env")


def verify_current(
    deployment: Deployment, runtime: Runtime, *, http_probes: bool = True
) -> list[CheckResult]:
    """`rotator verify`: the running deployment agrees with .env everywhere it can be probed."""
    env = deployment.values()
    checks = [
        check_services_ready(deployment, runtime),
        check_containers_match_env(deployment, runtime),
    ]
    if env.get("POSTGRES_PASSWORD"):
        address = db_address(deployment, runtime)
        checks += check_db_passwords(address, SHARED_PASSWORD_ROLES, env["POSTGRES_PASSWORD"], None)
    if http_probes:
        user = env.get("DASHBOARD_USERNAME", "")
        probes = gateway_probes({}, _probed_keys(env), dashboard_user=user)
        checks += [run_probe(gateway_url(env), probe) for probe in probes]
    return checks


def _probed_keys(env: Mapping[str, str]) -> dict[str, str]:
    keys = (
        "ANON_KEY",
        "SERVICE_ROLE_KEY",
        "SUPABASE_PUBLISHABLE_KEY",
        "SUPABASE_SECRET_KEY",
        "DASHBOARD_PASSWORD",
    )
    return {k: env[k] for k in keys if env.get(k)}
