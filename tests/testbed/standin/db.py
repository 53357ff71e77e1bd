"""Database logins: a new connection each time, as a health check's or a request's."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

Conninfo = str | Mapping[str, str]
Row = tuple[Any, ...]


def connect(conninfo: Conninfo) -> Any:
    import psycopg2  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if isinstance(conninfo, str):
        return psycopg2.connect(conninfo.replace("ecto://", "postgresql://", 1), connect_timeout=3)
    return psycopg2.connect(connect_timeout=3, **conninfo)


def db_login(conninfo: Conninfo, query: str = "select 1", params: Sequence[Any] = ()) -> list[Row]:
    """Log in, run one query (a transaction), log out. Raises on refusal."""
    return db_run(conninfo, [(query, params)])[-1]


def db_run(conninfo: Conninfo, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
    """Log in, run the statements in one transaction, log out: the rows of each."""
    conn = connect(conninfo)
    try:
        results = []
        with conn.cursor() as cur:
            for query, params in statements:
                cur.execute(query, tuple(params) or None)
                results.append(cur.fetchall() if cur.description else [])
        conn.commit()
        return results
    finally:
        conn.close()


def db_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wait_for_db(conninfo: Conninfo, seconds: float = 60) -> None:
    """Retry the login until it works: real services retry their first connection."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            db_login(conninfo)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reach the database: {db_error(exc)}") from exc
            time.sleep(0.5)
