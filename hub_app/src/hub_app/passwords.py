"""Salted scrypt password hashes in a self-describing text encoding.

An encoded hash looks like::

    scrypt$ln=15,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>

The cost parameters travel with every hash, so the defaults below can be raised
later without invalidating hashes that already sit in an inventory.

Error messages never quote any part of an encoded hash: a common mistake is to paste
a plain password where a hash belongs, and the message would then leak it into logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["check_encoded_hash", "hash_password", "verify_password"]

SCHEME = "scrypt"
DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32

# Upper bounds on what a stored hash may ask for: a hash is configuration, and a
# typo such as ln=51 must not make every login allocate terabytes.
_MAX_LOG2_N = 20
_MAX_R = 32
_MAX_P = 16
_MIN_SALT_BYTES = 8
_MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class _ScryptHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str, field: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"password hash {field} is not valid base64") from None


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, key_bytes: int) -> bytes:
    n = 2**log2_n
    # hashlib's default maxmem (32 MiB) is exactly what n=2**15, r=8 needs, and the
    # OpenSSL implementation needs a little more on top; allow twice the working set.
    maxmem = 2 * 128 * r * n * p + 1024 * 1024
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=key_bytes
    )


def _parse_params(text: str) -> tuple[int, int, int]:
    params: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or name not in ("ln", "r", "p") or name in params:
            raise ValueError("password hash parameters must be exactly 'ln=<int>,r=<int>,p=<int>'")
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"password hash parameter {name} must be a positive integer")
        params[name] = int(value)
    if set(params) != {"ln", "r", "p"}:
        raise ValueError("password hash parameters must be exactly 'ln=<int>,r=<int>,p=<int>'")
    limits = {"ln": _MAX_LOG2_N, "r": _MAX_R, "p": _MAX_P}
    for name, limit in limits.items():
        if not 1 <= params[name] <= limit:
            raise ValueError(f"password hash parameter {name} must be between 1 and {limit}")
    return params["ln"], params["r"], params["p"]


def _parse(encoded: str) -> _ScryptHash:
    if not isinstance(encoded, str):
        raise ValueError(f"password hash must be a string, not {type(encoded).__name__}")
    fields = encoded.split("$")
    if len(fields) != 4:
        raise ValueError(
            "password hash must have 4 '$'-separated fields "
            f"(scrypt$ln=..,r=..,p=..$salt$key), found {len(fields)}; "
            "create one with `hub-app hash-password`"
        )
    scheme, params, salt_text, key_text = fields
    if scheme != SCHEME:
        raise ValueError(
            f"password hash scheme is not {SCHEME!r}; create one with `hub-app hash-password`"
        )
    log2_n, r, p = _parse_params(params)
    salt = _b64decode(salt_text, "salt")
    key = _b64decode(key_text, "key")
    if len(salt) < _MIN_SALT_BYTES:
        raise ValueError(f"password hash salt must be at least {_MIN_SALT_BYTES} bytes")
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"password hash key must be at least {_MIN_KEY_BYTES} bytes")
    return _ScryptHash(log2_n=log2_n, r=r, p=p, salt=salt, key=key)


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a fresh random salt.

    Args:
        password: The plain-text password. May be any string, including empty; policy
            (such as refusing empty passwords) belongs to the caller.

    Returns:
        The encoded hash, ``scrypt$ln=15,r=8,p=1$<salt>$<key>``.
    """
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P, KEY_BYTES)
    params = f"ln={DEFAULT_LOG2_N},r={DEFAULT_R},p={DEFAULT_P}"
    return f"{SCHEME}${params}${_b64encode(salt)}${_b64encode(key)}"


def check_encoded_hash(encoded: str) -> None:
    """Check that an encoded hash is well-formed, without needing a password.

    Args:
        encoded: The encoded hash to check.

    Raises:
        ValueError: If the encoding is malformed. The message names the faulty part
            and never contains the hash.
    """
    _parse(encoded)


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against an encoded hash in constant time.

    Args:
        password: The plain-text password to check.
        encoded: An encoded hash as produced by :func:`hash_password`.

    Returns:
        True if the password matches the hash, False otherwise.

    Raises:
        ValueError: If the encoding is malformed. The message names the faulty part
            and never contains the hash.
    """
    parsed = _parse(encoded)
    candidate = _scrypt(password, parsed.salt, parsed.log2_n, parsed.r, parsed.p, len(parsed.key))
    return hmac.compare_digest(candidate, parsed.key)
