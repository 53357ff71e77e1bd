"""The `rotator` command: the engine from a terminal, for when Slack is down.

Exit codes: 0 success; 1 failed and rolled back; 2 usage or bad input,
nothing changed; 3 left half-done, run `rotator recover`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import stat
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.audit import AuditLog
from core.backups import (
    BACKUP_GRACE_ENV,
    grace_from_environment,
    list_backups,
    parse_duration,
    prune,
)
from core.catalogue import (
    CATALOGUE,
    Mode,
    RotationOptions,
    Source,
    describe_impact,
    get_secret,
)
from core.deployment import Deployment
from core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, InputError, RotatorError
from core.plan import Plan
from core.probes import ProbeSettings
from core.progress import console_progress
from core.report import format_plan, format_result
from core.service import plan_rotation

if TYPE_CHECKING:
    from core.runtime import Runtime


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the command line; `parser` is `build_parser()` unless a caller (bot.cli, which adds
    `rotator bot` and `rotator worker`) passes one it extended."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        code: int = args.handler(args)
    except RotatorError as exc:
        print(f"rotator: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # A rotation under way turns Ctrl-C into RecoveryNeeded (exit 3) itself; reaching
        # here means none had begun.
        print("rotator: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        # A foreign exception's message may quote a statement or an environment;
        # show only its type unless someone asks for the traceback.
        if os.environ.get("ROTATOR_DEBUG") == "1":
            raise
        print(
            f"rotator: internal error ({type(exc).__name__}); rerun with ROTATOR_DEBUG=1 "
            "for the traceback. If a rotation was running, run `rotator recover`.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotator",
        description="Rotate the secrets of a self-hosted Supabase deployment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def project_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--project",
            type=Path,
            default=Path(os.environ.get("ROTATOR_PROJECT", ".")),
            help="the Supabase docker directory (.env and compose files); default: .",
        )

    p = commands.add_parser("secrets", help="list the secrets rotator can rotate")
    p.set_defaults(handler=cmd_secrets)

    p = commands.add_parser("plan", help="show what rotating SECRET would change")
    p.add_argument("secret")
    project_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    mode_args(p)
    p.set_defaults(handler=cmd_plan)

    p = commands.add_parser("rotate", help="rotate SECRET now")
    p.add_argument("secret")
    project_arg(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument(
        "--values-file",
        type=Path,
        help="KEY=VALUE lines for secrets your provider issues (smtp); never on the command line",
    )
    p.add_argument("--actor", default=default_actor(), help="who is rotating, for the audit log")
    mode_args(p)
    via_socket_arg(p)
    p.set_defaults(handler=cmd_rotate)

    p = commands.add_parser("recover", help="finish or undo a rotation left half-done")
    project_arg(p)
    p.add_argument("--actor", default=default_actor())
    via_socket_arg(p)
    p.set_defaults(handler=cmd_recover)

    p = commands.add_parser("verify", help="check that the running deployment matches .env")
    project_arg(p)
    probe_args(p)
    p.set_defaults(handler=cmd_verify)

    p = commands.add_parser("backups", help="list the .env backups rotations made, or prune them")
    project_arg(p)
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete backups older than the grace, always keeping the newest",
    )
    grace_arg(p)
    p.set_defaults(handler=cmd_backups)

    p = commands.add_parser("history", help="the audit log: who rotated what, when, how it ended")
    project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

    return parser


def mode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compromise",
        action="store_true",
        help="after a leak: cut every old credential off now (the signing key is replaced "
        "at once, not in phases) and revoke sessions",
    )
    sessions = p.add_mutually_exclusive_group()
    sessions.add_argument(
        "--revoke-sessions",
        dest="revoke_sessions",
        action="store_true",
        default=None,
        help="delete every Auth session and refresh token: everyone signs in again "
        "(the default with --compromise, for secrets that sign sessions)",
    )
    sessions.add_argument(
        "--keep-sessions",
        dest="revoke_sessions",
        action="store_false",
        help="keep sessions even with --compromise",
    )


def rotation_options(args: argparse.Namespace) -> RotationOptions:
    return RotationOptions(
        mode=Mode.COMPROMISE if args.compromise else Mode.PLANNED,
        revoke_sessions=args.revoke_sessions,
    )


def probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-gateway-probes",
        dest="gateway_probes",
        action="store_false",
        help="do not probe the API gateway over HTTP (when it is not reachable from this "
        "host; ROTATOR_GATEWAY_URL points the probes elsewhere)",
    )
    p.add_argument(
        "--no-pooler-probe",
        dest="pooler_probe",
        action="store_false",
        help="do not log in through the connection pooler (when it is not reachable from "
        "this host; ROTATOR_POOLER_ADDRESS=host:port points the probe elsewhere)",
    )


def grace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backup-grace",
        metavar="DURATION",
        default=None,
        help="keep older .env backups this long after a rotation ends (e.g. 7d; default "
        f"${BACKUP_GRACE_ENV}, else 0: only the newest backup is kept)",
    )


def via_socket_arg(p: argparse.ArgumentParser) -> None:
    probe_args(p)
    grace_arg(p)
    p.add_argument(
        "--via-socket",
        action="store_true",
        help="change database passwords through psql on the db container's local socket "
        "(for when the database already refuses the password in .env)",
    )


def default_actor() -> str:
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"
    return f"{user}@{socket.gethostname()} (terminal)"


def docker_runtime() -> Runtime:
    from core.adapters.docker import DockerRuntime  # Docker is only needed to act

    return DockerRuntime()


# ----------------------------------------------------------------------- commands


def cmd_secrets(args: argparse.Namespace) -> int:
    def wrapped(label: str, text: str) -> str:
        return textwrap.fill(
            text, width=96, initial_indent=f"    {label:12}", subsequent_indent=" " * 16
        )

    for secret in CATALOGUE.values():
        print(f"{secret.name}  ({secret.risk.value}) {secret.title}")
        if secret.refused:
            print(wrapped("refused:", secret.refused))
            continue
        print(wrapped("users:", describe_impact(secret, RotationOptions())[0]))
        if secret.signs_sessions:
            compromise, _ = describe_impact(secret, RotationOptions(mode=Mode.COMPROMISE))
            print(wrapped("compromise:", compromise))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    plan = plan_rotation(args.project, args.secret, rotation_options(args))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print(format_plan(plan))
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    from core.engine import Engine, Outcome

    deployment = Deployment.load(args.project)
    secret = get_secret(args.secret)
    if args.values_file is not None and secret.source is not Source.GIVEN:
        raise InputError(f"{secret.name} is generated by rotator: --values-file is not for it")
    # Before Docker or given values: refuses unconfigured or refused secrets (exit 2).
    options = rotation_options(args)
    plan = plan_rotation(args.project, secret.name, options)
    if args.dry_run:
        print(format_plan(plan))
        print("\ndry run: nothing was changed")
        return EXIT_OK
    given = (
        read_given_values(secret.name, args.values_file) if secret.source is Source.GIVEN else None
    )
    if not args.yes and not sys.stdin.isatty():
        # Refuse before the engine creates its state directory or takes the lock.
        raise InputError(
            "stdin is not a terminal, so rotator cannot ask: pass --yes to rotate "
            "(or --dry-run to see the plan)"
        )
    engine = Engine(
        deployment,
        docker_runtime(),
        console_progress(),
        actor=args.actor,
        via_socket=args.via_socket,
        probes=probe_settings(args, deployment),
        confirm=None if args.yes else confirm_on_terminal,
        backup_grace_s=backup_grace(args),
    )
    result = engine.rotate(secret.name, given=given, options=options)
    print(format_result(result))
    return EXIT_OK if result.outcome is Outcome.FINISHED else EXIT_FAILED


def cmd_recover(args: argparse.Namespace) -> int:
    from core.engine import Engine, Outcome

    deployment = Deployment.load(args.project)
    engine = Engine(
        deployment,
        docker_runtime(),
        console_progress(),
        actor=args.actor,
        via_socket=args.via_socket,
        probes=probe_settings(args, deployment),
        ask=ask_on_terminal if sys.stdin.isatty() else None,
        backup_grace_s=backup_grace(args),
    )
    result = engine.recover()
    print(format_result(result))
    return EXIT_OK if result.outcome is Outcome.FINISHED else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    from core.verify import verify_current

    deployment = Deployment.load(args.project)
    checks = verify_current(deployment, docker_runtime(), probes=probe_settings(args, deployment))
    for check in checks:
        print(f"{check.mark} {check.name}: {check.evidence}")
    return EXIT_FAILED if any(check.failed for check in checks) else EXIT_OK


def cmd_backups(args: argparse.Namespace) -> int:
    deployment = Deployment.load(args.project)
    state_dir = deployment.state_dir
    if args.prune:
        open_rotation = deployment.journal.read()
        keep = Path(open_rotation.backup) if open_rotation and open_rotation.backup else None
        deleted = prune(state_dir, grace_s=backup_grace(args), keep=keep)
        print(f"pruned {len(deleted)} backup(s)" + "".join(f"\n  {p.name}" for p in deleted))
    backups = list_backups(state_dir)
    if not backups:
        print(f"no .env backups in {state_dir / 'backups'}")
        return EXIT_OK
    now = time.time()
    for b in backups:
        print(f"{b.path}  {_age(now - b.modified):>8} old  {b.size:>6} bytes  mode {b.mode:04o}")
    exposed = [b.path.name for b in backups if not b.private]
    folder_mode = stat.S_IMODE((state_dir / "backups").stat().st_mode)
    if folder_mode & 0o077:
        exposed.append(f"the folder itself (mode {folder_mode:04o})")
    if exposed:
        print(f"rotator: readable by others: {', '.join(exposed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_history(args: argparse.Namespace) -> int:
    deployment = Deployment.load(args.project)
    log = AuditLog(deployment.state_dir / "audit.log")
    records = log.records()
    broken = log.verify_chain()
    if args.json:
        print(json.dumps({"records": [r.__dict__ for r in records], "broken_at": broken}, indent=2))
    else:
        for r in records:
            when = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            print(f"{when}  {r.rotation_id}  {r.secret:20} {r.result:15} {r.actor}  {r.detail}")
        if not records:
            print("no rotations recorded yet")
    if broken is not None:
        print(
            f"rotator: the audit log was edited: the chain breaks at line {broken}", file=sys.stderr
        )
        return EXIT_FAILED
    return EXIT_OK


# ------------------------------------------------------------------------ helpers


def probe_settings(args: argparse.Namespace, deployment: Deployment) -> ProbeSettings:
    return ProbeSettings.for_deployment(
        deployment.values(), gateway=args.gateway_probes, pooler=args.pooler_probe
    )


def backup_grace(args: argparse.Namespace) -> float:
    text = args.backup_grace
    return parse_duration(text) if text is not None else grace_from_environment()


def ask_on_terminal(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def confirm_on_terminal(plan: Plan) -> bool:
    print(format_plan(plan))
    if not sys.stdin.isatty():
        raise InputError("stdin is not a terminal, so rotator cannot ask: pass --yes to rotate")
    return input("\nRotate now? [y/N] ").strip().lower() in ("y", "yes")


def read_given_values(secret_name: str, values_file: Path | None) -> dict[str, str]:
    """Values people supply (smtp): from a file, or typed without echo. Never argv."""
    secret = get_secret(secret_name)
    allowed = (*secret.given_keys, *secret.optional_given_keys)
    if values_file is not None:
        values = parse_values_file(values_file)
    elif sys.stdin.isatty():
        values = {}
        for key in allowed:
            hint = "" if key in secret.given_keys else " (leave empty to keep the current value)"
            value = getpass.getpass(f"{key}{hint}: ")
            if value:
                values[key] = value
    else:
        raise InputError(
            f"{secret_name} needs {', '.join(secret.given_keys)} from your provider: "
            "pass --values-file FILE with KEY=VALUE lines"
        )
    source = values_file or "the prompt"
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise InputError(
            f"{source}: {', '.join(unknown)} not part of {secret_name}; "
            f"expected {', '.join(allowed)}"
        )
    missing = [key for key in secret.given_keys if not values.get(key)]
    if missing:
        raise InputError(f"{source}: {', '.join(missing)} is required for {secret_name}")
    return values


def parse_values_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, each value taken literally to the end of its line.

    Deliberately not .env syntax: a provider's password may hold `$`, quotes or `#`,
    and people paste it as it is. Blank lines and lines starting with `#` are skipped.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line_no}: not valid UTF-8") from None
    values = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{path}:{line_no}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


if __name__ == "__main__":
    raise SystemExit(main())
