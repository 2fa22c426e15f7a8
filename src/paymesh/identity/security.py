"""How identity keeps secrets: Argon2id for passwords (pwdlib), SHA-256 for the
high-entropy secrets it generates itself (client secrets, codes, refresh tokens, session
cookies, recovery codes), AES-GCM for what it must read back (signing keys, TOTP secrets).

SHA-256 is enough for generated secrets: 256 random bits cannot be guessed offline, and a
token endpoint hit by every service call should not pay Argon2's deliberate cost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pwdlib import PasswordHash

_passwords = PasswordHash.recommended()
# Verifying against this hash when a user does not exist keeps the response time of
# "no such user" equal to that of "wrong password".
_DUMMY_HASH = _passwords.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _passwords.verify(password, _DUMMY_HASH)
        return False
    return bool(_passwords.verify(password, password_hash))


def new_secret(size_bytes: int = 32) -> str:
    """A random URL-safe secret (client secrets, codes, refresh tokens, cookies)."""
    return secrets.token_urlsafe(size_bytes)


def secret_hash(value: str) -> str:
    """SHA-256 hex of a generated secret: what the database stores instead of it."""
    return hashlib.sha256(value.encode()).hexdigest()


def secret_matches(value: str, stored_hash: str | None) -> bool:
    if stored_hash is None:
        return False
    return hmac.compare_digest(secret_hash(value), stored_hash)


class Cipher:
    """AES-256-GCM with a key derived (HKDF-SHA256) from the platform signing secret, for
    secrets identity must read back. Output: base64url(nonce || ciphertext+tag)."""

    def __init__(self, master_secret: str, purpose: str = "paymesh-identity-at-rest") -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            master_secret.encode()
        )
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode())
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()
