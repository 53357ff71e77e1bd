"""`scripts/demo --slack`: the chat-ops story without a Slack workspace.

It starts a testbed (a Supabase-shaped deployment of real containers) and, beside it, the
project's own docker-compose.yml: the bot, a worker and Redis (behind a password) in
containers, talking to a local stand-in for Slack's Web API. Then it plays the people:
Alice asks for the Dashboard password to be rotated in half a minute, tries to approve her
own request, Bob approves; users are warned; at the window the worker rotates it and
reports. Finally it prints the channels and the thread as a readable transcript.

    python -m tests.e2e_slack.demo [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.blocks import APPROVE_ACTION
from tests.e2e_slack.stack import (
    ALICE,
    ANNOUNCE,
    BOB,
    CAROL,
    CHANNEL,
    DAVE,
    MALLORY,
    Stack,
    running_stack,
    wait_for,
)
from tests.slack_fake import Call
from tests.testbed.testbed import Testbed, image_exists
from workers.store import RequestStatus, RotationRequest

NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol", DAVE: "dave", MALLORY: "mallory"}
CHANNELS = {CHANNEL: "#rotations", ANNOUNCE: "#status"}


@dataclass
class Said:
    """Something a person did in Slack, placed among the bot's calls."""

    after_call: int
    who: str
    what: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo --slack", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the testbed running")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROTATOR_COMPOSE_COMMAND", "docker compose")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        print("no Docker engine: run scripts/demo, which starts one", file=sys.stderr)
        return 2
    if not image_exists():
        print("the testbed image is missing: run tests/testbed/build-images.sh", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rotator-slack-demo-"))
    work.chmod(0o755)
    heading("Starting a Supabase-shaped deployment, and rotator's compose deployment beside it")
    testbed = Testbed.create(work, project_name="rotator-slack-demo")
    testbed.up(timeout=180)
    said: list[Said] = []
    try:
        (work / "stack").mkdir()
        with running_stack(testbed, work / "stack") as stack:
            print("  bot, worker and Redis are up (docker compose ps):")
            print(
                indent(stack.deployment.run("ps", "--format", "{{.Service}}: {{.Status}}").stdout)
            )
            request = story(stack, said)
            final = stack.store.get(request.id).status
            heading("What Slack saw")
            print(transcript(stack, said))
            heading(f"Request {request.id} ended {final.value}")
            return 0 if final is RequestStatus.FINISHED else 1
    finally:
        if args.keep:
            print(f"\nleft running: the testbed in {testbed.directory}")
        else:
            testbed.down()


def story(stack: Stack, said: list[Said]) -> RotationRequest:
    deployment = stack.story
    text = f"dashboard-password {deployment} at +30s after the quarterly access review"
    said.append(Said(len(stack.slack.calls), "alice", f"/rotate {text}"))
    print(f"  alice: /rotate {text}")
    stack.command(text, ALICE)
    posted = stack.wait_call(
        "chat.postMessage",
        lambda c: "actions" in json.dumps(c.body.get("blocks")),
        30,
        "the approval message",
        channel=CHANNEL,
    )
    request_id = posted.body["blocks"][-1]["elements"][0]["value"]
    request = wait_for(lambda: stack.store.find(request_id), 10, "the request")
    for who, user in (("alice", ALICE), ("bob", BOB)):
        said.append(Said(len(stack.slack.calls), who, "clicks Approve (and confirms)"))
        print(f"  {who}: clicks Approve")
        stack.click(APPROVE_ACTION, request, user)
        time.sleep(1)
    print("  ... waiting for the window and the rotation (about a minute)")
    ended = {RequestStatus.FINISHED, RequestStatus.ROLLED_BACK, RequestStatus.FAILED}
    wait_for(lambda: stack.store.get(request.id).status in ended, 180, "the rotation to end")
    time.sleep(3)  # the last edits and notices
    return request


def transcript(stack: Stack, said: list[Said]) -> str:
    calls = list(stack.slack.calls)
    final: dict[str, Call] = {}
    edits: dict[str, int] = {}
    for call in calls:
        if call.method == "chat.update":
            final[call.body["ts"]] = call
            edits[call.body["ts"]] = edits.get(call.body["ts"], 0) + 1
    lines: list[str] = []
    ts_of = posted_ts(calls)
    for index, call in enumerate(calls):
        lines += [f"{s.who:>8} | {s.what}" for s in said if s.after_call == index]
        body = call.body
        if call.method == "chat.postMessage":
            ts = ts_of.get(index, "")
            shown = final.get(ts, call).body
            edited = f" (edited {edits[ts]}x)" if ts in edits else ""
            where = CHANNELS.get(str(body.get("channel")), str(body.get("channel")))
            prefix = "    ↳ " if body.get("thread_ts") else ""
            lines.append(f"{where:>12} | {prefix}rotator{edited}:")
            lines += [f"{'':>12} | {prefix}  {line}" for line in render(shown).splitlines()]
        elif call.method in ("chat.postEphemeral", "respond"):
            who = NAMES.get(str(body.get("user")), "the requester")
            lines.append(f"{'(ephemeral)':>12} | only {who} sees: {plain(str(body.get('text')))}")
    return "\n".join(lines)


def posted_ts(calls: list[Call]) -> dict[int, str]:
    """The ts the stand-in gave each message it accepted."""
    return {
        index: str(call.response.get("ts"))
        for index, call in enumerate(calls)
        if call.method == "chat.postMessage" and call.response.get("ok")
    }


def render(body: dict[str, Any]) -> str:
    blocks = body.get("blocks") or []
    if not blocks:
        return plain(str(body.get("text", "")))
    out = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            out.append(f"== {plain(block['text']['text'])} ==")
        elif kind == "section":
            out.append(plain(block.get("text", {}).get("text", "")))
        elif kind == "context":
            out.append("  " + " · ".join(plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "actions":
            out.append("  " + "  ".join(f"[{e['text']['text']}]" for e in block["elements"]))
    return "\n".join(out)


def plain(text: str) -> str:
    text = re.sub(r"<@(\w+)>", lambda m: "@" + NAMES.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<#(\w+)>", lambda m: CHANNELS.get(m.group(1), "#" + m.group(1)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines())


def heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m")


if __name__ == "__main__":
    raise SystemExit(main())
