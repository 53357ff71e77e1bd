"""Probes: requests made the way the deployment's clients make them, to prove that a
value is accepted where it is used, or refused there.

    settings = ProbeSettings.for_deployment(env)
    for probe in probes_for(changed_keys, accepted=new, refused=old, env=env, settings=settings):
        result = probe.run()          # CheckResult: ✓ / ✗, with the status seen

Three kinds, each reached at an address the settings name:
- gateway: HTTP through the API gateway (Envoy or Kong), as client apps call it. "Accepted"
  means a 2xx from an endpoint that needs the value; "refused" means 401/403 from that same
  endpoint. Anything else (404, 500, unreachable) fails either way.
- pooler: a PostgreSQL login through Supavisor as `postgres.<POOLER_TENANT_ID>`, as outside
  tools connect. Refused means SQLSTATE class 28 from the pooler.
- meta: a query through postgres-meta with the connection string encrypted with
  PG_META_CRYPTO_KEY, as Studio sends it (through the gateway's /pg/ route).

The engine runs every probe it will verify with against the current values before it
changes anything (preflight): a probe that cannot reach its target then refuses the
rotation, naming the probe and the setting that points it elsewhere or turns it off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.adapters.postgres import DbAddress, accepts_password
from core.errors import DatabaseError
from core.jwtkeys import JwkError, sign_hs256
from core.progress import CheckResult
from core.signing_keys import KeySet, kid_of, sign_es256, verify_es256

__all__ = [
    "GATEWAY_PREFIX",
    "Expect",
    "HttpProbe",
    "PoolerProbe",
    "Probe",
    "ProbeSettings",
    "SkippedProbe",
    "cryptojs_encrypt",
    "probes_for",
]

GATEWAY_PREFIX = "gateway: "
POOLER_PREFIX = "pooler: "
META_PREFIX = "postgres-meta: "

TOKEN_ENDPOINTS = (
    ("PostgREST", "/rest/v1/", (401, 403)),
    ("Auth", "/auth/v1/admin/users?page=1&per_page=1", (401, 403)),
    # storage-api answers a token it cannot verify with HTTP 400 ({"statusCode": "403"}).
    ("Storage", "/storage/v1/bucket", (400, 401, 403)),
)
"""Where a service_role token is checked, by each service that verifies tokens itself."""

API_KEYS = ("ANON_KEY", "SERVICE_ROLE_KEY", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY")
"""Every value the gateway takes as `apikey` (Envoy's lds.template.yaml: its Lua check
accepts these four; the *_ASYMMETRIC JWTs are what sb_ keys are translated into, not keys
a client may send)."""

ADMIN_KEYS = ("SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY")
"""The apikeys the gateway lets through to /pg/ (postgres-meta): the service role's."""

BEARER_KEYS: dict[str, tuple[tuple[str, str, tuple[int, ...]], ...]] = {
    "SERVICE_ROLE_KEY_ASYMMETRIC": TOKEN_ENDPOINTS,
    "ANON_KEY_ASYMMETRIC": TOKEN_ENDPOINTS[:1],
}
"""The asymmetric API keys are JWTs the services verify as bearer tokens, and where each
is probed (Auth's admin API and Storage's bucket list need the service role)."""

GATEWAY_PROBED_KEYS = frozenset(
    {*API_KEYS, *BEARER_KEYS, "DASHBOARD_PASSWORD", "JWT_SECRET", "JWT_KEYS"}
    | {"POSTGRES_PASSWORD", "PG_META_CRYPTO_KEY"}
)
"""Keys some gateway probe checks (postgres-meta is reached through the gateway too)."""

API_KEY_PATH = "/auth/v1/settings"
"""Needs an apikey at the gateway; auth answers it 200 for any valid one."""
ADMIN_PATH = "/pg/query"
"""postgres-meta behind the gateway: only the service role's keys pass."""
DASHBOARD_PATH = "/api/platform/profile"
"""Studio behind the gateway's basic auth; 200 from Studio (its / answers a redirect)."""
PROBE_TOKEN_LIFETIME_S = 120
"""Tokens rotator mints to probe a JWT secret live this long."""

GATEWAY_SETTING = (
    "ROTATOR_GATEWAY_URL points the gateway probes elsewhere; --no-gateway-probes "
    "(or the deployment's gateway_probes = false) turns them off"
)
POOLER_SETTING = (
    "ROTATOR_POOLER_ADDRESS (host:port) points the pooler probe elsewhere; "
    "--no-pooler-probe (or the deployment's pooler_probe = false) turns it off"
)


class Expect(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True)
class ProbeSettings:
    """Where the probes go; None turns a kind off (it is then reported, never ticked)."""

    gateway_url: str | None
    pooler_address: tuple[str, int] | None

    @classmethod
    def for_deployment(
        cls,
        env: Mapping[str, str],
        *,
        gateway: bool = True,
        pooler: bool = True,
        environ: Mapping[str, str] = os.environ,
    ) -> ProbeSettings:
        """The defaults for a deployment whose .env is `env`: the ports upstream's compose
        publishes on this host, unless ROTATOR_GATEWAY_URL / ROTATOR_POOLER_ADDRESS say
        otherwise."""
        gateway_url = None
        if gateway:
            port = env.get("API_GW_HTTP_PORT") or env.get("KONG_HTTP_PORT") or "8000"
            gateway_url = (environ.get("ROTATOR_GATEWAY_URL") or f"http://127.0.0.1:{port}").rstrip(
                "/"
            )
        pooler_address = None
        if pooler:
            explicit = environ.get("ROTATOR_POOLER_ADDRESS")
            if explicit:
                host, _, port_text = explicit.rpartition(":")
                pooler_address = (host or "127.0.0.1", int(port_text))
            elif env.get("POOLER_PROXY_PORT_TRANSACTION") and env.get("POOLER_TENANT_ID"):
                pooler_address = ("127.0.0.1", int(env["POOLER_PROXY_PORT_TRANSACTION"]))
        return cls(gateway_url=gateway_url, pooler_address=pooler_address)


class Probe:
    """One request and what its answer must be."""

    name: str
    expect: Expect
    setting: str
    """How to point this probe elsewhere or turn it off, for refusals."""

    def run(self, settle_s: float = 0.0) -> CheckResult:
        """Ask, and ask again while the answer is only "not up yet" (a gateway's 502 for a
        service still starting, a refused connection) for up to `settle_s`: right after a
        restart that is no answer at all. The last answer is the result."""
        deadline = time.monotonic() + settle_s
        while True:
            result, transient = self.attempt()
            if not transient or time.monotonic() >= deadline:
                return result
            time.sleep(SETTLE_POLL_S)

    def attempt(self) -> tuple[CheckResult, bool]:
        """One try: the result, and whether it only says the target is not up yet."""
        raise NotImplementedError

    def unreachable(self, result: CheckResult) -> bool:
        """The probe never got an answer from its target (not a wrong answer)."""
        return result.failed and result.evidence.startswith("unreachable")


SETTLE_POLL_S = 0.5
NOT_UP_YET = (502, 503, 504)
"""What a gateway answers while the service behind it is starting."""


@dataclass(frozen=True)
class HttpProbe(Probe):
    name: str
    base_url: str
    path: str
    headers: Mapping[str, str] = field(repr=False)
    expect: Expect
    method: str = "GET"
    body: bytes | None = field(default=None, repr=False)
    setting: str = GATEWAY_SETTING
    refused_statuses: tuple[int, ...] = (401, 403)

    def attempt(self) -> tuple[CheckResult, bool]:
        if not self.base_url.startswith(("http://", "https://")):
            return (
                CheckResult(self.name, False, f"unreachable: not an http(s) URL: {self.base_url}"),
                False,
            )
        request = urllib.request.Request(  # noqa: S310 - http(s) checked above
            self.base_url + self.path,
            data=self.body,
            headers=dict(self.headers),
            method=self.method,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return (
                CheckResult(self.name, False, f"unreachable at {self.base_url} ({reason})"),
                True,
            )
        seen = f"{self.method} {self.path} -> HTTP {status}"
        if self.expect is Expect.ACCEPTED:
            ok = 200 <= status < 300
        else:
            ok = status in self.refused_statuses
        return CheckResult(self.name, ok, seen), not ok and status in NOT_UP_YET


@dataclass(frozen=True)
class PoolerProbe(Probe):
    name: str
    host: str
    port: int
    user: str
    dbname: str
    password: str = field(repr=False)
    expect: Expect
    setting: str = POOLER_SETTING

    def attempt(self) -> tuple[CheckResult, bool]:
        where = f"{self.host}:{self.port}"
        try:
            took = accepts_password(
                DbAddress(self.host, self.port, self.dbname), self.user, self.password
            )
        except DatabaseError as exc:
            return CheckResult(self.name, False, f"unreachable at {where} ({exc})"), exc.retryable
        seen = f"login as {self.user} at {where} {'accepted' if took else 'refused'}"
        return CheckResult(self.name, took is (self.expect is Expect.ACCEPTED), seen), False


@dataclass(frozen=True)
class SkippedProbe(Probe):
    """A kind of probe that applies to these keys but is turned off: reported as not
    applicable, so nobody reads its absence as a pass."""

    name: str
    reason: str
    expect: Expect = Expect.ACCEPTED
    setting: str = ""

    def attempt(self) -> tuple[CheckResult, bool]:
        return CheckResult(self.name, None, self.reason), False


# --- choosing probes ---------------------------------------------------------------------------


def probes_for(
    keys: Sequence[str],
    *,
    accepted: Mapping[str, str],
    refused: Mapping[str, str] | None,
    env: Mapping[str, str],
    settings: ProbeSettings,
    accepted_is: str = "new",
) -> list[Probe]:
    """The probes proving `accepted` values of `keys` work and `refused` ones do not.

    `env` is the .env the accepted values live in (for the names and addresses around
    them); `refused` None asks for the accepted half only (preflight). `accepted_is` names
    the accepted values in the report: "new" after a rotation, "old" after a rollback,
    "current" before anything changes.
    """
    ask = _Ask(frozenset(keys), accepted, refused, env, accepted_is)
    chosen: list[Probe] = []
    gateway = settings.gateway_url
    if gateway is None and GATEWAY_PROBED_KEYS & ask.keys:
        chosen.append(SkippedProbe(f"{GATEWAY_PREFIX}probes", "turned off (--no-gateway-probes)"))
    if gateway is not None:
        chosen += _client_key_probes(gateway, ask)
        chosen += _signing_probes(gateway, ask)
        if {"POSTGRES_PASSWORD", "PG_META_CRYPTO_KEY"} & ask.keys and ask.service_key:
            chosen += _meta_probes(gateway, ask)
    if {"POSTGRES_PASSWORD", "VAULT_ENC_KEY"} & ask.keys:
        chosen += _pooler_probes(settings.pooler_address, ask)
    return chosen


@dataclass(frozen=True)
class _Ask:
    """What one call of probes_for asks: the keys, both sets of values, how to name them."""

    keys: frozenset[str]
    accepted: Mapping[str, str]
    refused: Mapping[str, str] | None
    env: Mapping[str, str]
    accepted_is: str

    @property
    def refused_is(self) -> str:
        return "old" if self.accepted_is == "new" else "new"

    def wants(self, key: str) -> bool:
        """`key` is asked about and has an accepted value to probe with."""
        return key in self.keys and bool(self.accepted.get(key))

    def stale(self, key: str) -> str | None:
        """The value of `key` to probe refused, if it is asked for and differs."""
        value = (self.refused or {}).get(key)
        return value if value and value != self.accepted.get(key) else None

    def current(self, key: str) -> str:
        """The value the deployment runs with once the accepted values are in."""
        return self.accepted.get(key) or self.env.get(key, "")

    @property
    def service_key(self) -> str:
        """What the token probes pass the gateway as apikey."""
        return self.current("SERVICE_ROLE_KEY")


def _client_key_probes(gateway: str, ask: _Ask) -> list[Probe]:
    """The values a client sends the gateway itself: apikeys and the dashboard login."""
    probes: list[Probe] = []
    for key in API_KEYS:
        if ask.wants(key):
            probes += _pair(
                f"{GATEWAY_PREFIX}{key} as apikey",
                ask,
                lambda value: HttpProbe(
                    "", gateway, API_KEY_PATH, {"apikey": value}, Expect.ACCEPTED
                ),
                key,
            )
    for key in ADMIN_KEYS:
        if ask.wants(key):
            probes += _pair(
                f"{GATEWAY_PREFIX}{key} as admin (/pg/)",
                ask,
                lambda value: _meta_query(gateway, value, connection=None),
                key,
            )
    if ask.wants("DASHBOARD_PASSWORD"):
        user = ask.env.get("DASHBOARD_USERNAME", "")
        probes += _pair(
            f"{GATEWAY_PREFIX}dashboard login",
            ask,
            lambda value: HttpProbe(
                "", gateway, DASHBOARD_PATH, _basic(user, value), Expect.ACCEPTED
            ),
            "DASHBOARD_PASSWORD",
        )
    return probes


def _signing_probes(gateway: str, ask: _Ask) -> list[Probe]:
    """Tokens signed with the secret or keys that changed, at each service verifying them."""
    if not ask.service_key:
        return []
    probes: list[Probe] = []
    if ask.wants("JWT_SECRET"):
        old_secret = ask.stale("JWT_SECRET")
        probes += _token_probes(
            gateway,
            ask.service_key,
            "a token signed with JWT_SECRET",
            {f"the {ask.accepted_is} secret": _hs256_token(ask.accepted["JWT_SECRET"])},
            {f"the {ask.refused_is} secret": _hs256_token(old_secret)} if old_secret else {},
        )
    if ask.wants("JWT_KEYS"):
        trusted = _signing_kids(ask.accepted["JWT_KEYS"])
        gone = {
            kid: jwk
            for kid, jwk in _signing_kids((ask.refused or {}).get("JWT_KEYS", "")).items()
            if kid not in trusted
        }
        probes += _token_probes(
            gateway,
            ask.service_key,
            "a token signed with",
            {f"key {kid[:8]}": _es256_token(jwk) for kid, jwk in trusted.items()},
            {f"key {kid[:8]} (removed)": _es256_token(jwk) for kid, jwk in gone.items()},
        )
    for key, endpoints in BEARER_KEYS.items():
        if not ask.wants(key):
            continue
        old_token = ask.stale(key)
        # An old asymmetric key dies with its signing key only (the rotate phase keeps
        # the old key trusted on purpose): probe it refused only once that is gone.
        dead = (
            old_token if old_token and not _verifies(old_token, ask.current("JWT_JWKS")) else None
        )
        probes += _token_probes(
            gateway,
            ask.service_key,
            f"{key} as a bearer token",
            {f"the {ask.accepted_is} value": ask.accepted[key]},
            {f"the {ask.refused_is} value": dead} if dead else {},
            endpoints=endpoints,
        )
    return probes


def _pooler_probes(pooler: tuple[str, int] | None, ask: _Ask) -> list[Probe]:
    """A login through Supavisor, which holds the password (and VAULT_ENC_KEY-encrypted)."""
    if pooler is None:
        why = (
            "turned off (--no-pooler-probe)"
            if ask.env.get("POOLER_TENANT_ID")
            else "no pooler in .env (POOLER_TENANT_ID, POOLER_PROXY_PORT_TRANSACTION)"
        )
        return [SkippedProbe(f"{POOLER_PREFIX}login", why)]
    user = f"postgres.{ask.env.get('POOLER_TENANT_ID', '')}"
    dbname = ask.env.get("POSTGRES_DB") or "postgres"
    name = f"{POOLER_PREFIX}login as {user}"
    password = ask.current("POSTGRES_PASSWORD")
    probes: list[Probe] = [
        PoolerProbe(
            f"{name} with the {ask.accepted_is} password",
            *pooler,
            user,
            dbname,
            password,
            Expect.ACCEPTED,
        )
    ]
    old = ask.stale("POSTGRES_PASSWORD")
    if old is not None:
        probes.append(
            PoolerProbe(
                f"{name} with the {ask.refused_is} password refused",
                *pooler,
                user,
                dbname,
                old,
                Expect.REFUSED,
            )
        )
    return probes


def _pair(label: str, ask: _Ask, make: Callable[[str], HttpProbe], key: str) -> list[Probe]:
    """The accepted probe for `key`'s value and, when there is one, the refused probe."""
    probes: list[Probe] = [
        _renamed(
            make(ask.accepted[key]), f"{label} with the {ask.accepted_is} value", Expect.ACCEPTED
        )
    ]
    old = ask.stale(key)
    if old is not None:
        probes.append(
            _renamed(make(old), f"{label} with the {ask.refused_is} value refused", Expect.REFUSED)
        )
    return probes


def _renamed(probe: HttpProbe, name: str, expect: Expect) -> HttpProbe:
    return HttpProbe(
        name,
        probe.base_url,
        probe.path,
        probe.headers,
        expect,
        method=probe.method,
        body=probe.body,
        setting=probe.setting,
        refused_statuses=probe.refused_statuses,
    )


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _token_probes(
    gateway: str,
    service_key: str,
    label: str,
    accepted: Mapping[str, str],
    refused: Mapping[str, str],
    *,
    endpoints: Sequence[tuple[str, str, tuple[int, ...]]] = TOKEN_ENDPOINTS,
) -> list[Probe]:
    """Each token at each service: the accepted ones 2xx, the refused ones 401/403 there."""
    probes: list[Probe] = []
    for service, path, refusals in endpoints:
        for expect, tokens in ((Expect.ACCEPTED, accepted), (Expect.REFUSED, refused)):
            for what, token in tokens.items():
                suffix = " refused" if expect is Expect.REFUSED else ""
                probes.append(
                    HttpProbe(
                        f"{GATEWAY_PREFIX}{label} {what} at {service}{suffix}",
                        gateway,
                        path,
                        {"apikey": service_key, "Authorization": f"Bearer {token}"},
                        expect,
                        refused_statuses=refusals,
                    )
                )
    return probes


def _probe_claims() -> dict[str, Any]:
    """A short-lived service_role token's claims, as a backend's would be."""
    now = int(time.time())
    return {
        "role": "service_role",
        "iss": "supabase",
        "iat": now,
        "exp": now + PROBE_TOKEN_LIFETIME_S,
    }


def _hs256_token(secret: str) -> str:
    return sign_hs256(_probe_claims(), secret)


def _es256_token(jwk: dict[str, Any]) -> str:
    return sign_es256(_probe_claims(), jwk)


def _verifies(token: str, jwt_jwks: str) -> bool:
    try:
        verify_es256(token, jwt_jwks)
    except JwkError:
        return False
    return True


def _signing_kids(jwt_keys: str) -> dict[str, dict[str, Any]]:
    """kid -> private JWK of every asymmetric key in a JWT_KEYS value ({} when unreadable)."""
    try:
        keys = KeySet.parse(jwt_keys)
    except JwkError:
        return {}
    return {kid_of(k): k for k in keys.asymmetric}


# --- postgres-meta ------------------------------------------------------------------------------


def _meta_query(gateway: str, service_key: str, *, connection: str | None) -> HttpProbe:
    headers = {"apikey": service_key, "Content-Type": "application/json"}
    if connection is not None:
        headers["x-connection-encrypted"] = connection
    body = json.dumps({"query": "select 1"}).encode()
    return HttpProbe("", gateway, ADMIN_PATH, headers, Expect.ACCEPTED, method="POST", body=body)


def _meta_probes(gateway: str, ask: _Ask) -> list[Probe]:
    """Studio's path to the database: a connection string (holding POSTGRES_PASSWORD)
    encrypted with PG_META_CRYPTO_KEY, decrypted and used by postgres-meta."""
    crypto_key = ask.current("PG_META_CRYPTO_KEY")
    if not crypto_key:
        return []
    connection = _studio_connection(ask.env, ask.current("POSTGRES_PASSWORD"))
    name = f"{META_PREFIX}a query with Studio's encrypted connection"
    sealed = cryptojs_encrypt(crypto_key, connection)
    probes: list[Probe] = [
        _renamed(
            _meta_query(gateway, ask.service_key, connection=sealed),
            f"{name}, {ask.accepted_is} values",
            Expect.ACCEPTED,
        )
    ]
    old_key = ask.stale("PG_META_CRYPTO_KEY")
    if old_key is not None:
        # postgres-meta cannot decrypt the connection: it answers an error, not 401/403.
        old_sealed = cryptojs_encrypt(old_key, connection)
        probe = _meta_query(gateway, ask.service_key, connection=old_sealed)
        probes.append(
            HttpProbe(
                f"{name} encrypted with the {ask.refused_is} key refused",
                probe.base_url,
                probe.path,
                probe.headers,
                Expect.REFUSED,
                method="POST",
                body=probe.body,
                refused_statuses=META_REFUSED_STATUSES,
            )
        )
    return probes


META_REFUSED_STATUSES = (400, 500)
"""What postgres-meta answers a connection it cannot decrypt (see tests/testbed/README.md)."""


def _studio_connection(env: Mapping[str, str], password: str) -> str:
    host = env.get("POSTGRES_HOST") or "db"
    port = env.get("POSTGRES_PORT") or "5432"
    dbname = env.get("POSTGRES_DB") or "postgres"
    return f"postgresql://postgres:{password}@{host}:{port}/{dbname}"


def cryptojs_encrypt(passphrase: str, plaintext: str) -> str:
    """crypto-js `AES.encrypt(plaintext, passphrase).toString()`, as Studio encrypts the
    connection it sends postgres-meta: OpenSSL's "Salted__" format, AES-256-CBC with key
    and IV from EVP_BytesToKey (MD5, one round), PKCS#7 padding, base64."""
    salt = secrets.token_bytes(8)
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase.encode() + salt, usedforsecurity=False).digest()
        derived += block
    key, iv = derived[:32], derived[32:48]
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(data) + encryptor.finalize()
    return base64.b64encode(b"Salted__" + salt + sealed).decode()
