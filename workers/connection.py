"""Redis, RQ queues and Slack clients, set up one way for the bot and the worker.

Secrets come from files where a deployment keeps them (`*_FILE`, e.g. Docker secrets in
/run/secrets), so they never sit in the environment `docker inspect` shows nor on a
command line `ps` shows:

- `REDIS_URL`: `redis://HOST:PORT/DB` or `rediss://...` (TLS); default redis://127.0.0.1:6379/0
- `REDIS_PASSWORD_FILE`: the password (Redis `requirepass`, or the ACL user's)
- `REDIS_USERNAME`: an ACL user (default: Redis's `default` user)
- `REDIS_CA_FILE`: for rediss://, the CA bundle that signed the server's certificate
- `SLACK_BOT_TOKEN_FILE` or `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET_FILE` or
  `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN_FILE` or `SLACK_APP_TOKEN`; `SLACK_API_URL`

RQ jobs are serialized as JSON, never pickle: whoever can write to Redis could otherwise
make the worker (which holds the Docker socket) run code. Job arguments are ids only.
"""

from __future__ import annotations

import os
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from core.errors import InputError

__all__ = [
    "DEFAULT_REDIS_URL",
    "SERIALIZER",
    "connect_redis",
    "env_secret",
    "make_queue",
    "make_slack_client",
    "read_secret_file",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SERIALIZER = JSONSerializer
"""RQ's JSON serializer, for every queue and worker (see the module docstring)."""


def read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    """The secret in `path`, without its trailing newline. Names the file, never the value."""
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise InputError(f"cannot read {what} from {path}: {exc.strerror}") from None
    if not value:
        raise InputError(f"{path} is empty: it should hold {what}")
    return value


def env_secret(name: str, *, required: bool = True) -> str | None:
    """`$NAME_FILE`'s content, else `$NAME`; InputError when required and neither is set."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return read_secret_file(path, name)
    value = os.environ.get(name)
    if value:
        return value
    if required:
        raise InputError(f"set {name}_FILE (a file holding it) or {name}")
    return None


def connect_redis(url: str | None = None) -> Redis:
    """A Redis connection as configured by the environment (module docstring)."""
    url = url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise InputError(f"REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}")
    options: dict[str, str] = {}
    password = env_secret("REDIS_PASSWORD", required=False)
    if password:
        options["password"] = password
    if os.environ.get("REDIS_USERNAME"):
        options["username"] = os.environ["REDIS_USERNAME"]
    if url.startswith("rediss://") and os.environ.get("REDIS_CA_FILE"):
        options["ssl_ca_certs"] = os.environ["REDIS_CA_FILE"]
    return Redis.from_url(url, **options)


def make_queue(name: str, redis: Redis) -> Queue:
    """An RQ queue with the JSON serializer."""
    return Queue(name, connection=redis, serializer=SERIALIZER)


def make_slack_client(token: str | None = None, base_url: str | None = None) -> WebClient:
    """A Web API client that waits out HTTP 429 (Retry-After) and retries connection errors
    and Slack's 5xx answers, as Slack asks of apps."""
    return WebClient(
        token=token or env_secret("SLACK_BOT_TOKEN"),
        base_url=base_url or os.environ.get("SLACK_API_URL") or WebClient.BASE_URL,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )
