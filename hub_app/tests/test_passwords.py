"""hash_password / verify_password / check_encoded_hash."""

from __future__ import annotations

import re

import pytest

from hub_app.passwords import check_encoded_hash, hash_password, verify_password

ENCODING = re.compile(r"^scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")


def test_hash_is_self_describing_and_salted():
    first = hash_password("correct horse")
    second = hash_password("correct horse")
    assert ENCODING.match(first)
    assert first != second  # a fresh salt each time


@pytest.mark.parametrize(
    ("password", "expected"),
    [("correct horse", True), ("correct hors", False), ("Correct horse", False), ("", False)],
)
def test_verify(password, expected):
    encoded = hash_password("correct horse")
    assert verify_password(password, encoded) is expected


def test_verify_unicode_password():
    encoded = hash_password("pässwörd ✓")
    assert verify_password("pässwörd ✓", encoded)


def test_verify_honours_stored_parameters():
    # Parameters travel with the hash, so a cheaper or costlier hash still verifies.
    encoded = hash_password("pw")
    salt, key = encoded.split("$")[2:]
    import base64
    import hashlib

    raw_salt = base64.b64decode(salt + "==")
    cheap_key = hashlib.scrypt(b"pw", salt=raw_salt, n=2**10, r=4, p=1, dklen=32)
    cheap = f"scrypt$ln=10,r=4,p=1${salt}${base64.b64encode(cheap_key).decode().rstrip('=')}"
    assert verify_password("pw", cheap)
    assert not verify_password("other", cheap)
    assert key  # the original key is untouched


SALT = "A" * 22
KEY = "A" * 43


@pytest.mark.parametrize(
    ("encoded", "fragment"),
    [
        ("hunter2", "4 '$'-separated fields"),
        ("", "4 '$'-separated fields"),
        (f"bcrypt$ln=15,r=8,p=1${SALT}${KEY}", "scheme is not 'scrypt'"),
        (f"scrypt$ln=15,r=8${SALT}${KEY}", "ln=<int>,r=<int>,p=<int>"),
        (f"scrypt$ln=15,r=8,p=1,x=2${SALT}${KEY}", "ln=<int>,r=<int>,p=<int>"),
        (f"scrypt$ln=15,r=8,r=8${SALT}${KEY}", "ln=<int>,r=<int>,p=<int>"),
        (f"scrypt$ln=x,r=8,p=1${SALT}${KEY}", "parameter ln must be a positive integer"),
        (f"scrypt$ln=40,r=8,p=1${SALT}${KEY}", "parameter ln must be between 1 and 20"),
        (f"scrypt$ln=15,r=0,p=1${SALT}${KEY}", "parameter r must be between 1 and 32"),
        (f"scrypt$ln=15,r=8,p=1$!!!!${KEY}", "salt is not valid base64"),
        (f"scrypt$ln=15,r=8,p=1${SALT}$***", "key is not valid base64"),
        (f"scrypt$ln=15,r=8,p=1$AAAA${KEY}", "salt must be at least 8 bytes"),
        (f"scrypt$ln=15,r=8,p=1${SALT}$AAAA", "key must be at least 16 bytes"),
    ],
)
def test_malformed_encodings_are_named_without_echoing(encoded, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)) as raised:
        check_encoded_hash(encoded)
    with pytest.raises(ValueError):
        verify_password("anything", encoded)
    if encoded:
        for part in encoded.split("$"):
            if len(part) > 3:
                assert part not in str(raised.value)


def test_check_accepts_real_hash():
    check_encoded_hash(hash_password("x"))


def test_non_string_hash():
    with pytest.raises(ValueError, match="must be a string"):
        check_encoded_hash(None)  # type: ignore[arg-type]
