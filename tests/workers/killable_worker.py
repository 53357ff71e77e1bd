"""A real RQ worker (forking) whose runtime hangs in `recreate`, for the SIGKILL test.

Run as `python -m tests.workers.killable_worker QUEUE MARKER`: it touches MARKER when the
rotation reaches the restart step (the journal is open), then hangs until killed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from redis import Redis

from core.compose import ComposeProject
from core.deployment import Deployment
from tests.fakes import RecordingRuntime
from workers import jobs
from workers.connection import make_queue
from workers.runner import RotatorWorker


class HangingRuntime(RecordingRuntime):
    marker = Path()

    def recreate(
        self, project: ComposeProject, env: Mapping[str, str], services: Sequence[str]
    ) -> None:
        self.marker.write_text(str(os.getpid()))
        time.sleep(120)


def main() -> None:
    queue_name, marker = sys.argv[1], Path(sys.argv[2])
    HangingRuntime.marker = marker

    def hanging(deployment: Deployment) -> RecordingRuntime:
        return HangingRuntime(deployment.compose)

    jobs.make_runtime = hanging
    jobs.LOCK_TTL_S = 2
    redis = Redis.from_url(os.environ["REDIS_URL"])
    RotatorWorker([make_queue(queue_name, redis)], connection=redis).work(burst=True)


if __name__ == "__main__":
    main()
