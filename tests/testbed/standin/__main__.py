"""standin ROLE --port PORT: run one stand-in (see __init__.py)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable

from .analytics import Analytics, Vector
from .auth import Auth
from .functions import Functions
from .gateway import Gateway
from .imgproxy import Imgproxy
from .pooler import Supavisor
from .realtime import Realtime
from .rest import Rest
from .service import Env, Service
from .storage import Storage
from .studio import Studio
from .web import serve

SERVICES: dict[str, Callable[[Env], Service]] = {
    "auth": Auth,
    "rest": Rest,
    "storage": Storage,
    "functions": Functions,
    "studio": Studio,
    "realtime": Realtime,
    "supavisor": Supavisor,
    "imgproxy": Imgproxy,
    "api-gw": Gateway,
    "analytics": Analytics,
    "vector": Vector,
}
READY_AFTER = "TESTBED_READY_AFTER"
"""Seconds from the container's start until the service answers: how long the real one takes
to become ready (tests/testbed/README.md gives each figure and its source)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="standin", description=__doc__)
    parser.add_argument("role", choices=SERVICES)
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    service = SERVICES[args.role](os.environ)
    service.start()
    ready_after = float(os.environ.get(READY_AFTER) or 0)
    time.sleep(max(0.0, ready_after - (time.monotonic() - started)))
    service.open_listeners()
    serve(service.handle, args.port, args.role)
    return 0


if __name__ == "__main__":
    sys.exit(main())
