"""A Supabase-shaped deployment on the local Docker engine, for tests (see README.md).

    tb = Testbed.create(tmp_path, port_base=25400, project_name="tb-auth")
    tb.up()
    try:
        assert tb.http("GET", "/rest/v1/items", {"apikey": tb.env()["ANON_KEY"]}).status == 200
    finally:
        tb.down()

The compose command is ROTATOR_COMPOSE_COMMAND (split like a shell would), else
`docker compose` (Compose v2, which upstream's files need).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tests.testbed.timing import Timing, placeholders

TEMPLATE = Path(__file__).resolve().parent / "project"
UPSTREAM_DB_SQL = (
    Path(__file__).resolve().parents[3] / "shared/reference/supabase-docker/volumes/db"
)
"""Upstream's volumes/db/*.sql (../shared beside the repository). Where present, the db
container mounts these read-only instead of the template's own fallbacks."""
UPSTREAM_SQL_FILES = ("webhooks.sql", "jwt.sql", "_supabase.sql", "logs.sql", "pooler.sql")
"""roles.sql and realtime.sql are not in ../shared (see its SOURCE.md): always the template's."""
READ_ONLY_PASSWORD_LINE = "ALTER USER supabase_read_only_user WITH PASSWORD :'pgpass';\n"
DEFAULT_IMAGE = os.environ.get("TESTBED_IMAGE", "rotator-testbed") + ":latest"
"""build-images.sh tags its build NAME:latest, NAME from TESTBED_IMAGE, so checkouts side by side
can each run their own image."""
DEFAULT_PORT_BASE = 25400  # below the ephemeral range (32768+), so no client socket holds one
PORT_SPAN = 20  # ports reserved per testbed: base .. base+19
PORT_OFFSETS = {
    "api-gw": 0,
    "db": 1,
    "pooler-transaction": 2,
    "api-gw-https": 3,
    "studio": 4,
    "auth": 5,
    "rest": 6,
    "realtime": 7,
    "storage": 8,
    "imgproxy": 9,
    "meta": 10,
    "meta-admin": 11,  # postgres-meta opens PG_META_PORT + 1 too (metrics)
    "functions": 12,
    "supavisor": 13,
    "analytics": 14,
    "vector": 15,
}
PORT_LOCKS = Path(tempfile.gettempdir()) / "rotator-testbed-ports"
START_LOCK = Path(tempfile.gettempdir()) / "rotator-testbed-start.lock"
HEALTH_PATHS = {"rest": "/ready", "storage": "/status", "supavisor": "/api/health"}
LOGS_COMPOSE_FILE = "docker-compose.logs.yml"
NO_HEALTH_CHECK = frozenset({"meta"})
"""As upstream: compose can only say these run. `wait_healthy` also waits for them to answer."""
DB_CONTAINER_SOCKET = "/var/run/postgresql"


class TestbedError(Exception):
    __test__ = False


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def image_exists(image: str = DEFAULT_IMAGE) -> bool:
    """Whether the testbed image is built (tests/testbed/build-images.sh)."""
    try:
        result = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    except FileNotFoundError:
        return False
    return result.returncode == 0


def compose_command() -> list[str]:
    return shlex.split(os.environ.get("ROTATOR_COMPOSE_COMMAND") or "docker compose")


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments skipped, one level of quotes removed)."""
    return parse_env(path.read_text())


def parse_env(text: str) -> dict[str, str]:
    """read_env for text already read."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return values


@dataclass
class Testbed:
    """One deployment directory and the compose project running from it."""

    __test__: ClassVar[bool] = False

    directory: Path
    project_name: str
    port_base: int
    container_prefix: str
    compose: list[str]
    timing: Timing = "fast"

    @classmethod
    def create(
        cls,
        tmpdir: Path | str,
        *,
        port_base: int | None = None,
        project_name: str = "supabase-testbed",
        container_prefix: str | None = None,
        image: str | None = None,
        new_api_keys: bool = False,
        logs: bool = False,
        read_only_password: bool = False,
        timing: Timing = "fast",
        upstream_sql: bool = True,
        initdb_args: str | None = None,
    ) -> Testbed:
        """Copy the template into tmpdir/<project_name> and render it.

        Without port_base, the first free block of PORT_SPAN ports from
        ROTATOR_TESTBED_PORT_BASE (default 25400) is claimed, with a lock file that
        down() releases, so concurrent test processes get different blocks.

        - container_prefix defaults to "<project_name>-" so testbeds can run side by side;
          pass "" for upstream's exact container names.
        - new_api_keys: what utils/add-new-auth-keys.sh does: the opaque and asymmetric keys
          in .env, and the four JWKS lines of docker-compose.yml uncommented.
        - logs: docker-compose.logs.yml (analytics, vector) added through COMPOSE_FILE.
        - read_only_password: roles.sql gives supabase_read_only_user POSTGRES_PASSWORD too,
          as some installs do (upstream leaves it without one).
        - timing: "real" makes each stand-in take the real service's start-up time and
          uses upstream's health-check intervals; "fast" neither (timing.py).
        - upstream_sql: mount upstream's volumes/db/*.sql from ../shared when it is there
          (see `sql_source`); False, or no ../shared, uses the template's own.
        - initdb_args: the db service's POSTGRES_INITDB_ARGS, as an install sets it (e.g.
          "-E SQL_ASCII --no-locale"); None keeps the image's UTF8 cluster.
        """
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project_name):
            raise TestbedError(f"project name {project_name!r}: use [a-z0-9_-] only")
        values = placeholders(timing)  # refuses an unknown timing before anything is made
        base = _claim_ports(port_base)
        try:
            directory = Path(tmpdir) / project_name
            shutil.copytree(TEMPLATE, directory)
            prefix = f"{project_name}-" if container_prefix is None else container_prefix
            tb = cls(directory, project_name, base, prefix, compose_command(), timing)
            image = image or os.environ.get("ROTATOR_TESTBED_IMAGE", DEFAULT_IMAGE)
            tb._render({"IMAGE": image, **values}, new_api_keys=new_api_keys, logs=logs)
            if read_only_password:
                with (directory / "volumes/db/roles.sql").open("a") as roles:
                    roles.write(READ_ONLY_PASSWORD_LINE)
            if initdb_args is not None:
                tb._set_initdb_args(initdb_args)
            if upstream_sql and all((UPSTREAM_DB_SQL / f).is_file() for f in UPSTREAM_SQL_FILES):
                tb._mount_upstream_sql()
        except BaseException:
            (PORT_LOCKS / str(base)).unlink(missing_ok=True)
            raise
        return tb

    def _render(self, values: dict[str, str], *, new_api_keys: bool, logs: bool) -> None:
        tokens = {
            "PROJECT_NAME": self.project_name,
            "CONTAINER_PREFIX": self.container_prefix,
            **values,
            **{f"PORT_{k.upper().replace('-', '_')}": str(self.port(k)) for k in PORT_OFFSETS},
        }
        env_file = self.directory / ".env"
        env = env_file.read_text()
        for name in ("docker-compose.yml", LOGS_COMPOSE_FILE):
            path = self.directory / name
            text = path.read_text()
            for token, value in tokens.items():
                text = text.replace(f"@@{token}@@", value)
            if new_api_keys and name == "docker-compose.yml":
                # add-new-auth-keys.sh uncomments these four in docker-compose.yml
                text = re.sub(
                    r"(?m)^(\s*)#(GOTRUE_JWT_KEYS|API_JWT_JWKS|JWT_JWKS|SUPABASE_JWKS):",
                    r"\1\2:",
                    text,
                )
            path.write_text(text)
        for token, value in tokens.items():
            env = env.replace(f"@@{token}@@", value)
        if new_api_keys:
            env = _replace_env_values(env, _new_api_keys(parse_env(env)["JWT_SECRET"]))
        if logs:  # as upstream enables its overrides
            env = _replace_env_values(
                env, {"COMPOSE_FILE": f"docker-compose.yml:{LOGS_COMPOSE_FILE}"}
            )
        env_file.write_text(env)
        env_file.chmod(0o600)

    def _set_initdb_args(self, args: str) -> None:
        path = self.directory / "docker-compose.yml"
        anchor = "      JWT_EXP: ${JWT_EXPIRY}\n"
        text = path.read_text()
        if text.count(anchor) != 1:
            raise TestbedError("docker-compose.yml: the db service's JWT_EXP line moved")
        path.write_text(text.replace(anchor, anchor + f"      POSTGRES_INITDB_ARGS: {args}\n"))

    def _mount_upstream_sql(self) -> None:
        """Point the db's init mounts at upstream's own files, read-only."""
        path = self.directory / "docker-compose.yml"
        text = path.read_text()
        for name in UPSTREAM_SQL_FILES:
            source = f"- ./volumes/db/{name}:"
            line = next(line for line in text.splitlines() if source in line)
            target = line.split(":", 2)[1]  # "- ./volumes/db/x.sql:/docker-entrypoint...:Z"
            text = text.replace(
                line, line.split("-", 1)[0] + f"- {UPSTREAM_DB_SQL / name}:{target}:ro"
            )
        path.write_text(text)

    @property
    def sql_source(self) -> str:
        """Where the db's init SQL comes from: upstream's files, or the testbed's own."""
        text = (self.directory / "docker-compose.yml").read_text()
        if str(UPSTREAM_DB_SQL) in text:
            return f"upstream {UPSTREAM_DB_SQL} (roles.sql, realtime.sql: the testbed's)"
        return "the testbed's own volumes/db/*.sql (../shared absent or upstream_sql=False)"

    # --- lifecycle -------------------------------------------------------------------

    def up(self, timeout: float = 120) -> None:
        """`compose up -d`, then wait until every container of the project is running and
        healthy (those without a health check: running).

        One testbed starts at a time on this machine (START_LOCK): a start is mostly CPU
        (initdb, postgres-meta's Node.js, a dozen Pythons), so parallel test processes
        starting theirs together only make each slower, past its timeout on 2 cores.
        `timeout` counts from when this testbed's turn comes."""
        with _start_turn():
            self._up(timeout)

    def _up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            started = self.run_compose("up", "-d", timeout=timeout, check=False)
            left_out = [s for s, state in self.container_states().items() if state == "created"]
            if started.returncode == 0 and not left_out:
                break
            # A dependency still starting when its health retries ran out (a loaded machine;
            # upstream's supabase#44376): compose gives up on its dependents, as it would on a
            # real install. It turns healthy later; then another `up` starts the rest.
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"compose up left {left_out or 'an error'}: {started.stderr.strip()[-2000:]}"
                )
            time.sleep(2)
        self.wait_healthy(max(deadline - time.monotonic(), 10))

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.container_states()
            waiting = {s: st for s, st in states.items() if st not in ("healthy", "running")}
            crashed = [s for s, st in waiting.items() if st in ("exited", "dead", "crash-loop")]
            if states and not waiting:
                silent = [s for s in states if s in NO_HEALTH_CHECK and not self.answers(s)]
                waiting = {s: "running, not answering yet" for s in silent}
                if not waiting:
                    return
            if crashed or time.monotonic() > deadline:
                logs = {s: self.logs(s, tail=15) for s in waiting}
                raise TestbedError(f"testbed not healthy: {waiting}; recent logs: {logs}")
            time.sleep(0.5)

    def answers(self, service: str) -> bool:
        """A service without a compose health check (meta) answers its own health URL."""
        try:
            return self.health(service).status == 200
        except OSError:
            return False

    def logs(self, service: str, tail: int = 50) -> str:
        ids = self._containers(service)
        if not ids:
            return ""
        result = self._run(["docker", "logs", "--tail", str(tail), ids[0]], check=False)
        return (result.stdout + result.stderr).strip()

    def down(self) -> None:
        """Remove this project's containers and volumes, and the database's data dir."""
        self.run_compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        leftover = self._containers()
        if leftover:
            self._run(["docker", "rm", "-f", "-v", *leftover], check=False)
        for sub in ("volumes/db/data", "volumes/storage"):
            shutil.rmtree(self.directory / sub, ignore_errors=True)
        (PORT_LOCKS / str(self.port_base)).unlink(missing_ok=True)

    def run_compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the compose command in the deployment directory, e.g. ("up", "-d", "auth")."""
        return self._run([*self.compose, *args], timeout=timeout, check=check)

    def _run(
        self, argv: list[str], *, timeout: float = 120, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        # Shell variables override .env in compose: keep the caller's out of the project.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        for key in read_env(self.directory / ".env"):
            env.pop(key, None)
        result = subprocess.run(
            argv,
            cwd=self.directory,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise TestbedError(f"{shlex.join(argv[:4])} failed: {result.stderr.strip()[-2000:]}")
        return result

    # --- where things are --------------------------------------------------------------

    def port(self, service: str) -> int:
        return self.port_base + PORT_OFFSETS[service]

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    def db_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port("db")

    def env(self) -> dict[str, str]:
        """The deployment's .env as it is now."""
        return read_env(self.directory / ".env")

    def container_name(self, service: str) -> str:
        names = {
            "api-gw": "supabase-envoy",
            "functions": "supabase-edge-functions",
            "realtime": "realtime-dev.supabase-realtime",
            "supavisor": "supabase-pooler",
        }
        return self.container_prefix + names.get(service, f"supabase-{service}")

    def _containers(self, service: str | None = None) -> list[str]:
        argv = [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={self.project_name}",
        ]
        if service:
            argv += ["--filter", f"label=com.docker.compose.service={service}"]
        return self._run(argv).stdout.split()

    def _inspect(self) -> dict[str, dict[str, Any]]:
        """Service -> `docker inspect` of its container (one container per service)."""
        ids = self._containers()
        if not ids:
            return {}
        return {
            info["Config"]["Labels"]["com.docker.compose.service"]: info
            for info in json.loads(self._run(["docker", "inspect", *ids]).stdout)
        }

    def container_ids(self) -> dict[str, str]:
        """Service -> its container's id."""
        return {service: info["Id"] for service, info in self._inspect().items()}

    def container_states(self) -> dict[str, str]:
        """Service -> "healthy" / "unhealthy" / "starting" (health check), else the
        container's status ("running", "restarting", "exited", ...), or "crash-loop"
        once it has restarted three times."""
        states = {}
        for service, info in self._inspect().items():
            state = info["State"]
            health = state.get("Health", {}).get("Status")
            if state["Status"] == "running" and health:
                states[service] = health
            elif state["Status"] == "restarting" and info["RestartCount"] >= 3:
                states[service] = "crash-loop"
            else:
                states[service] = state["Status"]
        return states

    # --- probes ------------------------------------------------------------------------

    def get(self, service: str, path: str, headers: dict[str, str] | None = None) -> Response:
        """GET a path on one service directly (not through the gateway)."""
        return _request("GET", self.service_url(service) + path, headers or {}, None)

    def health(self, service: str) -> Response:
        """The stand-in's own health answer (200, or 503 with the reason in the body)."""
        return self.get(service, HEALTH_PATHS.get(service, "/health"))

    def fingerprints(self, service: str) -> dict[str, str]:
        """sha256(value)[:16] of every environment variable the service started with."""
        return dict(self.get(service, "/fingerprints").json())

    def http(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """A request through the gateway (api-gw), like a client of the deployment."""
        return _request(method, self.service_url("api-gw") + path, headers or {}, body)

    def psql(self, sql: str, *, user: str = "supabase_admin", dbname: str = "postgres") -> str:
        """Run SQL inside the db container over its unix socket (trusted, no password),
        the recovery path; the SQL travels on stdin. Returns unaligned tuples."""
        argv = ["docker", "exec", "-i", "-u", "postgres", self.container_name("db"), "psql",
                "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", DB_CONTAINER_SOCKET,
                "-U", user, "-d", dbname]  # fmt: skip
        return self._run(argv, stdin=sql).stdout


def fingerprint(value: str) -> str:
    """What /fingerprints reports for a value."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _request(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
    import http.client

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return Response(response.status, response.read(), dict(response.getheaders()))
    finally:
        conn.close()


@contextlib.contextmanager
def _start_turn() -> Iterator[None]:
    """Hold START_LOCK (an flock: released by the kernel if the holder dies)."""
    with START_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _claim_ports(port_base: int | None) -> int:
    """Lock a block of ports that nothing listens on; return its first port."""
    first = port_base or int(os.environ.get("ROTATOR_TESTBED_PORT_BASE", DEFAULT_PORT_BASE))
    PORT_LOCKS.mkdir(exist_ok=True)
    for base in [first] if port_base else range(first, first + 10 * PORT_SPAN, PORT_SPAN):
        lock = PORT_LOCKS / str(base)
        if _lock_held(lock):
            continue
        lock.unlink(missing_ok=True)  # stale: its process is gone
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue  # another process won the race
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if not any(_port_in_use(p) for p in range(base, base + PORT_SPAN)):
            return base
        lock.unlink()
    raise TestbedError(f"no free block of {PORT_SPAN} ports from {first} (other testbeds?)")


def _lock_held(lock: Path) -> bool:
    try:
        owner = int(lock.read_text() or os.getpid())  # empty: being written right now
        os.kill(owner, 0)
    except PermissionError:
        return True  # a process of another user
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False
    return True


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _replace_env_values(text: str, values: dict[str, str]) -> str:
    """Set KEY=value lines (the key's first line), appending keys that are missing."""
    lines = text.splitlines(keepends=True)
    for key, value in values.items():
        index = next((i for i, line in enumerate(lines) if line.startswith(f"{key}=")), None)
        if index is None:
            lines.append(f"{key}={value}\n")
        else:
            lines[index] = f"{key}={value}\n"
    return "".join(lines)


def _new_api_keys(jwt_secret: str) -> dict[str, str]:
    """The values utils/add-new-auth-keys.sh generates, from the deployment's JWT_SECRET."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def opaque(prefix: str) -> str:
        body = prefix + b64url(secrets.token_bytes(17))[:22]
        digest = hashlib.sha256(f"supabase-self-hosted|{body}".encode()).digest()
        return f"{body}_{b64url(digest)[:8]}"

    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.private_numbers()
    kid = str(uuid.uuid4())  # crypto.randomUUID(), as add-new-auth-keys.sh
    public_jwk = {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "ext": True,
                  "crv": "P-256", "x": b64url(numbers.public_numbers.x.to_bytes(32, "big")),
                  "y": b64url(numbers.public_numbers.y.to_bytes(32, "big"))}  # fmt: skip
    oct_jwk = {"kty": "oct", "k": b64url(jwt_secret.encode()), "alg": "HS256"}
    private_jwk = {**public_jwk, "key_ops": ["sign", "verify"],
                   "d": b64url(numbers.private_value.to_bytes(32, "big"))}  # fmt: skip
    public_jwk["key_ops"] = ["verify"]
    iat = int(time.time())

    def sign(role: str) -> str:
        claims = {"role": role, "iss": "supabase", "iat": iat, "exp": iat + 5 * 365 * 24 * 3600}
        return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid})

    return {
        "SUPABASE_PUBLISHABLE_KEY": opaque("sb_publishable_"),
        "SUPABASE_SECRET_KEY": opaque("sb_secret_"),
        "JWT_KEYS": json.dumps([private_jwk, oct_jwk], separators=(",", ":")),
        "JWT_JWKS": json.dumps({"keys": [public_jwk, oct_jwk]}, separators=(",", ":")),
        "ANON_KEY_ASYMMETRIC": sign("anon"),
        "SERVICE_ROLE_KEY_ASYMMETRIC": sign("service_role"),
    }
