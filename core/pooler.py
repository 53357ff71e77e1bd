"""Supavisor's stored credentials, changed through its own API instead of dropping its schema.

Supavisor keeps one credential per tenant (the manager user, `pgbouncer`), encrypted with
VAULT_ENC_KEY in `_supabase._supavisor`. Since 2.7.2 it can change it in place:
`POST /api/tenants/<id>/update_auth_credentials` with `{db_user, db_password}` and an HS256
bearer token signed with its API_JWT_SECRET (addendum A2 of the rotation pitfalls). That
keeps every other tenant and pool; upstream's db-passwd.sh drops the whole schema instead,
which is rotator's fallback when the endpoint is not there.

The API port is not published, so the request is made from inside the pooler's container
with curl, reading its whole configuration (URL, token, body) from standard input: no
value reaches a command line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from core.compose import ComposeProject
from core.errors import RuntimeFailure
from core.jwtkeys import sign_hs256
from core.runtime import Runtime

__all__ = ["PoolerUpdate", "pooler_service", "update_pooler_credentials"]

MANAGER_USER = "pgbouncer"
"""The tenant's manager user, as upstream's volumes/pooler/pooler.exs creates it."""
DEFAULT_API_PORT = "4000"


@dataclass(frozen=True)
class PoolerUpdate:
    updated: bool
    detail: str
    """What happened, for the report (no values)."""


def pooler_service(compose: ComposeProject, env: Mapping[str, str]) -> str | None:
    """The compose service running Supavisor: the one given POOLER_TENANT_ID."""
    resolved = compose.resolve()
    for service in compose.service_names():
        environment = resolved.get(service, {}).get("environment") or {}
        if "POOLER_TENANT_ID" in environment:
            return service
    return None


def update_pooler_credentials(
    runtime: Runtime,
    compose: ComposeProject,
    service: str,
    *,
    tenant: str,
    password: str,
) -> PoolerUpdate:
    """Ask the running pooler to store `password` for its tenant's manager user.

    Returns updated=False (and why) when the pooler cannot do it: no such endpoint (an
    older Supavisor), no curl in its image, or a refusal. Raises RuntimeFailure only when
    the container cannot be reached at all.
    """
    environment = runtime.container_env(compose, service)
    secret = environment.get("API_JWT_SECRET", "")
    if not secret:
        return PoolerUpdate(False, f"the {service} container has no API_JWT_SECRET")
    now = int(time.time())
    token = sign_hs256({"role": "service_role", "iat": now, "exp": now + 60}, secret)
    port = environment.get("PORT") or DEFAULT_API_PORT
    body = json.dumps({"db_user": MANAGER_USER, "db_password": password})
    config = "\n".join(
        [
            f'url = "http://127.0.0.1:{port}/api/tenants/{_curl_quote(tenant)}/update_auth_credentials"',
            'request = "POST"',
            f'header = "Authorization: Bearer {token}"',
            'header = "Content-Type: application/json"',
            f'data = "{_curl_quote(body)}"',
            'output = "/dev/null"',
            'write-out = "%{http_code}"',
            "silent",
            "max-time = 15",
        ]
    )
    try:
        code, output = runtime.exec_in(
            compose, service, ["curl", "--config", "-"], stdin=config.encode() + b"\n"
        )
    except RuntimeFailure as exc:
        if "not found" in str(exc).lower() or "executable" in str(exc).lower():
            return PoolerUpdate(False, f"no curl in the {service} container")
        raise
    if code in (126, 127):
        return PoolerUpdate(False, f"no curl in the {service} container")
    status = output.decode(errors="replace").strip()[-3:]
    if code == 0 and status.startswith("2"):
        return PoolerUpdate(True, f"tenant {tenant} updated through Supavisor's API")
    if status == "404":
        return PoolerUpdate(False, "this Supavisor has no update_auth_credentials endpoint")
    return PoolerUpdate(False, f"Supavisor's API answered HTTP {status or '?'} (curl exit {code})")


def _curl_quote(text: str) -> str:
    """A value for a double-quoted curl config string: backslash and quote escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')
