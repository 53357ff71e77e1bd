"""End-to-end fixtures: the `rotator` command, as a subprocess, against a running testbed.

A `Rig` is one testbed plus the way to run rotator on it. `rotate()` snapshots the
deployment (the `.env` bytes, which container holds which value), runs
`rotator rotate SECRET --yes`, and returns a `Rotation`; `Rotation.check()` then proves
what issue #3 asks of every rotation:

- every service is healthy (compose health checks and the stand-ins' own answers);
- the new values are accepted and the old refused wherever a consumer can be probed
  (database logins of every login role, API keys, JWTs, basic auth, S3 keys, through the
  gateway);
- `.env` changed exactly in the rotated keys' lines;
- no container holds an old value, and every container that held one holds the new one;
- the audit log has the run, the journal is gone, the backup is the old `.env`;
- `rotator verify` agrees;
- the official client (tests/testbed/client_probe.py) signs up, signs in, reads and
  refreshes through the gateway before and after the rotation, and the session from before
  survives it. Its report is printed and attached to the test's report ("client probe").
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psycopg
import pytest

from tests.conftest import service_missing
from tests.testbed.client_probe import ProbeReport, probe
from tests.testbed.testbed import DEFAULT_IMAGE, Testbed, fingerprint, image_exists
from tests.testbed.timing import Timing

REPO = Path(__file__).resolve().parents[2]
COMPOSE_V2 = "docker compose"
ROTATION_TIMEOUT_S = 300.0
SERVICES = frozenset(
    {"studio", "api-gw", "auth", "rest", "realtime", "storage", "imgproxy", "meta",
     "functions", "db", "supavisor"}
)  # fmt: skip
NO_HEALTH_CHECK = frozenset({"meta"})  # as upstream: "running" is all compose can say
HTTP_SERVICES = ("auth", "rest", "storage", "functions", "meta", "studio", "supavisor",
                 "realtime", "imgproxy", "api-gw")  # fmt: skip
MIN_NEEDLE = 8  # shorter values (ports, flags) match by accident
PROBE_LOG: list[str] = []
"""The client probe reports of the running test (the autouse fixture below attaches them)."""
SESSIONS_REVOKED = re.compile(r"revoked \d+ session\(s\)")
RESULT_LINE = re.compile(r"Rotation (r-[0-9a-f]+) of (\S+) finished and verified\.")
# Variables of ours that would steer rotator somewhere else than the testbed.
ROTATOR_STEERING = ("ROTATOR_GATEWAY_URL", "ROTATOR_STATE_DIR", "ROTATOR_PROJECT", "ROTATOR_DEBUG")


# --------------------------------------------------------------------------- testbeds


def require_docker() -> None:
    try:
        engine = subprocess.run(["docker", "info"], capture_output=True, check=False)
    except FileNotFoundError:
        service_missing("no docker command")
    if engine.returncode != 0:
        service_missing("no Docker engine (docker info failed)")
    if not image_exists():
        service_missing(f"image {DEFAULT_IMAGE} not built (tests/testbed/build-images.sh)")


@dataclass
class Rig:
    """One running testbed and the compose command rotator uses on it."""

    tb: Testbed
    compose: str
    probe_before: ProbeReport | None = None
    last_probe: ProbeReport | None = None
    user_id: str = ""
    """A user that signed up through the client probe, for tokens the tests mint."""
    last_stdout: str = ""
    """What the last `rotate` printed."""

    @property
    def directory(self) -> Path:
        return self.tb.directory

    @property
    def env_path(self) -> Path:
        return self.tb.directory / ".env"

    def rotator_env(self, compose: str | None = None) -> dict[str, str]:
        """Our environment minus anything that would shadow `.env` or steer rotator."""
        keys = set(self.tb.env())
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in keys and not k.startswith("COMPOSE_") and k not in ROTATOR_STEERING
        }
        env["ROTATOR_COMPOSE_COMMAND"] = compose or self.compose
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "core.cli", *args, "--project", str(self.directory)]

    def run(
        self, *args: str, compose: str | None = None, timeout: float = ROTATION_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=REPO,
            env=self.rotator_env(compose),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, compose: str | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=REPO,
            env=self.rotator_env(compose),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def snapshot(self) -> Snapshot:
        """The deployment before a rotation, and the client probe's run before it."""
        self.probe_before = self.client_probe("before the rotation")
        return Snapshot(self.env_path.read_bytes(), self.tb.env(), container_strings(self.tb))

    def client_probe(self, label: str, *, revoked: bool = False) -> ProbeReport:
        """Run the official client and log its report; every step must pass (with
        `revoked`, the session from before must be refused)."""
        report = probe(self.tb, label, previous=self.last_probe, revoked=revoked)
        text = report.text()
        PROBE_LOG.append(text)
        assert not report.failures(), text
        self.last_probe = report
        self.user_id = report.user_id or self.user_id
        return report

    def rotate(
        self, secret: str, *extra: str, compose: str | None = None, keys: Iterable[str]
    ) -> Rotation:
        """`rotator rotate SECRET --yes`, which must exit 0; `keys` are the `.env` keys
        it must change (the test's own expectation, not rotator's plan)."""
        before = self.snapshot()
        done = self.run("rotate", secret, "--yes", *extra, compose=compose)
        self.last_stdout = done.stdout
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return self.finished(secret, before, done.stdout, keys)

    def finished(self, secret: str, before: Snapshot, stdout: str, keys: Iterable[str]) -> Rotation:
        found = RESULT_LINE.search(stdout)
        assert found, stdout
        assert found.group(2) == secret
        # A rotation that revoked sessions says so in its apply step.
        self.client_probe(f"after {secret}", revoked=SESSIONS_REVOKED.search(stdout) is not None)
        return Rotation(self, secret, found.group(1), before, frozenset(keys))


def start_testbed(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    compose: str = COMPOSE_V2,
    new_api_keys: bool = False,
    timing: Timing = "fast",
    logs: bool = False,
    read_only_password: bool = False,
    initdb_args: str | None = None,
) -> Iterator[Rig]:
    """Create and start a testbed (options: `Testbed.create`); remove it afterwards."""
    require_docker()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROTATOR_COMPOSE_COMMAND", compose)
        tb = Testbed.create(
            tmp_path_factory.mktemp(name),
            project_name=f"{name}-{os.getpid()}",
            new_api_keys=new_api_keys,
            timing=timing,
            logs=logs,
            read_only_password=read_only_password,
            initdb_args=initdb_args,
        )
    try:
        tb.up(timeout=300 if timing == "real" else 180)
        rig = Rig(tb, compose)
        rig.client_probe("first start")
        yield rig
    finally:
        tb.down()


@pytest.fixture(autouse=True)
def client_probe_section(request: pytest.FixtureRequest) -> Iterator[None]:
    """The client probe reports of each test, as a section of its report ("client probe",
    which -rA shows), or printed as they come with -s."""
    PROBE_LOG.clear()
    yield
    if PROBE_LOG:
        text = "\n".join(PROBE_LOG)
        request.node.add_report_section("call", "client probe", text)
        if request.config.getoption("capture") == "no":
            print("\n" + text)
    PROBE_LOG.clear()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The module's testbed (upstream's .env: no opaque keys), driven with `docker compose`."""
    yield from start_testbed(tmp_path_factory, "e2e")


@pytest.fixture(scope="class")
def keys_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A testbed after upstream's add-new-auth-keys.sh (opaque keys, JWT_KEYS, JWT_JWKS),
    for one test class."""
    yield from start_testbed(tmp_path_factory, "e2e-keys", new_api_keys=True)


@pytest.fixture(scope="class")
def real_timing_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A testbed whose stand-ins take the real services' start-up times, with upstream's
    health-check intervals (tests/testbed/timing.py)."""
    yield from start_testbed(tmp_path_factory, "e2e-real", timing="real")


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Snapshot:
    env_bytes: bytes
    env: dict[str, str]
    containers: dict[str, list[str]]
    """Service -> the strings its container was created with (see container_strings)."""

    def holders(self, value: str) -> set[str]:
        return holders(self.containers, value)


def container_strings(tb: Testbed) -> dict[str, list[str]]:
    """For each container of the project: its environment values, command and health
    check test, as `docker inspect` shows them (what compose interpolated into it)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={tb.project_name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ids, "no containers"
    inspected = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, list[str]] = {}
    for info in json.loads(inspected):
        config = info["Config"]
        service = config["Labels"]["com.docker.compose.service"]
        strings = [entry.partition("=")[2] for entry in config.get("Env") or []]
        strings += config.get("Cmd") or []
        strings += (config.get("Healthcheck") or {}).get("Test") or []
        found.setdefault(service, []).extend(strings)
    return found


def holders(containers: Mapping[str, list[str]], value: str) -> set[str]:
    return {s for s, strings in containers.items() if any(value in text for text in strings)}


def login_roles(tb: Testbed) -> list[str]:
    """Every role that can log in with a password."""
    out = tb.psql("select rolname from pg_authid where rolcanlogin and rolpassword is not null;")
    roles = out.split()
    assert "supabase_admin" in roles and "authenticator" in roles, roles
    return sorted(roles)


def db_login(tb: Testbed, role: str, password: str) -> str | None:
    """None when the login works, else the server's reason."""
    host, port = tb.db_address()
    try:
        psycopg.connect(
            host=host, port=port, user=role, password=password, dbname="postgres",
            connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def user_token(secret: str, user_id: str) -> str:
    """An access token for the user `user_id`, signed with `secret` (HS256, no kid, no
    session: what GoTrue issued before JWT_KEYS)."""
    now = int(time.time())
    claims = {"role": "authenticated", "sub": user_id, "aud": "authenticated",
              "iss": "supabase", "iat": now, "exp": now + 600}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    """Wait for a process started with Rig.popen; kill it past the deadline."""
    try:
        out, err = process.communicate(timeout=ROTATION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- checks


@dataclass
class Rotation:
    rig: Rig
    secret: str
    rotation_id: str
    before: Snapshot
    keys: frozenset[str]
    given: dict[str, str] = field(default_factory=dict)
    """Values the test supplied (smtp), compared literally with what containers got."""

    @property
    def old(self) -> dict[str, str]:
        return {k: self.before.env.get(k, "") for k in self.keys}

    @property
    def new(self) -> dict[str, str]:
        env = self.rig.tb.env()
        return {k: self.given.get(k, env.get(k, "")) for k in self.keys}

    def check(self) -> None:
        """Everything issue #3 asks of a finished rotation. `rotator verify` and
        `rotator history` run beside the in-process checks: all of them only read."""
        verify, history = self.rig.popen("verify"), self.rig.popen("history", "--json")
        try:
            self.check_env_file()
            self.check_services_healthy()
            self.check_containers()
            self.check_database()
            self.check_gateway()
        finally:
            verified = finish(verify)
            recorded = finish(history)
        self.check_verify(verified)
        self.check_records(recorded)

    def check_env_file(self) -> None:
        """`.env` differs from the old bytes in exactly the rotated keys' lines."""
        old_lines = self.before.env_bytes.split(b"\n")
        new_lines = self.rig.env_path.read_bytes().split(b"\n")
        assert len(new_lines) == len(old_lines), "lines were added or removed"
        changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
        changed_keys = [new_lines[i].partition(b"=")[0].decode() for i in changed]
        assert sorted(changed_keys) == sorted(self.keys), changed_keys
        for i in changed:  # the key itself kept its place and spelling
            assert old_lines[i].partition(b"=")[0] == new_lines[i].partition(b"=")[0]
        for key, value in self.new.items():
            assert value, f"{key} is empty after the rotation"
            assert value != self.old[key], f"{key} did not change"
        assert self.rig.env_path.stat().st_mode & 0o077 == 0, ".env readable by others"

    def check_services_healthy(self) -> None:
        tb = self.rig.tb
        # meta has no health check (as upstream): recreated, it runs before it answers.
        wait_for(lambda: tb.answers("meta"), 60, "postgres-meta to answer")
        states = tb.container_states()
        assert set(states) == SERVICES, states
        for service, state in states.items():
            expected = "running" if service in NO_HEALTH_CHECK else "healthy"
            assert state == expected, f"{service}: {state}"
        with ThreadPoolExecutor(len(HTTP_SERVICES)) as pool:
            answers = dict(zip(HTTP_SERVICES, pool.map(tb.health, HTTP_SERVICES), strict=True))
        for service, answer in answers.items():
            assert answer.status == 200, f"{service}: {answer.status} {answer.body[:300]!r}"

    def check_containers(self) -> None:
        """No container holds an old value; each one that held it holds the new one."""
        now = container_strings(self.rig.tb)
        for key in sorted(self.keys):
            old, new = self.old[key], self.new[key]
            if len(old) >= MIN_NEEDLE:
                stale = holders(now, old)
                assert not stale, f"old {key} still held by: {', '.join(sorted(stale))}"
            had = self.before.holders(old) if len(old) >= MIN_NEEDLE else set()
            has = holders(now, new)
            assert had <= has, f"new {key} missing from: {', '.join(sorted(had - has))}"

    def check_database(self) -> None:
        """Every login role accepts the password in .env; if it rotated, none takes the old."""
        tb = self.rig.tb
        password = tb.env()["POSTGRES_PASSWORD"]
        roles = login_roles(tb)
        with ThreadPoolExecutor(len(roles)) as pool:
            new = dict(
                zip(roles, pool.map(lambda r: db_login(tb, r, password), roles), strict=True)
            )
            refused = {r: why for r, why in new.items() if why}
            assert not refused, f"new password refused: {refused}"
            if "POSTGRES_PASSWORD" in self.keys:
                old = self.old["POSTGRES_PASSWORD"]
                answers = pool.map(lambda r: db_login(tb, r, old), roles)
                for role, why in zip(roles, answers, strict=True):
                    assert why is not None, f"{role} still accepts the old password"
                    assert "password authentication failed" in why, f"{role}: {why}"

    def check_gateway(self) -> None:
        """Old and new values, through the gateway, wherever a consumer checks them."""
        tb, old = self.rig.tb, self.old
        env = tb.env()

        def status(path: str, headers: dict[str, str]) -> int:
            return tb.http("GET", path, headers).status

        anon_keys = [k for k in ("ANON_KEY", "SUPABASE_PUBLISHABLE_KEY") if env.get(k)]
        service_keys = [k for k in ("SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY") if env.get(k)]
        # Every key in .env works, rotated or not (auth and rest verify the JWT it maps to).
        for key in anon_keys + service_keys:
            for path in ("/auth/v1/settings", "/rest/v1/items"):
                assert status(path, {"apikey": env[key]}) == 200, f"{key} on {path}"
        for key in service_keys:
            assert status("/pg/tables", {"apikey": env[key]}) == 200, f"{key} on /pg/"
        for key in set(anon_keys + service_keys) & self.keys:
            for path in ("/auth/v1/settings", "/rest/v1/items", "/pg/tables"):
                assert status(path, {"apikey": old[key]}) == 401, f"old {key} on {path}"
        apikey = {"apikey": env["ANON_KEY"]}
        token = user_token(env["JWT_SECRET"], self.rig.user_id)
        for path in ("/rest/v1/items", "/auth/v1/user", "/storage/v1/object/x"):
            assert status(path, {**apikey, "Authorization": f"Bearer {token}"}) == 200, path
        if "JWT_SECRET" in self.keys:  # everyone signed in is signed out
            stale = user_token(old["JWT_SECRET"], self.rig.user_id)
            for path in ("/rest/v1/items", "/auth/v1/user", "/storage/v1/object/x"):
                assert status(path, {**apikey, "Authorization": f"Bearer {stale}"}) == 401, path
        user = env["DASHBOARD_USERNAME"]
        assert status("/", basic(user, env["DASHBOARD_PASSWORD"])) == 200
        # Studio's SQL editor: Studio encrypts the connection for postgres-meta with
        # PG_META_CRYPTO_KEY, which meta must share.
        sql = tb.http(
            "POST",
            "/api/platform/pg-meta/default/query",
            {**basic(user, env["DASHBOARD_PASSWORD"]), "content-type": "application/json"},
            b'{"query": "select 1 as one"}',
        )
        assert (sql.status, sql.body) == (200, b'[{"one": 1}]'), sql.body[:300]
        if "DASHBOARD_PASSWORD" in self.keys:
            assert status("/", basic(user, old["DASHBOARD_PASSWORD"])) == 401
        s3_keys = ("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET")
        assert status("/storage/v1/s3/check", basic(*(env[k] for k in s3_keys))) == 200
        if self.keys & set(s3_keys):
            stale_s3 = basic(*(old[k] if k in self.keys else env[k] for k in s3_keys))
            assert status("/storage/v1/s3/check", stale_s3) == 403

    def check_records(self, history: subprocess.CompletedProcess[str]) -> None:
        """The audit log has the run; the journal is gone; the backup is the old .env."""
        assert history.returncode == 0, history.stderr
        log = json.loads(history.stdout)
        assert log["broken_at"] is None
        mine = [r for r in log["records"] if r["rotation_id"] == self.rotation_id]
        assert [(r["secret"], r["result"]) for r in mine] == [(self.secret, "finished")], mine
        text = json.dumps(log)
        for key, value in {**self.old, **self.new}.items():
            if len(value) >= MIN_NEEDLE:
                assert value not in text, f"the audit log shows a value of {key}"
        state = self.rig.directory / ".rotator"
        assert not (state / "journal.json").exists()
        backups = [p.read_bytes() for p in (state / "backups").iterdir()]
        assert self.before.env_bytes in backups

    def check_verify(self, done: subprocess.CompletedProcess[str]) -> None:
        """`rotator verify` finds the running deployment in line with the new .env."""
        assert done.returncode == 0, done.stdout + done.stderr
        assert "✗" not in done.stdout

    def check_fingerprint(self, service: str, variable: str, value: str) -> None:
        """The stand-in started with exactly `value` in `variable`."""
        assert self.rig.tb.fingerprints(service)[variable] == fingerprint(value)
