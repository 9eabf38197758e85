"""Connector secrets encrypted at rest (Fernet, AES-128-CBC + HMAC-SHA256).

Keys come from MESH_ENCRYPTION_KEYS (newest first). A MultiFernet decrypts with any listed key
and encrypts with the first, so keys rotate by prepending a new one and running
``Source.objects`` re-encryption (``secrets_rotate``)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .conf import conf


class SecretsError(Exception):
    pass


def _fernet_for(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        # Not a Fernet key: stretch the string into one.
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def _multi() -> MultiFernet:
    return MultiFernet([_fernet_for(k) for k in conf.ENCRYPTION_KEYS])


def secrets_encrypt(secrets: dict[str, str]) -> str:
    if not secrets:
        return ""
    return _multi().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


@functools.lru_cache(maxsize=512)
def _plaintext(token: str, keys: tuple[str, ...]) -> bytes:
    # Per process, keyed by the ciphertext and the keys: a worker ingesting webhook batches
    # decrypted the same source's secrets (PBKDF-free, but still ~0.3 ms) for every batch.
    return MultiFernet([_fernet_for(k) for k in keys]).decrypt(token.encode())


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_plaintext(token, tuple(conf.ENCRYPTION_KEYS)))
    except InvalidToken:
        raise SecretsError(
            "cannot decrypt this source's secrets: MESH_ENCRYPTION_KEYS does not hold the key they were saved with"
        ) from None


def secrets_rotate(token: str) -> str:
    return _multi().rotate(token.encode()).decode() if token else ""


def token_hash(token: str) -> str:
    """Tokens (device, feed) are stored as SHA-256: they are random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()
