"""Verification: prove that the new secret works and the old one is refused.

Each check returns `CheckResult`s with evidence a person can read (role names,
service names, HTTP status codes, fingerprints), never values. The engine
runs them after a restart; `rotator verify` runs them on the current state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.adapters.postgres import DbAddress, RoleEvidence, password_evidence
from core.deployment import Deployment
from core.errors import DatabaseError, DatabaseRefused
from core.probes import ProbeSettings, probes_for
from core.progress import CheckResult
from core.roles import SHARED_PASSWORD_ROLES
from core.runtime import Runtime

ADMIN_ROLE = "supabase_admin"
"""The role rotator logs in as, like upstream's utils/db-passwd.sh."""

VERIFY_SETTLE_S = 10.0
"""`rotator verify` gives a service that answers "not up yet" this long (it may have been
recreated a moment ago)."""

MIN_STRAGGLER_LEN = 8
"""Shorter values (ports, booleans) would match by accident in unrelated variables."""


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
    if not wanted:
        return CheckResult("services healthy", None, "no service to check")
    bad = [s for s in wanted if s not in states or not states[s].is_ready]
    if bad:
        return CheckResult("services healthy", False, "not ready: " + ", ".join(sorted(bad)))
    # A service without a health check is only known to run; its probes (if any) tell more.
    unchecked = sorted(s for s in wanted if states[s].health == "none")
    healthy = len(wanted) - len(unchecked)
    parts = [f"{healthy} service(s) running and healthy"] if healthy else []
    if unchecked:
        parts.append(f"running, with no health check of their own: {', '.join(unchecked)}")
    evidence = "; ".join(parts)
    return CheckResult("services healthy", True, evidence)


def check_no_stragglers(
    deployment: Deployment,
    runtime: Runtime,
    stale_values: Mapping[str, str],
    *,
    stale_is: str = "old",
) -> CheckResult:
    """No running container's environment still holds any of `stale_values` (by key)."""
    needles = {k: v for k, v in stale_values.items() if len(v) >= MIN_STRAGGLER_LEN}
    name = f"no container holds the {stale_is} value"
    if not needles:
        return CheckResult(name, None, "no changed value long enough to search for")
    services = list(runtime.services(deployment.compose))
    if not services:
        return CheckResult(name, None, "no container to search")
    holders: set[str] = set()
    for service in services:
        env = runtime.container_env(deployment.compose, service)
        if any(needle in value for value in env.values() for needle in needles.values()):
            holders.add(service)
    if holders:
        return CheckResult(name, False, "still holding: " + ", ".join(sorted(holders)))
    return CheckResult(
        name,
        True,
        f"environments of {len(services)} containers searched for {len(needles)} value(s)",
    )


def check_db_passwords(
    address: DbAddress,
    roles: Sequence[str],
    accepted: str,
    refused: str | None,
    *,
    accepted_is: str = "new",
) -> list[CheckResult]:
    """Every role takes `accepted`; none takes `refused`.

    Roles that can log in are asked by logging in, the others by their stored verifier
    (core.adapters.postgres.password_evidence). A role that is missing, or could not be
    asked, counts as neither: it is named in the evidence, and a check that could ask no
    role at all fails. `accepted_is` names the accepted password in the report: "new"
    after a rotation, "old" after a rollback (then the refused one is the new one)."""
    refused_is = "old" if accepted_is == "new" else "new"
    accepts_name = f"database accepts the {accepted_is} password"
    try:
        took = password_evidence(address, roles, accepted, admin_password=accepted)
        results = [_password_result(accepts_name, took, want=True)]
        if refused is not None and refused != accepted:
            kept = password_evidence(address, roles, refused, admin_password=accepted)
            refuses_name = f"database refuses the {refused_is} password"
            results.append(_password_result(refuses_name, kept, want=False))
    except DatabaseRefused as exc:
        return [CheckResult(accepts_name, False, str(exc))]
    except DatabaseError as exc:
        return [CheckResult("database reachable", False, str(exc))]
    return results


def _password_result(name: str, evidence: Mapping[str, RoleEvidence], *, want: bool) -> CheckResult:
    known = [e for e in evidence.values() if e.accepts is not None]
    wrong = sorted(e.role for e in known if e.accepts is not want)
    unknown = sorted(f"{e.role} ({e.how})" for e in evidence.values() if e.accepts is None)
    if not known:
        return CheckResult(name, False, "no role could be checked: " + "; ".join(unknown))
    if wrong:
        verb = "refused for" if want else "still accepted for"
        return CheckResult(name, False, f"{verb}: {', '.join(wrong)}")
    by_login = sorted(e.role for e in known if e.how == "login")
    by_verifier = sorted(e.role for e in known if e.how == "stored verifier")
    what = "login works" if want else "login refused"
    parts = [f"{what} for {len(by_login)} roles: {', '.join(by_login)}"] if by_login else []
    if by_verifier:
        verb = "matches" if want else "does not match"
        parts.append(
            f"stored verifier {verb} for {len(by_verifier)} roles that cannot log in: "
            + ", ".join(by_verifier)
        )
    if unknown:
        parts.append("not checked: " + "; ".join(unknown))
    return CheckResult(name, True, "; ".join(parts))


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
    deployment: Deployment, runtime: Runtime, *, probes: ProbeSettings | None = None
) -> list[CheckResult]:
    """`rotator verify`: the running deployment agrees with .env everywhere it can be probed.

    Each check here fails on a deployment where it does not hold (tests/e2e prove it on
    deliberately broken ones); one with nothing to check is reported not applicable.
    """
    env = deployment.values()
    checks = [
        check_services_ready(deployment, runtime),
        check_containers_match_env(deployment, runtime),
    ]
    if env.get("POSTGRES_PASSWORD"):
        address = db_address(deployment, runtime)
        checks += check_db_passwords(
            address, SHARED_PASSWORD_ROLES, env["POSTGRES_PASSWORD"], None, accepted_is="current"
        )
    settings = probes or ProbeSettings.for_deployment(env)
    keys = [key for key in env if env[key]]
    checks += [
        probe.run(settle_s=VERIFY_SETTLE_S)
        for probe in probes_for(
            keys, accepted=env, refused=None, env=env, settings=settings, accepted_is="current"
        )
    ]
    return checks
