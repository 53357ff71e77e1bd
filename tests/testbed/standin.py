#!/usr/bin/env python3
"""A stand-in for one Supabase service, as the testbed runs it (see README.md).

It behaves toward secrets like the service it replaces: it reads its environment once
at start; logs in to the database with the credentials it was given, on every health
check (503 when the login is refused); verifies bearer JWTs with the JWT secret or JWKS
it was given; and, for api-gw, checks `apikey` and the dashboard's basic auth. Every
stand-in answers /health and /fingerprints (sha256[:16] of each environment value).

    standin ROLE --port PORT        (roles: see SERVICES; health checks use probe.sh)

Python 3 standard library only, plus Debian's psycopg2, imported when first needed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Env = Mapping[str, str]
Json = dict[str, Any]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- Sealing: how the stand-ins persist secrets the way Realtime and Supavisor do ----
# (encrypted with a key from their environment). Stdlib only: a SHA-256 keystream and
# an HMAC tag; opening with another key fails, which is the behaviour that matters.


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    stream = b"".join(
        hashlib.sha256(key + nonce + i.to_bytes(4, "big")).digest() for i in range(blocks)
    )
    return stream[:length]


def seal(key: str, plaintext: str) -> str:
    k = key.encode()
    nonce = secrets.token_bytes(16)
    data = plaintext.encode()
    body = nonce + bytes(a ^ b for a, b in zip(data, _keystream(k, nonce, len(data)), strict=True))
    tag = hmac.new(b"tag" + k, body, hashlib.sha256).digest()[:16]
    return base64.b64encode(body + tag).decode()


def unseal(key: str, token: str) -> str:
    k = key.encode()
    raw = base64.b64decode(token)
    body, tag = raw[:-16], raw[-16:]
    if not hmac.compare_digest(tag, hmac.new(b"tag" + k, body, hashlib.sha256).digest()[:16]):
        raise ValueError("cannot decrypt: wrong key")
    nonce, data = body[:16], body[16:]
    return bytes(a ^ b for a, b in zip(data, _keystream(k, nonce, len(data)), strict=True)).decode()


# --- JWT verification: HS256 (shared secret or `oct` JWK) and ES256 (P-256 JWK) -----

_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
Point = tuple[int, int] | None


def _add(p: Point, q: Point) -> Point:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] - 3) * pow(2 * p[1], -1, _P)
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P)
    x = (slope * slope - p[0] - q[0]) % _P
    return x, (slope * (p[0] - x) - p[1]) % _P


def _mul(k: int, p: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, p)
        p = _add(p, p)
        k >>= 1
    return result


def es256_verify(public: tuple[int, int], message: bytes, signature: bytes) -> bool:
    x, y = public
    if len(signature) != 64 or (y * y - x * x * x + 3 * x - _B) % _P != 0:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _N and 0 < s < _N):
        return False
    z = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, _N)
    point = _add(_mul(z * w % _N, _G), _mul(r * w % _N, public))
    return point is not None and point[0] % _N == r


@dataclass(frozen=True)
class Key:
    alg: str  # "HS256" or "ES256"
    secret: bytes = b""
    public: tuple[int, int] = (0, 0)
    kid: str | None = None


def load_keys(spec: str) -> list[Key]:
    """A plain secret, a JWK, a JWKS ({"keys": [...]}) or a JSON array of JWKs."""
    spec = spec.strip()
    if not spec:
        return []
    if not spec.startswith(("{", "[")):
        return [Key("HS256", secret=spec.encode())]
    parsed = json.loads(spec)
    jwks = parsed if isinstance(parsed, list) else parsed.get("keys", [parsed])
    keys = []
    for jwk in jwks:
        if jwk.get("kty") == "oct":
            keys.append(Key("HS256", secret=b64url_decode(jwk["k"]), kid=jwk.get("kid")))
        elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            point = (
                int.from_bytes(b64url_decode(jwk["x"])),
                int.from_bytes(b64url_decode(jwk["y"])),
            )
            keys.append(Key("ES256", public=point, kid=jwk.get("kid")))
    return keys


class JwtError(Exception):
    pass


def verify_jwt(token: str, keys: list[Key], now: float | None = None) -> Json:
    """The token's claims if one of the keys signed it and it has not expired."""
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(b64url_decode(head_b64))
        claims = json.loads(b64url_decode(claims_b64))
        signature = b64url_decode(sig_b64)
    except ValueError as exc:
        raise JwtError("malformed token") from exc
    signed = f"{head_b64}.{claims_b64}".encode()
    for key in keys:
        if key.alg != header.get("alg") or (key.kid and header.get("kid", key.kid) != key.kid):
            continue
        if key.alg == "HS256":
            valid = hmac.compare_digest(hmac.new(key.secret, signed, "sha256").digest(), signature)
        else:
            valid = es256_verify(key.public, signed, signature)
        if valid:
            if "exp" in claims and float(claims["exp"]) < (now or time.time()):
                raise JwtError("token expired")
            return dict(claims)
    raise JwtError("invalid signature")


# --- Database logins -----------------------------------------------------------------


def db_login(
    conninfo: str | Mapping[str, str], query: str = "select 1", params: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Log in (a new connection each time), run one query, log out. Raises on refusal."""
    import psycopg2  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if isinstance(conninfo, str):
        conn = psycopg2.connect(conninfo.replace("ecto://", "postgresql://", 1), connect_timeout=3)
    else:
        conn = psycopg2.connect(connect_timeout=3, **conninfo)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params or None)
            rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def db_error(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- Services ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Json | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:].strip() if value[:7].lower() == "bearer " else None


class Service:
    """What every stand-in does; a role overrides the parts its real service differs in."""

    jwt_vars: tuple[str, ...] = ()  # environment variables holding its JWT secret / JWKS
    health_paths: tuple[str, ...] = ("/health",)
    anonymous_role: str | None = None  # role of a request without a bearer token

    def __init__(self, env: Env) -> None:
        self.env = dict(env)  # read once, at start, like the real services
        self.keys = [k for var in self.jwt_vars for k in load_keys(self.env.get(var, ""))]

    def start(self) -> None:
        """Runs before the port opens; raise SystemExit to crash like the real service."""

    def db_conninfo(self) -> str | Mapping[str, str] | None:
        return None

    def check(self) -> str | None:
        """None when healthy, else the reason."""
        conninfo = self.db_conninfo()
        if conninfo is None:
            return None
        try:
            db_login(conninfo)
        except Exception as exc:
            return f"database login refused: {db_error(exc)}"
        return None

    def routes(self) -> dict[str, Callable[[Request], Reply]]:
        return {}

    def health(self, _request: Request | None = None) -> Reply:
        reason = self.check()
        if reason:
            return Reply(503, {"status": "unhealthy", "reason": reason})
        return Reply(200, {"status": "ok"})

    def whoami(self, request: Request) -> Reply:
        token = request.bearer()
        if token is None:
            if self.anonymous_role:
                return Reply(200, {"role": self.anonymous_role})
            return Reply(401, {"error": "no bearer token"})
        try:
            claims = verify_jwt(token, self.keys)
        except JwtError as exc:
            return Reply(401, {"error": str(exc)})
        return Reply(200, {"role": claims.get("role")})

    def resource(self, request: Request) -> Reply:
        """Any other path: the service's API, which needs a valid JWT."""
        return self.whoami(request)

    def handle(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if path in self.health_paths:
            return self.health(request)
        if path == "/fingerprints":
            return Reply(200, {name: fingerprint(value) for name, value in self.env.items()})
        if path == "/whoami":
            return self.whoami(request)
        handler = self.routes().get(path)
        return handler(request) if handler else self.resource(request)


def wait_for_db(conninfo: str | Mapping[str, str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            db_login(conninfo)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reach the database: {db_error(exc)}") from exc
            time.sleep(1)


class Auth(Service):
    jwt_vars = ("GOTRUE_JWT_SECRET", "GOTRUE_JWT_KEYS")

    def db_conninfo(self) -> str:
        return self.env["GOTRUE_DB_DATABASE_URL"]


class Rest(Service):
    jwt_vars = ("PGRST_JWT_SECRET",)
    health_paths = ("/health", "/ready")
    anonymous_role = "anon"  # PGRST_DB_ANON_ROLE

    def db_conninfo(self) -> str:
        return self.env["PGRST_DB_URI"]


class Storage(Service):
    jwt_vars = ("AUTH_JWT_SECRET", "JWT_JWKS")
    health_paths = ("/health", "/status")

    def db_conninfo(self) -> str:
        return self.env["DATABASE_URL"]

    def routes(self) -> dict[str, Callable[[Request], Reply]]:
        return {"/s3/check": self.s3_check}

    def s3_check(self, request: Request) -> Reply:
        """Basic auth with the S3 protocol credentials (the real one signs with SigV4)."""
        expected = (
            f"{self.env['S3_PROTOCOL_ACCESS_KEY_ID']}:{self.env['S3_PROTOCOL_ACCESS_KEY_SECRET']}"
        )
        if basic_auth_matches(request, expected):
            return Reply(200, {"s3": "ok"})
        return Reply(403, {"error": "SignatureDoesNotMatch"})


class Functions(Service):
    jwt_vars = ("JWT_SECRET", "SUPABASE_JWKS")

    def db_conninfo(self) -> str:
        return self.env["SUPABASE_DB_URL"]

    def resource(self, request: Request) -> Reply:
        if self.env.get("VERIFY_JWT", "").lower() != "true":
            return Reply(200, {"function": "ok"})
        return self.whoami(request)


class Meta(Service):
    def db_conninfo(self) -> Mapping[str, str]:
        return {
            "host": self.env["PG_META_DB_HOST"],
            "port": self.env["PG_META_DB_PORT"],
            "dbname": self.env["PG_META_DB_NAME"],
            "user": self.env["PG_META_DB_USER"],
            "password": self.env["PG_META_DB_PASSWORD"],
        }

    def routes(self) -> dict[str, Callable[[Request], Reply]]:
        return {"/query": self.query}

    def query(self, request: Request) -> Reply:
        """Studio's requests carry their connection encrypted with the shared CRYPTO_KEY;
        without one, postgres-meta uses its own (PG_META_DB_*)."""
        sealed = request.headers.get("x-connection-encrypted")
        if sealed is None:
            conninfo: Any = self.db_conninfo()
        else:
            try:
                conninfo = json.loads(unseal(self.env.get("CRYPTO_KEY", "SAMPLE_KEY"), sealed))
            except ValueError as exc:
                return Reply(400, {"error": f"connection: {exc}"})
        try:
            db_login(conninfo)
        except Exception as exc:
            return Reply(503, {"error": f"database login refused: {db_error(exc)}"})
        return Reply(200, {"result": "ok"})

    def resource(self, request: Request) -> Reply:
        return Reply(200, {"meta": "ok"})  # the gateway allows only the service role here


class Studio(Service):
    jwt_vars = ("AUTH_JWT_SECRET",)
    health_paths = ("/health", "/api/platform/profile")

    def check(self) -> str | None:
        """Studio reaches the database through postgres-meta, as its real counterpart."""
        conninfo = {
            "host": self.env["POSTGRES_HOST"],
            "port": self.env["POSTGRES_PORT"],
            "dbname": self.env["POSTGRES_DB"],
            "user": self.env.get("POSTGRES_USER_READ_WRITE", "postgres"),
            "password": self.env["POSTGRES_PASSWORD"],
        }
        sealed = seal(self.env.get("PG_META_CRYPTO_KEY", "SAMPLE_KEY"), json.dumps(conninfo))
        status, body = http_call(
            "POST", self.env["STUDIO_PG_META_URL"] + "/query", {"x-connection-encrypted": sealed}
        )
        return None if status == 200 else f"postgres-meta answered {status}: {body[:200]!r}"

    def resource(self, request: Request) -> Reply:
        return Reply(200, "<html><body>Supabase Studio (testbed)</body></html>")


class Realtime(Service):
    """Seeds tenant realtime-dev with its JWT secret, encrypted with DB_ENC_KEY."""

    jwt_vars = ("API_JWT_SECRET", "API_JWT_JWKS")
    tenant = "realtime-dev"
    tenant_path = f"/api/tenants/{tenant}/health"

    def db_conninfo(self) -> Mapping[str, str]:
        return {
            "host": self.env["DB_HOST"],
            "port": self.env["DB_PORT"],
            "dbname": self.env["DB_NAME"],
            "user": self.env["DB_USER"],
            "password": self.env["DB_PASSWORD"],
        }

    def start(self) -> None:
        if len(self.env.get("DB_ENC_KEY", "").encode()) != 16:
            raise SystemExit("DB_ENC_KEY must be exactly 16 bytes (AES-128 key)")
        if len(self.env.get("SECRET_KEY_BASE", "")) < 64:
            raise SystemExit("SECRET_KEY_BASE must be at least 64 bytes")
        wait_for_db(self.db_conninfo())
        db_login(
            self.db_conninfo(),
            "create table if not exists _realtime.tenants ("
            "external_id text primary key, jwt_secret text not null)",
        )
        stored = self.stored_secret()
        sealed = seal(self.env["DB_ENC_KEY"], self.env["API_JWT_SECRET"])
        if stored is None:
            db_login(
                self.db_conninfo(),
                "insert into _realtime.tenants values (%s, %s)",
                (self.tenant, sealed),
            )
        elif not isinstance(stored, Exception):  # re-seed; an undecryptable row stays broken
            db_login(
                self.db_conninfo(),
                "update _realtime.tenants set jwt_secret = %s where external_id = %s",
                (sealed, self.tenant),
            )

    def stored_secret(self) -> str | Exception | None:
        rows = db_login(
            self.db_conninfo(),
            "select jwt_secret from _realtime.tenants where external_id = %s",
            (self.tenant,),
        )
        if not rows:
            return None
        try:
            return unseal(self.env["DB_ENC_KEY"], rows[0][0])
        except ValueError as exc:
            return exc

    def check(self) -> str | None:
        try:
            stored = self.stored_secret()
        except Exception as exc:
            return f"database login refused: {db_error(exc)}"
        if stored is None:
            return "tenant realtime-dev missing"
        if isinstance(stored, Exception):
            return f"tenant realtime-dev: {stored}"
        return None

    def routes(self) -> dict[str, Callable[[Request], Reply]]:
        return {self.tenant_path: self.tenant_health}

    def tenant_health(self, request: Request) -> Reply:
        """The compose health check's URL: needs a JWT signed with the tenant's secret."""
        stored = self.stored_secret() if self.check() is None else None
        if not isinstance(stored, str):
            return self.health()
        try:
            verify_jwt(request.bearer() or "", [Key("HS256", secret=stored.encode())])
        except JwtError as exc:
            return Reply(403, {"error": f"signature_error: {exc}"})
        return Reply(200, {"status": "ok"})


class Supavisor(Service):
    """Creates its tenant once (pooler.exs), storing the pgbouncer password encrypted with
    VAULT_ENC_KEY in _supabase._supavisor; later .env changes never reach that copy."""

    jwt_vars = ("API_JWT_SECRET",)
    health_paths = ("/health", "/api/health")

    def db_conninfo(self) -> str:
        return self.env["DATABASE_URL"]

    def start(self) -> None:
        if len(self.env.get("VAULT_ENC_KEY", "")) != 32:
            raise SystemExit("Unknown cipher or invalid key size (VAULT_ENC_KEY must be 32 bytes)")
        sealed = seal(self.env["VAULT_ENC_KEY"], self.env["POSTGRES_PASSWORD"])
        wait_for_db(self.db_conninfo())
        db_login(
            self.db_conninfo(),
            "create table if not exists _supavisor.tenants (external_id text primary key,"
            " db_user text not null, db_password text not null);"
            " insert into _supavisor.tenants values (%s, 'pgbouncer', %s) on conflict do nothing",
            (self.env["POOLER_TENANT_ID"], sealed),
        )

    def check(self) -> str | None:
        tenant = self.env["POOLER_TENANT_ID"]
        try:
            rows = db_login(
                self.db_conninfo(),
                "select db_user, db_password from _supavisor.tenants where external_id = %s",
                (tenant,),
            )
        except Exception as exc:
            return f"database login refused: {db_error(exc)}"
        if not rows:
            return f"tenant {tenant} missing"
        try:
            password = unseal(self.env["VAULT_ENC_KEY"], rows[0][1])
        except ValueError as exc:
            return f"tenant {tenant}: {exc}"
        manager = {
            "host": self.env["POSTGRES_HOST"],
            "port": self.env["POSTGRES_PORT"],
            "dbname": self.env["POSTGRES_DB"],
            "user": rows[0][0],
            "password": password,
        }
        try:
            db_login(manager)
        except Exception as exc:
            return f"tenant {tenant} login refused: {db_error(exc)}"
        return None


class Imgproxy(Service):
    def resource(self, request: Request) -> Reply:
        return Reply(200, {"imgproxy": "ok"})


def basic_auth_matches(request: Request, expected: str) -> bool:
    value = request.headers.get("authorization", "")
    if value[:6].lower() != "basic ":
        return False
    try:
        given = base64.b64decode(value[6:].strip()).decode()
    except ValueError:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def http_call(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        return 502, f"upstream unreachable: {exc}".encode()
    finally:
        conn.close()


class Gateway(Service):
    """api-gw: Envoy's routes and key checks (volumes/api/envoy/lds.template.yaml)."""

    # (path prefix, prefix stripped before forwarding, upstream service, access), first
    # match wins; access: open | key (apikey) | service_key (service role apikey) | blocked
    ROUTES = (
        ("/auth/v1/verify", "/auth/v1", "auth", "open"),
        ("/auth/v1/callback", "/auth/v1", "auth", "open"),
        ("/auth/v1/authorize", "/auth/v1", "auth", "open"),
        ("/auth/v1/.well-known/jwks.json", "/auth/v1", "auth", "open"),
        ("/functions/v1/", "/functions/v1", "functions", "open"),
        ("/storage/v1/", "/storage/v1", "storage", "open"),
        ("/auth/v1/", "/auth/v1", "auth", "key"),
        ("/rest/v1/", "/rest/v1", "rest", "key"),
        ("/graphql/v1", "/graphql/v1", "rest", "key"),
        ("/realtime/v1/api/tenants", "/realtime/v1", "realtime", "blocked"),
        ("/realtime/v1/", "/realtime/v1", "realtime", "key"),
        ("/pg/", "/pg", "meta", "service_key"),
    )

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        # TESTBED_UPSTREAMS: "auth=http://127.0.0.1:55404,rest=..." (Envoy's cds.yaml)
        pairs = (item.split("=", 1) for item in self.env["TESTBED_UPSTREAMS"].split(","))
        self.upstreams = {name.strip(): url.strip() for name, url in pairs}
        e = self.env.get
        # apikey -> (role, the JWT sent upstream when the request has none of its own)
        self.api_keys: dict[str, tuple[str, str]] = {}
        for key, role, jwt in (
            (e("ANON_KEY", ""), "anon", e("ANON_KEY", "")),
            (e("SERVICE_ROLE_KEY", ""), "service_role", e("SERVICE_ROLE_KEY", "")),
            (e("SUPABASE_PUBLISHABLE_KEY", ""), "anon", e("ANON_KEY_ASYMMETRIC", "")),
            (e("SUPABASE_SECRET_KEY", ""), "service_role", e("SERVICE_ROLE_KEY_ASYMMETRIC", "")),
        ):
            if key:
                self.api_keys[key] = (role, jwt)
        self.dashboard = f"{e('DASHBOARD_USERNAME', '')}:{e('DASHBOARD_PASSWORD', '')}"

    def resource(self, request: Request) -> Reply:
        path = request.path
        for prefix, strip, service, access in self.ROUTES:
            if path.startswith(prefix):
                return self.forward(request, service, path[len(strip) :], access)
        if not basic_auth_matches(request, self.dashboard):
            return Reply(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="Supabase"'})
        return self.forward(request, "studio", path, "open")

    def forward(self, request: Request, service: str, path: str, access: str) -> Reply:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "apikey", "content-type")
        }
        apikey = request.headers.get("apikey", "")
        known = self.api_keys.get(apikey) if apikey else None
        if access == "blocked":
            return Reply(403, {"message": "forbidden"})
        if access != "open" and known is None:
            return Reply(401, {"message": "Invalid authentication credentials"})
        openapi_root = service == "rest" and path in ("", "/")
        if (access == "service_key" or openapi_root) and known and known[0] != "service_role":
            return Reply(403, {"message": "forbidden: service role key required"})
        if known and (not request.bearer() or request.bearer() == apikey):
            headers["authorization"] = f"Bearer {known[1]}"
        status, body = http_call(
            request.method, self.upstreams[service] + (path or "/"), headers, request.body or None
        )
        try:
            return Reply(status, json.loads(body))
        except ValueError:
            return Reply(status, body.decode(errors="replace"))


SERVICES: dict[str, Callable[[Env], Service]] = {
    "auth": Auth,
    "rest": Rest,
    "storage": Storage,
    "functions": Functions,
    "meta": Meta,
    "studio": Studio,
    "realtime": Realtime,
    "supavisor": Supavisor,
    "imgproxy": Imgproxy,
    "api-gw": Gateway,
}


def serve(service: Service, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = Request(self.command, self.path, headers, self.rfile.read(length))
            try:
                reply = service.handle(request)
            except Exception as exc:
                reply = Reply(500, {"error": f"{type(exc).__name__}: {exc}"})
            if isinstance(reply.body, str):
                data, ctype = reply.body.encode(), "text/html; charset=utf-8"
            else:
                data, ctype = json.dumps(reply.body).encode(), "application/json"
            self.send_response(reply.status)
            for name, value in {"Content-Type": ctype, **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if os.environ.get("TESTBED_ACCESS_LOG"):
                super().log_message(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"standin {type(service).__name__.lower()} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=SERVICES)
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    service = SERVICES[args.role](os.environ)
    service.start()
    serve(service, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
