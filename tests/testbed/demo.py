"""The demonstration behind `scripts/demo`: the real engine on a running deployment.

It starts the testbed (real PostgreSQL and postgres-meta, stand-ins that take the real
services' start-up times), then rotates a few secrets through the full protocol, showing
each plan, the progress, the verification and the security checklist, what the official
Supabase client sees before and after, then the audit log. No Slack workspace needed.

    python -m tests.testbed.demo [--secrets postgres-password,jwt-secret] [--keep] [--fast]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from core.adapters.docker import DockerRuntime
from core.audit import AuditLog
from core.catalogue import get_secret
from core.deployment import Deployment
from core.engine import Engine, Outcome
from core.plan import make_plan
from core.progress import console_progress
from core.report import format_plan, format_result
from tests.testbed.client_probe import ProbeReport, probe
from tests.testbed.testbed import Testbed, image_exists

DEFAULT_SECRETS = ("postgres-password", "jwt-secret", "dashboard-password")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", default=",".join(DEFAULT_SECRETS))
    parser.add_argument("--keep", action="store_true", help="leave the deployment running")
    parser.add_argument(
        "--fast", action="store_true", help="stand-ins start at once (not the real services' times)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("ROTATOR_COMPOSE_COMMAND", "docker compose")
    if not image_exists():
        print("the testbed image is missing: run tests/testbed/build-images.sh", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    testbed = Testbed.create(
        workdir, project_name="rotator-demo", timing="fast" if args.fast else "real"
    )
    heading(f"Starting a Supabase-shaped deployment in {testbed.directory}")
    started = time.monotonic()
    testbed.up(timeout=180)
    states = testbed.container_states()
    print(
        f"  {len(states)} containers healthy in {time.monotonic() - started:.0f}s: "
        + ", ".join(sorted(states))
    )
    failures = 0
    try:
        session = show_client(testbed, "after the start", None)
        failures += bool(session.failures())
        for secret in args.secrets.split(","):
            failures += rotate(testbed, secret.strip())
            session = show_client(testbed, f"after {secret.strip()}", session)
            failures += bool(session.failures())
        heading("Audit log (rotator history)")
        for record in AuditLog(testbed.directory / ".rotator" / "audit.log").records():
            print(f"  {record.rotation_id}  {record.secret:20} {record.result:12} {record.actor}")
    finally:
        if args.keep:
            print(f"\nleft running: rotator verify --project {testbed.directory}")
        else:
            heading("Removing the deployment")
            testbed.down()
    return 1 if failures else 0


def rotate(testbed: Testbed, secret: str) -> int:
    deployment = Deployment.load(testbed.directory)
    heading(f"rotator rotate {secret}")
    print(format_plan(make_plan(deployment, get_secret(secret))))
    print()
    progress = console_progress()
    engine = Engine(deployment, DockerRuntime(), progress, actor="demo@scripts/demo")
    result = engine.rotate(secret)
    print()
    print(format_result(result))
    return 0 if result.outcome is Outcome.FINISHED else 1


def show_client(testbed: Testbed, label: str, previous: ProbeReport | None) -> ProbeReport:
    """What an app on the official supabase client sees: sign-up, sign-in, a read, a
    refresh, and the session from before the rotation refreshed."""
    report = probe(testbed, label, previous)
    print()
    print(report.text())
    return report


def heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m")


if __name__ == "__main__":
    raise SystemExit(main())
