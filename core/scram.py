"""SCRAM-SHA-256 password verifiers, computed without a database connection.

PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
(RFC 5802, RFC 7677). Sending this instead of the plaintext keeps the password
out of server logs and pg_stat_statements. psycopg can compute it too, but only
with an open connection; the socket path (psql inside the db container) has none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 4096
"""PostgreSQL's default (scram_iterations)."""


def scram_sha256_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The verifier PostgreSQL would store for `password`.

    Passwords are used as UTF-8 bytes; PostgreSQL applies SASLprep first, which
    leaves ASCII printable passwords (all rotator generates) unchanged.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(password: str, stored: str, role: str) -> bool:
    """Whether `stored` (pg_authid.rolpassword of `role`) is a verifier of `password`.

    This is how a role that cannot log in (NOLOGIN) is checked: SCRAM-SHA-256 by
    recomputing its StoredKey from the salt and iteration count, md5 by its digest of
    password and role name. Anything else (no password, a malformed value) is False.
    """
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            _, params, keys = stored.split("$")
            iterations, salt = params.split(":")
            stored_key, _server_key = keys.split(":")
            salted = hashlib.pbkdf2_hmac(
                "sha256", password.encode(), base64.b64decode(salt), int(iterations)
            )
        except ValueError:
            return False
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        candidate = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
        return hmac.compare_digest(candidate, stored_key)
    if stored.startswith("md5") and len(stored) == 35:
        digest = hashlib.md5((password + role).encode(), usedforsecurity=False).hexdigest()
        return hmac.compare_digest("md5" + digest, stored)
    return False
