"""Slash-command ack latency at 50 concurrent requests.

    source /tmp/testenv   # or run under scripts/test's environment: ROTATOR_TEST_REDIS_URL
    .venv/bin/python -m bench.ack_latency [--concurrency 50] [--rounds 5]

Builds the real bot (`bot.app.build_app`, the default catalogue and planner, Bolt's default
ack-then-lazy-listener mode) against the local fake Slack Web API (`tests/slack_fake.py`)
and a real Redis, serves it over HTTP with `bot.main.serve_http` on a free loopback port,
and sends N concurrent, correctly signed `/rotate jwt-secret at +2h ...` commands: each
one, after its ack, plans the rotation on a copy of tests/fixtures/mini-supabase, stores a
request in Redis and posts the approval message. The figure is the time from opening the
connection to the HTTP response (the ack). Between rounds it waits for every approval
message, so rounds do not overlap. Deletes the Redis keys it created.
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
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from redis import Redis
from slack_sdk import WebClient

import bot.main
from bot.app import build_app
from bot.main import serve_http
from tests.fakes import make_mini_deployment
from tests.slack_fake import BOT_TOKEN, SIGNING_SECRET, FakeSlack, signed_request
from tests.slack_fake import slash_command_body as command_body
from workers.config import load_config

REQUESTER = "UBENCH1"
COMMAND_TEXT = "jwt-secret at +2h ack latency benchmark"
PREFIX = "rotator"
"""workers.store.RequestStore's default key prefix."""


def make_project(root: Path) -> Path:
    """A copy of the mini-supabase fixture with a rendered .env (no containers needed)."""
    return make_mini_deployment(
        root / "supabase", password=secrets.token_hex(16), host="db", port=5432
    )


def write_config(root: Path, deployment: str, project: Path) -> Path:
    path = root / "rotator.toml"
    path.write_text(
        f"[deployments.{deployment}]\n"
        f'project = "{project}"\n'
        'channel = "C0BENCH"\n'
        'announce_channel = "C0BENCHANN"\n'
        f'requesters = ["{REQUESTER}"]\n'
        'approvers = ["UBENCHAPP1", "UBENCHAPP2"]\n'
        "approver_groups = []\n"
        'oncall = ["UBENCHAPP1"]\n'
        "approvals = 1\n"
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
    """Delete the requests of `deployment` and the retry markers of `triggers`."""
    removed = 0
    for key in redis.scan_iter(match=f"{PREFIX}:request:*", count=500):
        if redis.hget(key, "deployment") == deployment.encode():
            request_id = key.decode().rsplit(":", 1)[-1]
            removed += int(redis.delete(key))
            redis.zrem(f"{PREFIX}:requests", request_id)
            redis.delete(f"{PREFIX}:sealed:{request_id}")
    for trigger in triggers:
        removed += int(redis.delete(f"{PREFIX}:once:slack:{trigger}"))
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--listen-backlog",
        type=int,
        help="override the HTTP server's listen backlog (socketserver's default is 5)",
    )
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

    root = Path(tempfile.mkdtemp(prefix="rotator-ack-bench-"))
    deployment = f"bench{secrets.token_hex(4)}"
    fake = FakeSlack().start()
    redis = Redis.from_url(redis_url)
    triggers: list[str] = []
    latencies: list[float] = []
    acked = failed = 0
    try:
        settings = load_config(write_config(root, deployment, make_project(root)))
        app = build_app(
            settings,
            client=WebClient(token=BOT_TOKEN, base_url=fake.url),
            redis=redis,
            signing_secret=SIGNING_SECRET,
        )
        if args.listen_backlog:
            bot.main._ThreadingWSGIServer.request_queue_size = args.listen_backlog
        backlog = bot.main._ThreadingWSGIServer.request_queue_size
        port = free_port()
        threading.Thread(target=serve_http, args=(app, port, "127.0.0.1"), daemon=True).start()
        wait_listening(port)
        print(
            f"{args.rounds} rounds of {args.concurrency} concurrent `/rotate {COMMAND_TEXT}` "
            f"to http://127.0.0.1:{port}/slack/events (listen backlog {backlog})"
        )
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            for round_no in range(1, args.rounds + 1):
                barrier = threading.Barrier(args.concurrency)
                bodies = []
                for i in range(args.concurrency):
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
                posted = fake.wait_for("chat.postMessage", acked, 120) if acked else []
                shown = ", ".join(f"{status} x{n}" for status, n in sorted(outcomes.items()))
                figures = (
                    f"p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
                    if times
                    else "no acks"
                )
                print(
                    f"round {round_no}: {shown}; {figures}; {len(posted)} approval messages so far"
                )
                failed += len(results) - len(times)
        print(f"\n{acked} acked, {failed} failed (no HTTP response) of {acked + failed} requests")
        if latencies:
            print(
                f"ack latency over the {len(latencies)} acked requests: "
                f"p50 {percentile(latencies, 0.50) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms"
            )
    finally:
        time.sleep(0.5)  # let the last lazy listeners finish their Redis writes
        print(f"removed {cleanup(redis, deployment, triggers)} Redis keys")
        redis.close()
        fake.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
