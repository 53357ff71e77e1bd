"""Redaction: what leaves rotator never carries a secret, in any common encoding."""

from __future__ import annotations

import base64
from urllib.parse import quote

from core.redact import REDACTED, redact, secret_values


def test_redact_removes_raw_url_encoded_and_base64_forms() -> None:
    secret = "pa ss/word+42"
    text = (
        f"raw {secret}; url postgres://u:{quote(secret, safe='')}@db/x; "
        f"b64 {base64.b64encode(secret.encode()).decode()}"
    )

    redacted = redact(text, [secret])

    assert redacted == f"raw {REDACTED}; url postgres://u:{REDACTED}@db/x; b64 {REDACTED}"


def test_redact_leaves_short_values_and_removes_nested_secrets_whole() -> None:
    assert redact("port 5432 is true", ["5432", "true"]) == "port 5432 is true"
    assert redact("key abcdefXYZ123", ["abcdef", "abcdefXYZ123"]) == f"key {REDACTED}"


def test_a_json_secret_takes_its_long_leaves_with_it() -> None:
    jwks = '[{"kty":"oct","k":"c3ltbWV0cmljLXNlY3JldC1rZXk","alg":"HS256"}]'

    redacted = redact('loaded key "c3ltbWV0cmljLXNlY3JldC1rZXk" (HS256)', [jwks])

    assert redacted == f'loaded key "{REDACTED}" (HS256)'


def test_secret_values_takes_keys_named_like_secrets() -> None:
    env = {
        "POSTGRES_PASSWORD": "pgpassword1",
        "JWT_SECRET": "jwtsecret12",
        "ANON_KEY": "anonkey123",
        "SMTP_PASS": "smtppass12",
        "LOGFLARE_PRIVATE_ACCESS_TOKEN": "logflare12",
        "JWT_KEYS": '[{"kty":"oct","k":"c3ltbWV0cmljLXNlY3JldC1rZXk"}]',
        "POSTGRES_HOST": "db",
        "SITE_URL": "http://localhost:3000",
        "EMPTY_SECRET": "",
    }

    assert secret_values(env) == [
        "pgpassword1",
        "jwtsecret12",
        "anonkey123",
        "smtppass12",
        "logflare12",
        env["JWT_KEYS"],
    ]
