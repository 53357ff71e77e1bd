"""Slash-command ack latency at 50 concurrent requests: this checkout beside the previous
configuration, in one run.

    source /tmp/testenv   # or run under scripts/test's environment: ROTATOR_TEST_REDIS_URL
    .venv/bin/python -m bench.ack_latency [--concurrency 50] [--rounds 5]
        [--previous REV | --no-previous]

Now: the real bot as it runs in production, `rotator bot --port N` in a process of its own
(acks in the request thread, the work after them on a small pool of its own, waitress), on
a free loopback port, against the local Slack Web API stand-in (`tests/slack_fake.py`, in
this process: Slack's side) and a real Redis. The deployment's plans are published first
by the worker's own code (`workers.plans.PlanPublisher`, on a copy of
tests/fixtures/mini-supabase) and kept fresh while it runs, as a worker does. After one
`/rotate help` (a bot in service is warm), each round sends N concurrent, correctly signed
`/rotate jwt-secret at +2h ...` commands; each, after its ack, reads the published plan,
posts the approval message and stores the request. The figure is the time from opening the
connection to the HTTP response (the ack); the next round starts once every approval
message is posted.

Previous: the same benchmark as it was at `--previous` (default c052a2e, before the bot took
plans from the worker), extracted with `git archive` and run as it was (Bolt's default
executor, wsgiref, planning in the lazy listener), its figures printed beside.

Deletes the Redis keys it created.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import math
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from io import BytesIO
from pathlib import Path

from redis import Redis

from tests.fakes import make_mini_deployment
from tests.slack_fake import BOT_TOKEN, SIGNING_SECRET, FakeSlack, signed_request
from tests.slack_fake import slash_command_body as command_body
from workers.config import load_config
from workers.plans import HEARTBEAT_S, PlanBook, PlanPublisher

ROOT = Path(__file__).resolve().parents[1]
REQUESTER = "UBENCH1"
COMMAND_TEXT = "jwt-secret at +2h ack latency benchmark"
PREFIX = "rotator"
"""workers.store.RequestStore's default key prefix."""
PREVIOUS = "c052a2e"
"""The last commit where the bot planned in its lazy listener under wsgiref (issue 10)."""


def write_config(root: Path, deployment: str, project: Path) -> Path:
    path = root / "rotator.toml"
    path.write_text(
        f"[deployments.{deployment}]\n"
        f'project = "{project}"\n'
        'channel = "C0BENCH"\n'
        'announce_channel = "C0BENCHANN"\n'
        f'requesters = ["{REQUESTER}"]\n'
        'approvers = ["UBENCHAPP1", "UBENCHAPP2"]\n'
        'oncall = ["UBENCHAPP1"]\n'
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the bot is not listening on 127.0.0.1:{port}")


def send_command(port: int, body: str, start: threading.Barrier) -> tuple[float, str]:
    """POST one signed slash command; (seconds to the HTTP response, status or error)."""
    headers = {k: v[0] for k, v in signed_request(body).headers.items()}
    start.wait()
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - began, str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        return time.perf_counter() - began, type(exc).__name__
    finally:
        conn.close()


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def cleanup(redis: Redis, deployment: str, triggers: list[str]) -> int:
    """Delete the requests, plans and queued decisions of `deployment`, and the retry markers."""
    removed = 0
    for key in redis.scan_iter(match=f"{PREFIX}:request:*", count=500):
        if redis.hget(key, "deployment") == deployment.encode():
            request_id = key.decode().rsplit(":", 1)[-1]
            removed += int(redis.delete(key))
            redis.zrem(f"{PREFIX}:requests", request_id)
    for key in redis.scan_iter(match=f"{PREFIX}:*{deployment}*", count=500):
        removed += int(redis.delete(key))
    for trigger in triggers:
        removed += int(redis.delete(f"{PREFIX}:once:slack:{trigger}"))
    return removed


def measure_now(
    redis: Redis, redis_url: str, concurrency: int, rounds: int
) -> tuple[list[float], int]:
    """This checkout's bot; the ack latencies and how many requests got no answer."""
    root = Path(tempfile.mkdtemp(prefix="rotator-ack-bench-"))
    deployment = f"bench{secrets.token_hex(4)}"
    fake = FakeSlack().start()
    triggers: list[str] = []
    latencies: list[float] = []
    failed = 0
    stop = threading.Event()
    server: subprocess.Popen[bytes] | None = None
    try:
        project = make_mini_deployment(
            root / "supabase", password=secrets.token_hex(16), host="db", port=5432
        )
        config = write_config(root, deployment, project)
        load_config(config)  # refuse a bad one here, not in the bot's log
        publisher = PlanPublisher(PlanBook(redis), deployment, project)
        publisher.refresh(datetime.now(UTC))

        def keep_fresh() -> None:  # what the worker's upkeep does
            while not stop.wait(HEARTBEAT_S):
                publisher.refresh(datetime.now(UTC))

        threading.Thread(target=keep_fresh, daemon=True).start()
        port = free_port()
        env = dict(
            os.environ,
            ROTATOR_CONFIG=str(config),
            REDIS_URL=redis_url,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=fake.url,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "bot", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(port)
        # A bot in service has answered requests before: one `/rotate help`, not counted.
        warm = threading.Barrier(1)
        send_command(
            port, command_body("help", user=REQUESTER, response_url=fake.response_url), warm
        )
        fake.wait_for("respond", 1, 30)
        print(f"now: {rounds} rounds of {concurrency} concurrent `/rotate {COMMAND_TEXT}`")
        acked = 0
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for round_no in range(1, rounds + 1):
                barrier = threading.Barrier(concurrency)
                bodies = []
                for i in range(concurrency):
                    trigger = f"bench-{deployment}-{round_no}-{i}"
                    triggers.append(trigger)
                    bodies.append(
                        command_body(
                            COMMAND_TEXT,
                            user=REQUESTER,
                            response_url=fake.response_url,
                            trigger_id=trigger,
                        )
                    )
                results = list(pool.map(partial(send_command, port, start=barrier), bodies))
                outcomes = Counter(status for _, status in results)
                times = [seconds for seconds, status in results if status == "200"]
                latencies += times
                acked += len(times)
                failed += len(results) - len(times)
                posted = fake.wait_for("chat.postMessage", acked, 120) if acked else []
                shown = ", ".join(f"{status} x{n}" for status, n in sorted(outcomes.items()))
                figures = (
                    f"p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
                    if times
                    else "no acks"
                )
                print(f"  round {round_no}: {shown}; {figures}; {len(posted)} approval messages")
        refused = [error for _, error, _ in fake.refused]
        if refused:
            print(f"  the Slack stand-in refused {len(refused)} call(s): {Counter(refused)}")
        return latencies, failed
    finally:
        stop.set()
        time.sleep(0.5)  # let the last lazy listeners finish their Redis writes
        if server is not None:
            server.terminate()
            server.wait(10)
        print(f"  removed {cleanup(redis, deployment, triggers)} Redis keys")
        fake.stop()
        shutil.rmtree(root, ignore_errors=True)


def measure_previous(revision: str, concurrency: int, rounds: int) -> str:
    """The benchmark as it was at `revision`, run from a `git archive` of it; its summary."""
    try:
        archive = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "archive",
                revision,
                "core",
                "bot",
                "workers",
                "bench",
                "tests",
            ],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"previous configuration ({revision}) not measured: git archive failed ({exc})"
    work = Path(tempfile.mkdtemp(prefix="rotator-ack-previous-"))
    try:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(work, filter="data")
        # Its modules come first on sys.path (the working directory), ahead of this checkout.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.ack_latency",
                "--concurrency",
                str(concurrency),
                "--rounds",
                str(rounds),
            ],
            cwd=work,
            env=dict(os.environ, PYTHONPATH=str(work)),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        summary = [
            line
            for line in done.stdout.splitlines()
            if line.startswith(("round ", "ack latency", f"{rounds * concurrency}"))
            or " acked, " in line
        ]
        return "\n".join(f"  {line}" for line in summary) or (
            f"  it printed no figures (exit {done.returncode}): {done.stderr[-500:]}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--previous", default=PREVIOUS, help="git revision to measure beside")
    parser.add_argument("--no-previous", action="store_true", help="measure this checkout only")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("ROTATOR_TEST_REDIS_URL")
    if not redis_url:
        print(
            "ROTATOR_TEST_REDIS_URL is not set: run under scripts/test's environment "
            "(`source /tmp/testenv` after scripts/test has started Redis)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING)
    redis = Redis.from_url(redis_url)
    try:
        latencies, failed = measure_now(redis, redis_url, args.concurrency, args.rounds)
    finally:
        redis.close()
    total = len(latencies) + failed
    print(f"now: {len(latencies)} acked, {failed} without an answer, of {total} requests")
    if latencies:
        print(
            f"now: ack latency p50 {percentile(latencies, 0.50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    if not args.no_previous:
        print(f"\nprevious configuration ({args.previous}), same load:")
        print(measure_previous(args.previous, args.concurrency, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
