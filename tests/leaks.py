"""Where the leak tests look for secret values: everything a store holds, opened up."""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

from redis import Redis


def dump_redis(connection: Redis) -> dict[str, str]:
    """Every key and value in the database, by key; zlib blobs (RQ's job data) opened."""
    redis: Any = connection  # redis-py's stubs type replies as bytes | str | None
    out: dict[str, str] = {}
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        parts: list[Any] = [key]
        if kind == "string":
            parts.append(redis.get(key) or b"")
        elif kind == "hash":
            for k, v in redis.hgetall(key).items():
                parts += [k, v]
        elif kind == "list":
            parts += redis.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(redis.smembers(key))
        elif kind == "zset":
            parts += [m for m, _ in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in redis.xrange(key):
                for k, v in fields.items():
                    parts += [k, v]
        texts = []
        for part in parts:
            raw = part.encode() if isinstance(part, str) else part
            texts.append(raw.decode("utf-8", "replace"))
            with contextlib.suppress(zlib.error):
                texts.append(zlib.decompress(raw).decode("utf-8", "replace"))
        out[f"redis {key!r}"] = "\n".join(texts)
    assert out, "the Redis database is empty: the leak search would prove nothing"
    return out
