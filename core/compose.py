"""The deployment's compose model, read the way `docker compose` v2 reads it.

A Supabase deployment is one directory with one or more compose files. This
module finds those files, merges them, interpolates them against a given
environment, and answers what a rotation needs: which services a change of
`.env` touches, in which order to recreate them, their container names and
health checks.

The rules follow compose-go (the loader inside `docker compose` v2):

Files (`cli/options.go`)
    `COMPOSE_FILE` from the environment, split on `COMPOSE_PATH_SEPARATOR`
    (default `os.pathsep`, `:` on Linux), each entry relative to the project
    directory. Without it: the first of compose.yaml, compose.yml,
    docker-compose.yml, docker-compose.yaml, plus the first of
    compose.override.yml, compose.override.yaml, docker-compose.override.yml,
    docker-compose.override.yaml that exists (whichever the main file was).
    Compose also climbs to parent directories when the directory has no file;
    a deployment directory must have its own, so this module does not.

Project name (`withNamePrecedenceLoad`, `loader.projectName`)
    `COMPOSE_PROJECT_NAME` when set and not empty (it must already be a valid
    name); else the last top-level `name:` among the files, interpolated and
    normalised; else the directory's base name, normalised. Normalising
    lowercases, keeps `[a-z0-9_-]` and strips leading `_` and `-`.

Per file (`loader.loadYamlFile`)
    interpolate, apply the `!reset` / `!override` tags to what the earlier
    files built, merge, then de-duplicate sequences. YAML is read with the
    YAML 1.2 core schema as compose does (`yes`, `on`, `0755`, `1:30` stay
    text or decimal), and a duplicated key is an error, as in compose.

Merge (`override/merge.go`, `override/uncity.go`)
    services merge by name, mappings key by key, a scalar replaces a scalar.
    `command`, `entrypoint`, `healthcheck.test` and `ulimits.*` are replaced,
    never merged. `environment`, `labels`, `annotations`, `sysctls`,
    `build.args`, `deploy.labels` merge by key whether written as a list
    (`KEY=VALUE`) or a mapping; here they are always stored as mappings.
    `depends_on` (list or mapping) merges by service, a list entry meaning
    `{condition: service_started, required: true}`. `logging` merges only
    when both files name the same driver (or one names none). Other sequences
    are appended, then de-duplicated: `volumes` and `devices` by target,
    `ports` by host ip, published port, target and protocol, `secrets` and
    `configs` by mount target, `env_file` by path, `expose`, `cap_add`,
    `cap_drop`, `dns*`, `links`, `profiles`, `tmpfs`, `extra_hosts` by value;
    a later entry replaces an earlier one in place.

Dependencies (`loader/normalize.go`)
    `depends_on`, plus the implicit ones compose adds: `links`,
    `network_mode` / `ipc` / `pid: service:<name>`, and `volumes_from` (not
    `container:`). A required dependency on an unknown service is an error; a
    `required: false` one is ignored, as compose does.

Not supported, and refused rather than silently misread: `extends` in a
service, a top-level `include`. Profiles are ignored: every service in the
files is part of the model whether or not its profile is active. `env_file`
contents are not read: a service whose variables come from an env file does
not show as changed when that file changes.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import ComposeError
from core.interpolation import interpolate

__all__ = ["DEFAULT_FILES", "DEFAULT_OVERRIDE_FILES", "ComposeProject", "normalise_project_name"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
DEFAULT_OVERRIDE_FILES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)

_ServiceMap = dict[str, dict[str, Any]]
_Path = tuple[str, ...]


def normalise_project_name(name: str) -> str:
    """Compose's `NormalizeProjectName`: lowercase, keep [a-z0-9_-], no leading `_`/`-`."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


@dataclass(frozen=True)
class _Layer:
    """One YAML document of one compose file, tags applied, forms normalised."""

    path: Path
    doc: dict[str, Any]
    # paths whose value in the earlier files is dropped before this layer merges
    resets: tuple[_Path, ...]


@dataclass(frozen=True)
class ComposeProject:
    """A deployment's compose files, merged but not interpolated.

    Build it with `ComposeProject.load`; `raw` is the merged model with every
    string as written (`${...}` intact) and every list-or-mapping field in its
    mapping form. Everything that depends on values takes the environment to
    use as an argument: the caller decides whether that is `.env` alone or
    `.env` under the process environment (compose lets the latter win).
    """

    directory: Path
    files: tuple[Path, ...]
    name: str
    raw: dict[str, Any]
    _layers: tuple[_Layer, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def load(cls, directory: Path, env: Mapping[str, str]) -> ComposeProject:
        """Read, merge and check the compose files of `directory`.

        `env` supplies COMPOSE_FILE, COMPOSE_PATH_SEPARATOR, COMPOSE_PROJECT_NAME
        and the interpolation values. Raises `ComposeError` for a missing or
        unparsable file (naming it, with the line YAML reports), a dependency
        on an unknown service, unsupported features, or an interpolation that
        fails with `env` (as `docker compose` would refuse to start).
        """
        directory = Path(directory)
        files = _compose_files(directory, env)
        layers = tuple(layer for path in files for layer in _read_layers(path))
        raw = _merge_documents(((layer, layer.doc) for layer in layers), _raw_text)
        project = cls(
            directory=directory,
            files=files,
            name=_project_name(directory, layers, env),
            raw=raw,
            _layers=layers,
        )
        project._dependency_graph()  # unknown services fail here
        project.resolve(env)  # and bad or missing variables here
        return project

    # -- the model ---------------------------------------------------------------

    def service_names(self) -> list[str]:
        """Service names in the order the files define them."""
        return list(self._raw_services())

    def resolve(self, env: Mapping[str, str]) -> _ServiceMap:
        """Every service's definition with all its strings interpolated from `env`.

        Mapping keys are never interpolated. An `environment` entry without a
        value (`- FOO`, `FOO:`) takes `env["FOO"]` when set, as compose does,
        and stays None otherwise.
        """
        layers = self._layers or (_Layer(self.directory, self.raw, ()),)
        documents = ((layer, _interpolate_tree(layer, env)) for layer in layers)
        model = _merge_documents(documents, _same_text)
        services: _ServiceMap = model.get("services") or {}
        for service in services.values():
            environment = service.get("environment")
            if isinstance(environment, dict):
                for key, value in environment.items():
                    if value is None and key in env:
                        environment[key] = env[key]
        return services

    def changed_services(self, before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
        """Services whose resolved definition differs between the two environments.

        Any difference counts (environment, command, health check, labels,
        ports...), because compose recreates a container for any of them.
        Returned in restart order: the levels of `restart_levels`, flattened.
        """
        old, new = self.resolve(before), self.resolve(after)
        env_changed = before != after
        changed = [
            name
            for name in self.service_names()
            if old.get(name) != new.get(name) or (env_changed and self._reads_dotenv(new[name]))
        ]
        return [name for level in self.restart_levels(changed) for name in level]

    def _reads_dotenv(self, service: Mapping[str, Any]) -> bool:
        """Whether the service loads the deployment's own `.env` through `env_file`.

        Compose hashes env_file contents into the service's config, so any change
        to `.env` recreates such a service. Rotator cannot tell which of its
        variables the program uses, so it counts the service as changed.
        """
        entries = service.get("env_file") or []
        if isinstance(entries, str | dict):
            entries = [entries]
        dotenv = (self.directory / ".env").resolve()
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(path, str) and (self.directory / path).resolve() == dotenv:
                return True
        return False

    def dependencies(self, service: str) -> set[str]:
        """The services `service` directly depends on (depends_on and implicit ones)."""
        self._raw_service(service)
        return set(self._dependency_graph()[service])

    def restart_levels(self, services: Iterable[str]) -> list[list[str]]:
        """Group `services` into levels to recreate one after another.

        A service comes after every service of the set it depends on, directly
        or through services outside the set. Dependencies come first; names
        are sorted within a level. A dependency cycle raises `ComposeError`.
        """
        wanted = set(services)
        known = self._raw_services()
        unknown = sorted(wanted.difference(known))
        if unknown:
            raise ComposeError(f"unknown service: {', '.join(unknown)}")
        graph = self._dependency_graph()
        _check_acyclic(graph, sorted(wanted))

        levels: dict[str, int] = {}

        def level(name: str) -> int:
            if name not in levels:
                earlier = _reachable(graph, name) & wanted
                levels[name] = 1 + max((level(dep) for dep in earlier), default=-1)
            return levels[name]

        grouped: dict[int, list[str]] = {}
        for name in wanted:
            grouped.setdefault(level(name), []).append(name)
        return [sorted(grouped[index]) for index in sorted(grouped)]

    def container_name(self, service: str, env: Mapping[str, str]) -> str | None:
        """The service's `container_name`, interpolated, or None when compose picks one."""
        value = self._resolved_service(service, env).get("container_name")
        return None if value is None else str(value)

    def healthcheck(self, service: str, env: Mapping[str, str]) -> dict[str, Any] | None:
        """The service's `healthcheck`, interpolated; None when the files define
        none or disable it (`disable: true`, `test: ["NONE"]`). The image may
        still carry its own HEALTHCHECK: None says nothing about that."""
        check = self._resolved_service(service, env).get("healthcheck")
        if not isinstance(check, dict):
            return None
        test = check.get("test")
        if check.get("disable") is True or test == ["NONE"] or test == "NONE":
            return None
        return check

    # -- helpers -----------------------------------------------------------------

    def _raw_services(self) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = self.raw.get("services") or {}
        return services

    def _raw_service(self, service: str) -> dict[str, Any]:
        try:
            return self._raw_services()[service]
        except KeyError:
            raise ComposeError(f"unknown service: {service}") from None

    def _resolved_service(self, service: str, env: Mapping[str, str]) -> dict[str, Any]:
        self._raw_service(service)
        return self.resolve(env)[service]

    def _dependency_graph(self) -> dict[str, frozenset[str]]:
        services = self._raw_services()
        graph: dict[str, frozenset[str]] = {}
        for name, definition in services.items():
            deps: set[str] = set()
            for dep, required in _declared_dependencies(definition):
                if dep in services:
                    deps.add(dep)
                elif required:
                    raise ComposeError(f"service {name} depends on undefined service {dep}")
            graph[name] = frozenset(deps)
        return graph


# -- files -------------------------------------------------------------------------


def _compose_files(directory: Path, env: Mapping[str, str]) -> tuple[Path, ...]:
    if "COMPOSE_FILE" in env:
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        entries = env["COMPOSE_FILE"].split(separator)
        if not all(entries):
            raise ComposeError("COMPOSE_FILE has an empty entry")
        return tuple(directory / entry for entry in entries)
    main = next((directory / n for n in DEFAULT_FILES if (directory / n).exists()), None)
    if main is None:
        raise ComposeError(
            f"no compose file in {directory} (looked for {', '.join(DEFAULT_FILES)})"
        )
    override = next(
        (directory / n for n in DEFAULT_OVERRIDE_FILES if (directory / n).exists()), None
    )
    return (main,) if override is None else (main, override)


def _project_name(directory: Path, layers: Iterable[_Layer], env: Mapping[str, str]) -> str:
    from_env = env.get("COMPOSE_PROJECT_NAME", "")
    if from_env:
        if normalise_project_name(from_env) != from_env:
            raise ComposeError(
                "COMPOSE_PROJECT_NAME is not a valid project name: use lowercase letters,"
                " digits, '-' and '_', starting with a letter or a digit"
            )
        return from_env
    declared = ""
    for layer in layers:
        value = layer.doc.get("name")
        if isinstance(value, str):
            declared = value
    if declared:
        try:
            from_file = normalise_project_name(interpolate(declared, env))
        except ComposeError as exc:
            raise ComposeError(f"top-level name: {exc}") from None
        if from_file:
            return from_file
    from_directory = normalise_project_name(directory.absolute().name)
    if not from_directory:
        raise ComposeError(f"cannot derive a compose project name from {directory}")
    return from_directory


# -- YAML ----------------------------------------------------------------------------


class _Reset:
    """A value tagged `!reset`: drop what earlier files said at this path."""


@dataclass(frozen=True)
class _Override:
    """A value tagged `!override`: replace, do not merge, what earlier files said."""

    value: Any


class _Loader(yaml.SafeLoader):
    """PyYAML with compose's YAML: the 1.2 core schema, compose tags, unique keys."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (PyYAML's own class registry)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value}", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


# (tag, pattern, possible first characters) of the YAML 1.2 core schema, plus merge keys
_CORE_SCHEMA: list[tuple[str, str, list[str]]] = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", [*"~nN", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", ["<"]),
]
for _tag, _pattern, _first in _CORE_SCHEMA:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


def _construct_untagged(loader: _Loader, node: yaml.Node) -> Any:
    """Construct `node` as if its explicit tag were absent."""
    clone: yaml.Node
    if isinstance(node, yaml.ScalarNode):
        tag: str = loader.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, node.value, (node.style is None, True)
        )
        clone = yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark, node.style)
    elif isinstance(node, yaml.SequenceNode):
        clone = yaml.SequenceNode(
            "tag:yaml.org,2002:seq", node.value, node.start_mark, node.end_mark, node.flow_style
        )
    else:
        clone = yaml.MappingNode(
            "tag:yaml.org,2002:map", node.value, node.start_mark, node.end_mark, None
        )
    return loader.construct_object(clone, deep=True)


def _construct_reset(loader: _Loader, node: yaml.Node) -> _Reset:
    return _Reset()


def _construct_override(loader: _Loader, node: yaml.Node) -> _Override:
    return _Override(_construct_untagged(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("!reset", _construct_reset)
_Loader.add_constructor("!override", _construct_override)


def _read_layers(path: Path) -> list[_Layer]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComposeError(f"compose file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"cannot read compose file {path}: {type(exc).__name__}") from None
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        # the problem only: PyYAML's full message quotes the offending line
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ComposeError(f"{where}: {exc.problem or exc.context or 'invalid YAML'}") from None
    except yaml.YAMLError:
        raise ComposeError(f"{path}: invalid YAML") from None
    return [_layer(path, document) for document in documents]


def _layer(path: Path, document: Any) -> _Layer:
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ComposeError(f"{path}: the top level must be a mapping")
    resets: list[_Path] = []
    doc: dict[str, Any] = _clean(document, (), resets)
    if "include" in doc:
        raise ComposeError(f"{path}: top-level include is not supported")
    services = doc.get("services")
    if services is None:
        return _Layer(path, doc, tuple(resets))
    if not isinstance(services, dict):
        raise ComposeError(f"{path}: services must be a mapping")
    for name, service in list(services.items()):
        if service is None:
            services[name] = {}
        elif not isinstance(service, dict):
            raise ComposeError(f"{path}: services.{name} must be a mapping")
        else:
            if "extends" in service:
                raise ComposeError(f"{path}: services.{name}: extends is not supported")
            _normalise_service(service, f"{path}: services.{name}")
    return _Layer(path, doc, tuple(resets))


def _clean(value: Any, path: _Path, resets: list[_Path]) -> Any:
    """Copy `value` with string keys, recording and removing `!reset`/`!override` tags."""
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            key_text = _key_text(key)
            where = (*path, key_text)
            if isinstance(item, _Reset):
                resets.append(where)
                continue
            if isinstance(item, _Override):
                resets.append(where)
                item = item.value
            cleaned[key_text] = _clean(item, where, resets)
        return cleaned
    if isinstance(value, list):
        # compose cannot reset one element of a sequence either; a tagged element
        # is dropped (`!reset`) or kept as its value (`!override`)
        return [
            _clean(item.value if isinstance(item, _Override) else item, (*path, f"[{i}]"), resets)
            for i, item in enumerate(value)
            if not isinstance(item, _Reset)
        ]
    if isinstance(value, _Override):
        return _clean(value.value, path, resets)
    if isinstance(value, _Reset):
        return None
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


# -- normal forms --------------------------------------------------------------------

_KEY_VALUE_FIELDS = ("environment", "labels", "annotations", "sysctls")
_STRING_OR_LIST_FIELDS = ("dns", "dns_opt", "dns_search", "env_file", "tmpfs")
_DEFAULT_DEPENDENCY = {"condition": "service_started", "required": True}


def _normalise_service(service: dict[str, Any], where: str) -> None:
    """Rewrite list-or-mapping fields into one form so that files merge by key."""
    for name in _KEY_VALUE_FIELDS:
        if name in service:
            service[name] = _key_value_mapping(service[name], f"{where}.{name}", name)
    for name in _STRING_OR_LIST_FIELDS:
        if isinstance(service.get(name), str):
            service[name] = [service[name]]
    hosts = service.get("extra_hosts")
    if isinstance(hosts, dict):
        service["extra_hosts"] = [f"{host}={ip}" for host, ip in hosts.items()]
    build = service.get("build")
    if isinstance(build, str):
        service["build"] = {"context": build}
    elif isinstance(build, dict):
        for name in ("args", "labels"):
            if name in build:
                build[name] = _key_value_mapping(build[name], f"{where}.build.{name}", name)
    deploy = service.get("deploy")
    if isinstance(deploy, dict) and "labels" in deploy:
        deploy["labels"] = _key_value_mapping(deploy["labels"], f"{where}.deploy.labels", "labels")
    networks = service.get("networks")
    if isinstance(networks, list):
        service["networks"] = {str(network): None for network in networks}
    if "depends_on" in service:
        service["depends_on"] = _dependency_mapping(service["depends_on"], f"{where}.depends_on")


def _key_value_mapping(value: Any, where: str, kind: str) -> dict[str, str | None]:
    """`[K=V, K]` or `{K: V}` as `{K: "V"}`; a bare K is None (environment) or ""."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {key: _scalar_text(item, f"{where}.{key}") for key, item in value.items()}
    if not isinstance(value, list):
        raise ComposeError(f"{where} must be a list or a mapping")
    mapping: dict[str, str | None] = {}
    for entry in value:
        if not isinstance(entry, str):
            raise ComposeError(f"{where} entries must be strings")
        key, equals, item = entry.partition("=")
        mapping[key] = item if equals else (None if kind == "environment" else "")
    return mapping


def _scalar_text(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ComposeError(f"{where} must be a string, a number or null")


def _dependency_mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(name): dict(_DEFAULT_DEPENDENCY) for name in value}
    if isinstance(value, dict):
        return {name: {} if spec is None else spec for name, spec in value.items()}
    raise ComposeError(f"{where} must be a list or a mapping")


# -- interpolation -------------------------------------------------------------------


class _Placeholders(Mapping[str, str]):
    """Every variable set, to a marker with no `:` in it: reads a raw spec's shape."""

    def __getitem__(self, key: str) -> str:
        return f"\x00{key}\x00"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_PLACEHOLDERS = _Placeholders()


def _raw_text(text: str) -> str:
    return interpolate(text, _PLACEHOLDERS)


def _same_text(text: str) -> str:
    return text


def _interpolate_tree(layer: _Layer, env: Mapping[str, str]) -> dict[str, Any]:
    def walk(value: Any, path: _Path) -> Any:
        if isinstance(value, str):
            try:
                return interpolate(value, env)
            except ComposeError as exc:
                raise ComposeError(f"{layer.path.name}: {'.'.join(path)}: {exc}") from None
        if isinstance(value, dict):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, f"[{i}]")) for i, item in enumerate(value)]
        return value

    result: dict[str, Any] = walk(layer.doc, ())
    return result


# -- merging -------------------------------------------------------------------------


def _merge_documents(
    documents: Iterable[tuple[_Layer, dict[str, Any]]], text_of: Callable[[str], str]
) -> dict[str, Any]:
    """Merge the documents in order, as compose does file after file."""
    model: dict[str, Any] = {}
    for layer, document in documents:
        for path in layer.resets:
            _delete(model, path)
        model = _merge(model, document, ())
        services = model.get("services")
        if isinstance(services, dict):
            for service in services.values():
                _enforce_unicity(service, text_of)
    services = model.get("services")
    if isinstance(services, dict):
        for service in services.values():
            for dependency, spec in (service.get("depends_on") or {}).items():
                if isinstance(spec, dict):
                    service["depends_on"][dependency] = {**_DEFAULT_DEPENDENCY, **spec}
    return model


def _replaced(path: _Path) -> bool:
    """Paths whose value an override replaces instead of merging."""
    if len(path) < 3 or path[0] != "services":
        return False
    rest = path[2:]
    return rest in (("command",), ("entrypoint",), ("healthcheck", "test")) or (
        len(rest) == 2 and rest[0] == "ulimits"
    )


def _merge(base: Any, over: Any, path: _Path) -> Any:
    if _replaced(path):
        return copy.deepcopy(over)
    if over is None:
        return base
    if isinstance(base, dict):
        if not isinstance(over, dict):
            raise ComposeError(f"cannot override mapping {'.'.join(path)} with a non-mapping")
        if (
            len(path) == 3
            and path[0] == "services"
            and path[2] == "logging"
            and "driver" in base
            and "driver" in over
            and base["driver"] != over["driver"]
        ):
            return copy.deepcopy(over)
        for key, item in over.items():
            if key in base:
                base[key] = _merge(base[key], item, (*path, key))
            else:
                base[key] = copy.deepcopy(item)
        return base
    if isinstance(base, list):
        if not isinstance(over, list):
            raise ComposeError(f"cannot override sequence {'.'.join(path)} with a non-sequence")
        return base + copy.deepcopy(over)
    return copy.deepcopy(over)


def _delete(model: dict[str, Any], path: _Path) -> None:
    node: Any = model
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)


# -- sequences compose keeps unique (override/uncity.go) ----------------------------

_Indexer = Callable[[Any, Callable[[str], str]], str]


def _by_value(item: Any, text_of: Callable[[str], str]) -> str:
    return str(item).partition("=")[0] if isinstance(item, str) else str(item)


def _by_exact_value(item: Any, text_of: Callable[[str], str]) -> str:
    return str(item)


def _volume_target(item: Any, text_of: Callable[[str], str]) -> str:
    if isinstance(item, dict):
        return str(item.get("target", ""))
    parts = text_of(str(item)).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _port_key(item: Any, text_of: Callable[[str], str]) -> str:
    if isinstance(item, dict):
        host = item.get("host_ip", "0.0.0.0")  # noqa: S104 (compose's default, not a bind)
        published = item.get("published", "")
        return f"{host}:{published}:{item.get('target')}/{item.get('protocol', 'tcp')}"
    spec, _, protocol = text_of(str(item)).partition("/")
    parts = spec.rsplit(":", 2)
    host = parts[0] if len(parts) == 3 else "0.0.0.0"  # noqa: S104
    published = parts[-2] if len(parts) >= 2 else ""
    return f"{host}:{published}:{parts[-1]}/{protocol or 'tcp'}"


def _mount_target(default_directory: str) -> _Indexer:
    def index(item: Any, text_of: Callable[[str], str]) -> str:
        if isinstance(item, dict):
            if "target" in item:
                return str(item["target"])
            return f"{default_directory}/{item.get('source')}"
        return f"{default_directory}/{item}"

    return index


def _env_file_path(item: Any, text_of: Callable[[str], str]) -> str:
    return str(item.get("path")) if isinstance(item, dict) else str(item)


def _device_target(item: Any, text_of: Callable[[str], str]) -> str:
    if isinstance(item, dict):
        return str(item.get("target", ""))
    parts = text_of(str(item)).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


_UNIQUE: dict[str, _Indexer] = {
    "volumes": _volume_target,
    "devices": _device_target,
    "ports": _port_key,
    "secrets": _mount_target("/run/secrets"),
    "configs": _mount_target(""),
    "env_file": _env_file_path,
    "expose": _by_exact_value,
    "extra_hosts": _by_exact_value,
    "cap_add": _by_value,
    "cap_drop": _by_value,
    "dns": _by_value,
    "dns_opt": _by_value,
    "dns_search": _by_value,
    "links": _by_value,
    "profiles": _by_value,
    "tmpfs": _by_value,
}


def _enforce_unicity(service: dict[str, Any], text_of: Callable[[str], str]) -> None:
    for name, indexer in _UNIQUE.items():
        items = service.get(name)
        if isinstance(items, list):
            service[name] = _unique(items, _keyed(indexer, text_of))
    networks = service.get("networks")
    if isinstance(networks, dict):
        for network in networks.values():
            if isinstance(network, dict) and isinstance(network.get("aliases"), list):
                network["aliases"] = _unique(network["aliases"], str)


def _keyed(indexer: _Indexer, text_of: Callable[[str], str]) -> Callable[[Any], str]:
    def key(item: Any) -> str:
        return indexer(item, text_of)

    return key


def _unique(items: list[Any], key: Callable[[Any], str]) -> list[Any]:
    """Keep one entry per key: the last one, at the place of the first."""
    result: list[Any] = []
    where: dict[str, int] = {}
    for item in items:
        index = key(item)
        if index in where:
            result[where[index]] = item
        else:
            where[index] = len(result)
            result.append(item)
    return result


# -- dependencies --------------------------------------------------------------------


def _declared_dependencies(service: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    """(service, required) for depends_on and the dependencies compose implies."""
    for name, spec in (service.get("depends_on") or {}).items():
        required = spec.get("required", True) if isinstance(spec, dict) else True
        yield name, str(required).lower() != "false"
    for link in service.get("links") or []:
        yield str(link).split(":")[0], True
    for key in ("network_mode", "ipc", "pid"):
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            yield value.removeprefix("service:"), True
    for source in service.get("volumes_from") or []:
        if not str(source).startswith("container:"):
            yield str(source).split(":")[0], True


def _reachable(graph: Mapping[str, frozenset[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(graph[name])
    return seen


def _check_acyclic(graph: Mapping[str, frozenset[str]], roots: Iterable[str]) -> None:
    done: set[str] = set()
    for root in roots:
        if root in done:
            continue
        trail: list[str] = [root]
        on_trail = {root}
        pending: list[Iterator[str]] = [iter(sorted(graph[root]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                pending.pop()
                done.add(trail[-1])
                on_trail.discard(trail.pop())
            elif following in on_trail:
                cycle = [*trail[trail.index(following) :], following]
                raise ComposeError(f"dependency cycle: {' -> '.join(cycle)}")
            elif following not in done:
                trail.append(following)
                on_trail.add(following)
                pending.append(iter(sorted(graph[following])))
