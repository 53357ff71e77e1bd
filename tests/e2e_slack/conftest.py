"""Fixtures for the Slack story: the testbed and the compose stack beside it (stack.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import service_missing
from tests.e2e_slack.stack import (
    ALICE,
    ALICE_TZ,
    ANNOUNCE,
    BOB,
    CAROL,
    CHANNEL,
    COMPOSE,
    DAVE,
    MALLORY,
    WEBHOOK_SECRET,
    Stack,
    running_stack,
    wait_for,
)
from tests.testbed.testbed import DEFAULT_IMAGE, Testbed, image_exists

__all__ = [
    "ALICE",
    "ALICE_TZ",
    "ANNOUNCE",
    "BOB",
    "CAROL",
    "CHANNEL",
    "DAVE",
    "MALLORY",
    "WEBHOOK_SECRET",
    "Stack",
    "wait_for",
]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        service_missing("no Docker engine (docker info failed)")
    if not image_exists():
        service_missing(f"image {DEFAULT_IMAGE} not built (tests/testbed/build-images.sh)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROTATOR_COMPOSE_COMMAND", COMPOSE)
        tb = Testbed.create(
            tmp_path_factory.mktemp("e2e-slack"), project_name=f"slstory-{os.getpid()}"
        )
    try:
        tb.up(timeout=120)
        yield tb
    finally:
        tb.down()


@pytest.fixture(scope="module")
def stack(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(testbed, tmp_path_factory.mktemp("e2e-slack-stack")) as built:
        yield built
    # Every message and view the bot and the worker sent met Block Kit's limits.
    assert built.slack.refused == [], f"Slack would have refused: {built.slack.refused}"
