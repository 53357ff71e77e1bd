"""How long `rotator plan SECRET` takes on the upstream reference layout.

Copies `../shared/reference/supabase-docker` (compose files, `.env` made from
`.env.example`) into a temporary directory and runs `rotator plan SECRET --json`
there as a new process, ROUNDS times, printing the median, the fastest and the
slowest wall-clock time. Each run includes Python's start-up and every compose call
the plan makes. Prints figures; asserts nothing.

    .venv/bin/python -m bench.plan_time [--secret all] [--rounds 20] [--logs]
    .venv/bin/python -m bench.plan_time --compare /tmp/old   # vs. another checkout

`--compare DIR` also times the rotator whose sources are in DIR (e.g. `git archive
OLD | tar -x -C DIR`), run with this venv's packages, the two interleaved round by
round so that the machine's load weighs on both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "supabase-docker"
LOGS = "docker-compose.yml:docker-compose.logs.yml"


def deploy(target: Path, *, logs: bool) -> None:
    for path in sorted(REFERENCE.glob("docker-compose*.yml")):
        shutil.copyfile(path, target / path.name)
    env = (REFERENCE / ".env.example").read_text()
    if logs:
        env += f"\nCOMPOSE_FILE={LOGS}\n"
    (target / ".env").write_text(env)


def time_plan(source: Path, project: Path, secret: str) -> float:
    """One `rotator plan` from the sources in `source`, in seconds."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "core.cli", "plan", secret, "--project", str(project), "--json"],
        cwd=source,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label}: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--secret", default="all")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--logs", action="store_true", help="add docker-compose.logs.yml")
    parser.add_argument("--compare", type=Path, help="another checkout's sources to time too")
    args = parser.parse_args()
    if not (REFERENCE / "docker-compose.yml").is_file():
        sys.exit(f"reference layout not found at {REFERENCE}")
    sources = {"this checkout": ROOT}
    if args.compare is not None:
        sources[f"{args.compare}"] = args.compare.resolve()
    times: dict[str, list[float]] = {label: [] for label in sources}
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        deploy(project, logs=args.logs)
        for source in sources.values():
            time_plan(source, project, args.secret)  # warm the page cache once
        for _ in range(args.rounds):
            for label, source in sources.items():
                times[label].append(time_plan(source, project, args.secret))
    layout = "with" if args.logs else "without"
    print(f"rotator plan {args.secret} ({layout} the logs override), {args.rounds} runs each:")
    for label, measured in times.items():
        print("  " + summary(label, measured))


if __name__ == "__main__":
    main()
