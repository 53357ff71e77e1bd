"""The encryption the real services use for what they keep or pass around.

- crypto-js AES, as Studio encrypts the connection string it sends postgres-meta in
  `x-connection-encrypted` with PG_META_CRYPTO_KEY: OpenSSL's "Salted__" format,
  EVP_BytesToKey (MD5, one round) for a 256-bit key and the IV, AES-CBC, PKCS#7.
- AES-256-GCM with VAULT_ENC_KEY, as Supavisor's vault (Cloak) stores tenant credentials;
  a key of another length is refused, as Erlang's crypto refuses it.
- AES-128-ECB with DB_ENC_KEY, as Realtime stores its tenant's secrets.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALTED = b"Salted__"
VAULT_TAG = b"AES.GCM.V1"


class SealError(ValueError):
    """The ciphertext cannot be opened with this key (or is not a ciphertext)."""


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _evp_bytes_to_key(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase + salt).digest()  # noqa: S324 (crypto-js's KDF)
        derived += block
    return derived[:32], derived[32:48]


def _pad(data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


def _unpad(data: bytes) -> bytes:
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError as exc:
        raise SealError("bad padding: wrong key") from exc


def cryptojs_encrypt(plaintext: str, passphrase: str) -> str:
    """CryptoJS.AES.encrypt(plaintext, passphrase).toString()"""
    salt = os.urandom(8)
    key, iv = _evp_bytes_to_key(passphrase.encode(), salt)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = encryptor.update(_pad(plaintext.encode())) + encryptor.finalize()
    return base64.b64encode(SALTED + salt + body).decode()


def cryptojs_decrypt(ciphertext: str, passphrase: str) -> str:
    """CryptoJS.AES.decrypt(ciphertext, passphrase).toString(CryptoJS.enc.Utf8)"""
    try:
        raw = base64.b64decode(ciphertext, validate=True)
    except ValueError as exc:
        raise SealError("not base64") from exc
    if not raw.startswith(SALTED) or len(raw) < 32 or len(raw) % 16:
        raise SealError("not an OpenSSL salted ciphertext")
    key, iv = _evp_bytes_to_key(passphrase.encode(), raw[8:16])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    data = _unpad(decryptor.update(raw[16:]) + decryptor.finalize())
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise SealError("Malformed UTF-8 data") from exc


def vault_key(key: str) -> bytes:
    data = key.encode()
    if len(data) != 32:
        raise SealError("Unknown cipher or invalid key size")
    return data


def vault_encrypt(plaintext: str, key: str) -> str:
    iv = os.urandom(12)
    sealed = AESGCM(vault_key(key)).encrypt(iv, plaintext.encode(), VAULT_TAG)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    blob = b"\x01" + bytes([len(VAULT_TAG)]) + VAULT_TAG + iv + tag + ciphertext
    return base64.b64encode(blob).decode()


def vault_decrypt(blob: str, key: str) -> str:
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(blob)
    tag_len = raw[1]
    rest = raw[2 + tag_len :]
    iv, tag, ciphertext = rest[:12], rest[12:28], rest[28:]
    try:
        return AESGCM(vault_key(key)).decrypt(iv, ciphertext + tag, VAULT_TAG).decode()
    except InvalidTag as exc:
        raise SealError("cannot decrypt: wrong key") from exc


def realtime_encrypt(plaintext: str, key: str) -> str:
    if len(key.encode()) != 16:
        raise SealError("DB_ENC_KEY must be exactly 16 bytes (AES-128 key)")
    encryptor = Cipher(algorithms.AES(key.encode()), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(
        encryptor.update(_pad(plaintext.encode())) + encryptor.finalize()
    ).decode()


def realtime_decrypt(blob: str, key: str) -> str:
    if len(key.encode()) != 16:
        raise SealError("DB_ENC_KEY must be exactly 16 bytes (AES-128 key)")
    decryptor = Cipher(algorithms.AES(key.encode()), modes.ECB()).decryptor()  # noqa: S305
    data = _unpad(decryptor.update(base64.b64decode(blob)) + decryptor.finalize())
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise SealError("cannot decrypt: wrong key") from exc
