"""New secret values, and the rules every value must meet before anything uses it.

Generators use `secrets` only and follow upstream's `generate-keys.sh` where its output is
safe everywhere the value travels; where it is not (`openssl rand -base64` gives `+`, `/`
and `=`), they use base64url of the same or more random bytes.

Per key: how it is generated; the rules `check` applies.

- POSTGRES_PASSWORD: hex of 16 bytes (32 chars), as upstream; letters and digits only
  (it goes unencoded into connection URLs), at least 16.
- JWT_SECRET: base64url of 30 bytes (40 chars; upstream `openssl rand -base64 30`);
  at least 32 (PostgREST), no `$`, no leading `@` (PostgREST would read a file).
- DASHBOARD_PASSWORD: hex of 16 bytes, redrawn if all digits; letters and digits only,
  at least one letter (a digits-only value is a YAML number to Kong), at least 16.
- SECRET_KEY_BASE: base64url of 48 bytes (64 chars); at least 64 (Phoenix).
- VAULT_ENC_KEY: hex of 16 bytes, as upstream; exactly 32 characters (Supavisor's AES key).
- PG_META_CRYPTO_KEY, LOGFLARE_PUBLIC/PRIVATE_ACCESS_TOKEN: base64url of 32 bytes
  (43 chars; upstream: base64 of 24 bytes); at least 32.
- S3_PROTOCOL_ACCESS_KEY_ID: hex of 16 bytes, as upstream; letters and digits, at least 16.
- S3_PROTOCOL_ACCESS_KEY_SECRET: hex of 32 bytes, as upstream; at least 32.
- SUPABASE_PUBLISHABLE_KEY / SUPABASE_SECRET_KEY: `jwtkeys.make_opaque_key`; upstream
  shape and checksum.
- REALTIME_DB_ENC_KEY: never generated (rotating it is refused); exactly 16 characters,
  so a preflight can flag a wrong one.
- SMTP_PASS / SMTP_USER: given by a person; non-empty, no line breaks or control
  characters, no leading or trailing whitespace.

Every generated key is also "env-safe": printable ASCII with no whitespace, quotes,
backslash, `$`, backtick or `#`, so it can be written unquoted into `.env`, interpolated by
compose into URLs and YAML, and `sed`-substituted by the Envoy entrypoint unharmed.
Rules name the requirement only; a value never appears in an error.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.errors import InvalidSecretValue
from core.jwtkeys import OPAQUE_PREFIXES, opaque_key_checksum_ok

__all__ = [
    "GENERATORS",
    "RULES",
    "Rule",
    "check",
    "dashboard_password",
    "fresh",
    "jwt_secret",
    "logflare_token",
    "pg_meta_crypto_key",
    "postgres_password",
    "s3_access_key_id",
    "s3_access_key_secret",
    "secret_key_base",
    "vault_enc_key",
]


# --- generators ------------------------------------------------------------------------


def postgres_password() -> str:
    """32 hex characters, as `generate-keys.sh` and `db-passwd.sh` (`openssl rand -hex 16`)."""
    return secrets.token_hex(16)


def jwt_secret() -> str:
    """40 base64url characters from 30 random bytes (upstream: `openssl rand -base64 30`)."""
    return secrets.token_urlsafe(30)


def dashboard_password() -> str:
    """32 hex characters with at least one letter (all digits would be a YAML number)."""
    while True:
        value = secrets.token_hex(16)
        if not value.isdigit():
            return value


def secret_key_base() -> str:
    """64 base64url characters from 48 random bytes (upstream: `openssl rand -base64 48`)."""
    return secrets.token_urlsafe(48)


def vault_enc_key() -> str:
    """Exactly 32 hex characters, as upstream (`openssl rand -hex 16`)."""
    return secrets.token_hex(16)


def pg_meta_crypto_key() -> str:
    """43 base64url characters from 32 random bytes (upstream: 24 bytes of base64)."""
    return secrets.token_urlsafe(32)


def logflare_token() -> str:
    """43 base64url characters from 32 random bytes (upstream: 24 bytes of base64)."""
    return secrets.token_urlsafe(32)


def s3_access_key_id() -> str:
    """32 hex characters, as upstream (`openssl rand -hex 16`)."""
    return secrets.token_hex(16)


def s3_access_key_secret() -> str:
    """64 hex characters, as upstream (`openssl rand -hex 32`)."""
    return secrets.token_hex(32)


GENERATORS: Mapping[str, Callable[[], str]] = MappingProxyType(
    {
        "POSTGRES_PASSWORD": postgres_password,
        "JWT_SECRET": jwt_secret,
        "DASHBOARD_PASSWORD": dashboard_password,
        "SECRET_KEY_BASE": secret_key_base,
        "VAULT_ENC_KEY": vault_enc_key,
        "PG_META_CRYPTO_KEY": pg_meta_crypto_key,
        "LOGFLARE_PUBLIC_ACCESS_TOKEN": logflare_token,
        "LOGFLARE_PRIVATE_ACCESS_TOKEN": logflare_token,
        "S3_PROTOCOL_ACCESS_KEY_ID": s3_access_key_id,
        "S3_PROTOCOL_ACCESS_KEY_SECRET": s3_access_key_secret,
    }
)
"""The generator of every single-value key rotator makes itself (JWTs and JWKs aside)."""


# --- rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One requirement on a value. `description` is what errors say; it never holds a value."""

    description: str
    ok: Callable[[str], bool]


_ALNUM = frozenset(string.ascii_letters + string.digits)
_ENV_UNSAFE = frozenset("'\"\\$`#")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _min_len(n: int) -> Rule:
    return Rule(f"must be at least {n} characters", lambda v: len(v) >= n)


_NOT_EMPTY = Rule("must not be empty", lambda v: v != "")
_ENV_SAFE = Rule(
    "must be printable ASCII without spaces, quotes, backslash, '$', '`' or '#'",
    lambda v: (
        all(c.isascii() and c.isprintable() and c not in _ENV_UNSAFE for c in v)
        and not any(c.isspace() for c in v)
    ),
)
_LETTERS_DIGITS = Rule("must hold only letters and digits", lambda v: set(v) <= _ALNUM)
_HAS_LETTER = Rule(
    "must include at least one letter (not digits only)", lambda v: any(c.isalpha() for c in v)
)
_NO_CONTROL = Rule(
    "must not hold line breaks or control characters", lambda v: not _CONTROL.search(v)
)
_NO_OUTER_SPACE = Rule(
    "must not start or end with whitespace (a paste error?)", lambda v: v == v.strip()
)


def _opaque_rule(prefix: str) -> Rule:
    return Rule(
        f"must be an upstream-shaped '{prefix}' key with a valid checksum",
        lambda v: v.startswith(prefix) and opaque_key_checksum_ok(v),
    )


_PUBLISHABLE, _SECRET = OPAQUE_PREFIXES

RULES: Mapping[str, tuple[Rule, ...]] = MappingProxyType(
    {
        "POSTGRES_PASSWORD": (_NOT_EMPTY, _LETTERS_DIGITS, _min_len(16)),
        "JWT_SECRET": (
            _ENV_SAFE,
            _min_len(32),
            Rule("must not start with '@' (PostgREST reads it as a file)", lambda v: v[:1] != "@"),
        ),
        "DASHBOARD_PASSWORD": (_NOT_EMPTY, _LETTERS_DIGITS, _HAS_LETTER, _min_len(16)),
        "SECRET_KEY_BASE": (_ENV_SAFE, _min_len(64)),
        "VAULT_ENC_KEY": (
            _ENV_SAFE,
            Rule("must be exactly 32 characters (Supavisor's AES key)", lambda v: len(v) == 32),
        ),
        "PG_META_CRYPTO_KEY": (_ENV_SAFE, _min_len(32)),
        "LOGFLARE_PUBLIC_ACCESS_TOKEN": (_ENV_SAFE, _min_len(32)),
        "LOGFLARE_PRIVATE_ACCESS_TOKEN": (_ENV_SAFE, _min_len(32)),
        "S3_PROTOCOL_ACCESS_KEY_ID": (_NOT_EMPTY, _LETTERS_DIGITS, _min_len(16)),
        "S3_PROTOCOL_ACCESS_KEY_SECRET": (_ENV_SAFE, _min_len(32)),
        "SUPABASE_PUBLISHABLE_KEY": (_opaque_rule(_PUBLISHABLE),),
        "SUPABASE_SECRET_KEY": (_opaque_rule(_SECRET),),
        "REALTIME_DB_ENC_KEY": (
            _ENV_SAFE,
            Rule("must be exactly 16 characters (Realtime's AES-128 key)", lambda v: len(v) == 16),
        ),
        "SMTP_PASS": (_NOT_EMPTY, _NO_CONTROL, _NO_OUTER_SPACE),
        "OPENAI_API_KEY": (_NOT_EMPTY, _NO_CONTROL, _NO_OUTER_SPACE),
        "SMTP_USER": (_NOT_EMPTY, _NO_CONTROL, _NO_OUTER_SPACE),
    }
)
"""The rules of every single-value key. JWTs and JWK sets are checked in `core.catalogue`."""


def check(key: str, value: str) -> None:
    """Raise InvalidSecretValue(key, rule) for the first rule `value` breaks.

    Raises:
        KeyError: rotator has no rules for `key` (a programming error, not an input error).
    """
    for rule in RULES[key]:
        if not rule.ok(value):
            raise InvalidSecretValue(key, rule.description)


_MAX_DRAWS = 8


def fresh(key: str, old: str | None = None) -> str:
    """A new value for `key` that meets its rules and differs from `old`.

    Raises:
        InvalidSecretValue: no draw differed from `old` (only a broken generator does that).
    """
    generate = GENERATORS[key]
    for _ in range(_MAX_DRAWS):
        value = generate()
        if value != old:
            check(key, value)
            return value
    raise InvalidSecretValue(key, "the generator kept returning the current value")
