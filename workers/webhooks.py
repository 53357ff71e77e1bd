"""Status-page webhooks: signed, retried with backoff, in rotator's shape or Statuspage's.

Each POST carries `X-Rotator-Timestamp` and `X-Rotator-Signature: v1=<hex>`, the
HMAC-SHA256 of `<timestamp>.<body>` with the deployment's `webhook_secret_file`, so a
receiver can check who sent it and refuse replays (compare the timestamp with its clock).
A failed delivery (no answer, 429 or 5xx) is retried after `BACKOFF_S`; other 4xx are not.

`webhook_format = "statuspage"` sends Statuspage's scheduled-maintenance incident body
(`{"incident": {"name", "status": scheduled|in_progress|completed, "scheduled_for",
"scheduled_until", "body", ...}}`) instead of rotator's own event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.errors import InputError
from workers.config import DeploymentConfig
from workers.connection import read_secret_file

__all__ = ["BACKOFF_S", "deliver", "signature", "statuspage_body"]

log = logging.getLogger("rotator.worker")

BACKOFF_S: tuple[float, ...] = (1.0, 4.0, 15.0)
"""Pauses before the second, third and fourth attempts."""
TIMEOUT_S = 5.0

_STATUSPAGE_STATUS = {
    "notice": "scheduled",
    "started": "in_progress",
    "finished": "completed",
    "rolled_back": "completed",
    "failed": "in_progress",
    "called_off": "completed",
}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def statuspage_body(event: Mapping[str, Any], *, downtime_s: int) -> dict[str, Any]:
    start = datetime.fromisoformat(str(event["window_start"]))
    until = start + timedelta(seconds=max(downtime_s, 60) * 2)
    return {
        "incident": {
            "name": f"Maintenance on {event['deployment']}: {event.get('title', event['secret'])}",
            "status": _STATUSPAGE_STATUS.get(str(event["event"]), "scheduled"),
            "scheduled_for": start.isoformat(),
            "scheduled_until": until.isoformat(),
            "scheduled_remind_prior": True,
            "scheduled_auto_in_progress": False,
            "scheduled_auto_completed": False,
            "body": event["text"],
            "metadata": {"rotator": {"request_id": event["request_id"], "event": event["event"]}},
        }
    }


def deliver(dep: DeploymentConfig, event: Mapping[str, Any], *, downtime_s: int = 0) -> None:
    """POST `event` to each of the deployment's webhooks. Never raises: a status page that
    stays down is logged (URL and status only)."""
    if not dep.webhooks:
        return
    payload = (
        statuspage_body(event, downtime_s=downtime_s)
        if dep.webhook_format == "statuspage"
        else dict(event)
    )
    body = json.dumps(payload).encode()
    secret = None
    if dep.webhook_secret_file:
        try:
            secret = read_secret_file(dep.webhook_secret_file, "the webhook secret")
        except InputError as exc:
            # Unsigned would look genuine to a receiver that does not check: send nothing.
            log.error("webhooks for %s not sent: %s", dep.name, exc)
            return
    for url in dep.webhooks:
        _post_with_retries(url, body, secret, str(event.get("request_id", "")))


def _post_with_retries(url: str, body: bytes, secret: str | None, event_id: str) -> None:
    for attempt, pause in enumerate((0.0, *BACKOFF_S), start=1):
        time.sleep(pause)
        timestamp = str(int(time.time()))
        headers = {"content-type": "application/json", "x-rotator-timestamp": timestamp}
        headers["x-rotator-event"] = event_id
        if secret:
            headers["x-rotator-signature"] = signature(secret, timestamp, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 -- config allows only http(s)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S):  # noqa: S310
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 429 and exc.code < 500:
                log.warning("webhook %s refused the notice: HTTP %d; not retried", url, exc.code)
                return
            outcome = f"HTTP {exc.code}"
        except Exception as exc:
            outcome = type(exc).__name__
        log.warning("webhook %s: attempt %d failed (%s)", url, attempt, outcome)
    log.error("webhook %s: gave up after %d attempts", url, len(BACKOFF_S) + 1)
