"""imgproxy: holds no secret of the deployment; it only has to be up."""

from __future__ import annotations

from .service import Service
from .web import Reply, Request


class Imgproxy(Service):
    def resource(self, request: Request) -> Reply:
        return Reply(200, {"imgproxy": "ok"})
