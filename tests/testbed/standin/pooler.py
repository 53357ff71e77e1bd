"""supavisor: the pooler's tenant, its PostgreSQL listener and its management API.

- At start (pooler.exs): the tenant POOLER_TENANT_ID is created in _supabase._supavisor
  only if absent, with manager user pgbouncer and POSTGRES_PASSWORD stored encrypted with
  VAULT_ENC_KEY (exactly 32 bytes, else the start fails as Erlang's crypto does). Later
  .env changes never reach the stored copy (pitfall 3).
- A PostgreSQL-protocol listener on 127.0.0.1:PROXY_PORT_TRANSACTION for users
  `<db user>.<tenant>`: it refuses (FATAL, like Supavisor) when the tenant is unknown, its
  stored password cannot be decrypted, or the manager login is refused; otherwise it
  forwards the session to the database with the user rewritten, so PostgreSQL itself checks
  the client's password (SCRAM passes through).
- HTTP: /api/health (503 while the tenant is broken) and
  POST /api/tenants/<id>/update_auth_credentials {db_user, db_password} with an HS256
  bearer signed with API_JWT_SECRET (addendum A2): the stored manager credentials change,
  no restart.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping
from typing import Any

from .db import Conninfo, connect, db_error, db_login, db_run, wait_for_db
from .seal import SealError, vault_decrypt, vault_encrypt, vault_key
from .service import Route, Service
from .tokens import Jwk, JwtError, check_claims, parse_token, signature_valid
from .web import Reply, Request

SCHEMA = [
    (
        """create table if not exists _supavisor.tenants (
        external_id text primary key, db_host text not null, db_port integer not null,
        db_database text not null, require_user boolean not null default false,
        auth_query text, inserted_at timestamptz not null default now())""",
        (),
    ),
    (
        """create table if not exists _supavisor.users (
        tenant_external_id text not null references _supavisor.tenants (external_id)
            on delete cascade,
        db_user text not null, db_pass_encrypted text not null,
        is_manager boolean not null default false, mode_type text not null,
        pool_size integer not null, primary key (tenant_external_id, db_user))""",
        (),
    ),
]
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877104, 80877102, 196608


class TenantError(Exception):
    """The tenant cannot serve a client; the message is what Supavisor would say."""


def error_response(code: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def parse_startup(body: bytes) -> dict[str, str]:
    parts = body.split(b"\0")
    pairs = [p.decode() for p in parts if p]
    return dict(zip(pairs[::2], pairs[1::2], strict=False))


def startup_message(params: Mapping[str, str]) -> bytes:
    body = struct.pack("!I", PROTOCOL_3)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Supavisor(Service):
    health_paths = ("/health", "/api/health")

    def db_conninfo(self) -> Conninfo:
        return self.env["DATABASE_URL"]

    def metadata(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on the metadata database through a connection kept open, as
        Supavisor's Ecto pool keeps its own: it outlives an ALTER ROLE of supabase_admin
        (existing sessions do), so the API still works between a password change and the
        pooler's recreate. A broken connection is replaced with a new login."""
        with self._metadata_lock:
            for attempt in (1, 2):
                try:
                    if self._metadata_conn is None or self._metadata_conn.closed:
                        self._metadata_conn = connect(self.db_conninfo())
                    with self._metadata_conn.cursor() as cur:
                        cur.execute(query, params or None)
                        rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description else []
                    self._metadata_conn.commit()
                    return rows
                except Exception:
                    with contextlib.suppress(Exception):
                        self._metadata_conn.close()
                    self._metadata_conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def start(self) -> None:
        try:
            vault_key(self.env.get("VAULT_ENC_KEY", ""))
        except SealError as exc:
            raise SystemExit(f'(ErlangError) {{:badarg, ~c"{exc}"}} (VAULT_ENC_KEY)') from exc
        wait_for_db(self.db_conninfo())
        self._metadata_lock = threading.Lock()
        self._metadata_conn: Any = connect(self.db_conninfo())
        env = self.env
        tenant = env["POOLER_TENANT_ID"]
        sealed = vault_encrypt(env["POSTGRES_PASSWORD"], env["VAULT_ENC_KEY"])
        db_run(
            self.db_conninfo(),
            [
                *SCHEMA,
                (
                    "insert into _supavisor.tenants (external_id, db_host, db_port, db_database,"
                    " auth_query) values (%s, %s, %s, %s, 'SELECT * FROM pgbouncer.get_auth($1)')"
                    " on conflict do nothing",
                    (
                        tenant,
                        env.get("POSTGRES_HOST") or "db",
                        int(env["POSTGRES_PORT"]),
                        env["POSTGRES_DB"],
                    ),
                ),
                (
                    "insert into _supavisor.users (tenant_external_id, db_user, db_pass_encrypted,"
                    " is_manager, mode_type, pool_size) select %s, 'pgbouncer', %s, true, %s, %s"
                    " where not exists"
                    " (select 1 from _supavisor.users where tenant_external_id = %s)",
                    (
                        tenant,
                        sealed,
                        env.get("POOLER_POOL_MODE", "transaction"),
                        int(env.get("POOLER_DEFAULT_POOL_SIZE") or 20),
                        tenant,
                    ),
                ),
            ],
        )

    # --- the tenant ---------------------------------------------------------------------

    def tenant(self, external_id: str) -> tuple[dict[str, str], str]:
        """The tenant's database address and the manager's login (decrypted, checked)."""
        try:
            rows = db_login(
                self.db_conninfo(),
                "select t.db_host, t.db_port, t.db_database, u.db_user,"
                " u.db_pass_encrypted from _supavisor.tenants t join _supavisor.users u"
                " on u.tenant_external_id = t.external_id and u.is_manager"
                " where t.external_id = %s",
                (external_id,),
            )
        except Exception as exc:
            raise TenantError(f"metadata database: {db_error(exc)}") from exc
        if not rows:
            raise TenantError("Tenant or user not found")
        host, port, database, user, sealed = rows[0]
        try:
            password = vault_decrypt(sealed, self.env["VAULT_ENC_KEY"])
        except SealError as exc:
            raise TenantError(f"tenant {external_id}: {exc}") from exc
        address = {"host": str(host), "port": str(port), "dbname": str(database)}
        try:
            db_login({**address, "user": str(user), "password": password})
        except Exception as exc:
            raise TenantError(f"tenant {external_id} manager {user}: {db_error(exc)}") from exc
        return address, str(user)

    def check(self) -> str | None:
        try:
            self.tenant(self.env["POOLER_TENANT_ID"])
        except TenantError as exc:
            return str(exc)
        return None

    # --- HTTP ---------------------------------------------------------------------------

    def routes(self) -> dict[str, Route]:
        path = f"/api/tenants/{self.env['POOLER_TENANT_ID']}/update_auth_credentials"
        return {path: self.update_auth_credentials}

    def update_auth_credentials(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply(405, {"error": "method not allowed"})
        try:
            token = parse_token(request.bearer() or "")
            key = Jwk("oct", alg="HS256", secret=self.env.get("API_JWT_SECRET", "").encode())
            if token.alg != "HS256" or not signature_valid(token, key):
                raise JwtError("invalid signature")
            check_claims(token.claims)
        except JwtError as exc:
            return Reply(403, {"error": f"Forbidden: {exc}"})
        body = request.json() or {}
        user, password = body.get("db_user"), body.get("db_password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            return Reply(422, {"errors": {"detail": "db_user and db_password are required"}})
        tenant = self.env["POOLER_TENANT_ID"]
        sealed = vault_encrypt(password, self.env["VAULT_ENC_KEY"])
        rows = self.metadata(
            "update _supavisor.users set db_user = %s, db_pass_encrypted = %s"
            " where tenant_external_id = %s and is_manager returning db_user",
            (user, sealed, tenant),
        )
        if not rows:
            return Reply(404, {"errors": {"detail": "Not Found"}})
        return Reply(200, {"data": {"external_id": tenant, "db_user": user}})

    # --- the PostgreSQL listener -------------------------------------------------------

    def open_listeners(self) -> None:
        port = int(self.env["PROXY_PORT_TRANSACTION"])
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                service.proxy(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"standin supavisor: transaction mode on 127.0.0.1:{port}", flush=True)

    def proxy(self, client: socket.socket) -> None:
        try:
            while True:
                length, code = struct.unpack("!II", read_exact(client, 8))
                body = read_exact(client, length - 8)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    client.sendall(b"N")  # no TLS here: the client goes on in plain text
                    continue
                break
            if code != PROTOCOL_3:
                return  # a cancel request, or a protocol this listener does not speak
            params = parse_startup(body)
            user, _, tenant = params.get("user", "").rpartition(".")
            if not user or not tenant:
                client.sendall(error_response("XX000", "Tenant or user not found"))
                return
            try:
                address, _manager = self.tenant(tenant)
            except TenantError as exc:
                client.sendall(error_response("XX000", str(exc)))
                return
            upstream = socket.create_connection((address["host"], int(address["port"])), 5)
            upstream.sendall(startup_message({**params, "user": user}))
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
            pipe(client, upstream)
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            client.close()
