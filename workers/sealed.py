"""Sealed boxes: values only the worker host can read, so typed-in secrets can cross Redis.

Externally issued secrets (SMTP password, S3 keys) are typed into a Slack modal. The bot
seals them at once for the deployment's worker and stores only the sealed blob in Redis
(`RequestStore.put_sealed`, with a TTL). The worker host keeps the private key; the bot
only ever sees the public key (`worker_public_key` in the bot's config).

Scheme (version 1): an ephemeral X25519 key agreement with the worker's static key, HKDF-SHA256
to a 256-bit key, AES-256-GCM. The associated data binds the blob to its request id, so a
blob copied to another request fails to open.

    blob = b"RS1" || ephemeral public key (32) || nonce (12) || AES-GCM ciphertext+tag

Keys are PEM files: `generate_keypair()` makes them (worker host: private key 0600).
This module imports nothing from bot, workers or core, so the worker can import it as is
(the lead may move it to core/).
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealError", "generate_keypair", "open_values", "seal_values"]

MAGIC = b"RS1"
_INFO = b"rotator sealed v1"


class SealError(Exception):
    """A key that is not an X25519 PEM key, or a blob that does not open (wrong key or request)."""


def generate_keypair() -> tuple[bytes, bytes]:
    """A new (private PEM, public PEM) pair for a worker host."""
    private = X25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ephemeral + recipient)
    return hkdf.derive(shared)


def seal_values(public_pem: bytes, values: dict[str, str], *, request_id: str) -> bytes:
    """Seal {env key: value} for the holder of the private key matching `public_pem`."""
    try:
        recipient = serialization.load_pem_public_key(public_pem)
    except ValueError as exc:
        raise SealError("worker public key is not a PEM public key") from exc
    if not isinstance(recipient, X25519PublicKey):
        raise SealError("worker public key must be an X25519 key (see generate_keypair)")
    ephemeral = X25519PrivateKey.generate()
    eph_raw = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(recipient), eph_raw, _raw(recipient))
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(values).encode(), request_id.encode())
    return MAGIC + eph_raw + nonce + ciphertext


def open_values(private_pem: bytes, blob: bytes, *, request_id: str) -> dict[str, str]:
    """The worker's side: {env key: value} from a sealed blob. Raises SealError."""
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, X25519PrivateKey):
        raise SealError("worker private key must be an X25519 key")
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 32 + 12 + 16:
        raise SealError("not a sealed blob")
    eph_raw = blob[3:35]
    nonce, ciphertext = blob[35:47], blob[47:]
    ephemeral = X25519PublicKey.from_public_bytes(eph_raw)
    key = _derive(private.exchange(ephemeral), eph_raw, _raw(private.public_key()))
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, request_id.encode())
    except InvalidTag:
        raise SealError("sealed blob does not open with this key for this request") from None
    values = json.loads(plain)
    if not isinstance(values, dict):
        raise SealError("sealed blob holds no values")
    return {str(k): str(v) for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m workers.sealed keypair DIR`: write DIR/worker.pem (0600, for the worker
    host) and DIR/worker.pub.pem (for the bot's `worker_public_key`)."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "keypair":
        print("usage: python -m workers.sealed keypair DIR", file=sys.stderr)
        return 2
    directory = Path(args[1])
    directory.mkdir(parents=True, exist_ok=True)
    private, public = generate_keypair()
    fd = os.open(directory / "worker.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    (directory / "worker.pub.pem").write_bytes(public)
    print(f"wrote {directory / 'worker.pem'} (keep it on the worker host) and worker.pub.pem")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
