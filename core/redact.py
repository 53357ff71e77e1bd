"""Take secret values out of text before it travels anywhere.

Compose errors, container logs and command output can quote a deployment's
environment. Everything rotator shows a person (Slack, the terminal, exception
logs) goes through `redact` first, with the values from `secret_values` plus the
old and new values of the secret being rotated.

Values shorter than `MIN_SECRET_LENGTH` are not redacted: replacing every "true",
"5432" or "admin" in a log would make it unreadable and protect nothing, since
no secret rotator generates or accepts is that short.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "SECRET_KEY_MARKERS", "redact", "secret_values"]

REDACTED = "[REDACTED]"

MIN_SECRET_LENGTH = 6
"""Shorter values are left alone (see the module docstring)."""

SECRET_KEY_MARKERS = ("PASSWORD", "PASS", "SECRET", "KEY", "KEYS", "TOKEN", "JWKS")
"""An environment key whose name contains one of these holds a secret."""

_JSON_LEAF_MIN_LENGTH = 16
"""Inside a JSON value (a JWKS), string leaves this long are secrets too (a JWK's `k`, `d`)."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret in `text` with `[REDACTED]`.

    Each secret is also looked for URL-encoded (as in a connection URL) and
    base64-encoded (as in a basic-auth header or a key file). A JSON secret (a
    JWKS in `JWT_KEYS`) counts with its long string leaves, since a log may quote
    one key of the set. Longer forms are replaced first, so a secret that
    contains another one is removed whole.
    """
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            continue
        for part in (secret, *_json_leaves(secret)):
            forms.update(_encoded_forms(part))
    forms = {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
    if not forms or not text:
        return text
    pattern = re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))
    return pattern.sub(REDACTED, text)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of the keys in `env` whose names mark them as secret, deduplicated."""
    return list(dict.fromkeys(v for k, v in env.items() if v and is_secret_key(k)))


def is_secret_key(key: str) -> bool:
    """True when the environment key's name says it holds a secret."""
    upper = key.upper()
    return any(marker in upper for marker in SECRET_KEY_MARKERS)


def _encoded_forms(secret: str) -> set[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    b64url = base64.urlsafe_b64encode(raw).decode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        b64,
        b64.rstrip("="),
        b64url.rstrip("="),
    }


def _json_leaves(value: str) -> list[str]:
    stripped = value.strip()
    if not stripped.startswith(("{", "[")):
        return []
    try:
        parsed: object = json.loads(stripped)
    except ValueError:
        return []
    leaves: list[str] = []
    stack: list[object] = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= _JSON_LEAF_MIN_LENGTH:
            leaves.append(item)
    return leaves
