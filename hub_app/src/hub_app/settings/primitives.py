"""The bottom layer of the settings rules: the error, and one check per kind of value.

Every section (:mod:`.hub`, :mod:`.authenticator`, :mod:`.spawner`) and the
inventory check (:mod:`hub_app.inventory`) build on these, so a port, a timeout, an
image reference or an environment name is judged by one rule wherever it appears.
Each check takes the value and the dotted name to blame, and returns the value
or raises :class:`SettingsError`. Nothing here imports JupyterHub: the inventory
check runs these same rules on the Ansible controller.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import re
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ENV_NAME_PATTERN",
    "RESERVED_ENV_PREFIXES",
    "SettingsError",
    "check_username",
    "read_secret_file",
]


class SettingsError(Exception):
    """A value that cannot be used, naming the setting and the fix.

    Attributes:
        setting: Dotted path of the setting at fault, such as ``hub.bind_url`` (or,
            from :mod:`hub_app.inventory`, the inventory variable).
        problem: What is wrong and what is allowed instead.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


# Off while the inventory is checked on the Ansible controller: the secret files
# and the authenticator packages exist only on the hub host, and are checked there
# (by `hub-app check-settings` before the file is replaced, and at the hub's start).
_ON_HOST: ContextVar[bool] = ContextVar("hub_app_settings_on_host", default=True)


@contextlib.contextmanager
def away_from_host() -> Iterator[None]:
    """Skip the checks that read the hub host's files and packages."""
    token = _ON_HOST.set(False)
    try:
        yield
    finally:
        _ON_HOST.reset(token)


def on_host() -> bool:
    """Whether the checks that read the hub host's files and packages apply."""
    return _ON_HOST.get()


USERNAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]*$")
USERNAME_MAX_LENGTH = 32
# JupyterHub refuses API tokens shorter than this (orm.APIToken.min_length).
TOKEN_MIN_LENGTH = 8
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names JupyterHub and the spawners set for every server: the server's identity,
# its tokens and where it reaches the hub. Never set by the settings or the form.
RESERVED_ENV_PREFIXES = ("JUPYTERHUB_", "JPY_")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_PATTERN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# The image reference grammar of the container engines (distribution/reference):
# [registry[:port]/]path[:tag][@digest], path components in lowercase.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REGISTRY = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
IMAGE_REFERENCE_PATTERN = re.compile(
    rf"^{_IMAGE_REGISTRY}{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
IMAGE_REFERENCE_MAX_LENGTH = 255


def type_name(value: Any) -> str:
    """The JSON/YAML name of a value's type, for messages."""
    return "null" if value is None else type(value).__name__


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top."""
    return f"{path}.{key}" if path else key


def section(data: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """Check that ``data`` is an object with exactly the allowed keys.

    Returns:
        ``data``, now known to be a dict.
    """
    where = path or "settings file"
    if not isinstance(data, dict):
        raise SettingsError(where, f"must be a JSON object, not {type_name(data)}")
    allowed = (*required, *optional)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SettingsError(
            join(path, unknown[0]),
            f"unknown key {unknown[0]!r} (a typo?); allowed keys here: {', '.join(allowed)}",
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise SettingsError(join(path, missing[0]), "is required but missing")
    return data


def string(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SettingsError(path, f"must be a string, not {type_name(value)}")
    if not allow_empty and not value:
        raise SettingsError(path, "must not be empty")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(path, f"must be true or false, not {type_name(value)}")
    return value


def absolute_path(value: Any, path: str) -> str:
    text = string(value, path)
    if not os.path.isabs(text):
        raise SettingsError(
            path, f"must be an absolute path, like /var/log/jupyterhub, not {text!r}"
        )
    return text


def at_least_one(value: Any, path: str, unit: str = "seconds") -> int:
    """A timeout, an interval or a size: a whole number of at least 1."""
    # bool is a subclass of int in Python; `true` is not a timeout.
    if type(value) is not int or value < 1:
        raise SettingsError(path, f"must be a whole number of {unit}, at least 1, not {value!r}")
    return value


def count(value: Any, path: str, meaning_of_zero: str = "0 for no limit") -> int:
    """A limit or a number of kept files: a whole number of at least 0."""
    if type(value) is not int or value < 0:
        raise SettingsError(path, f"must be a whole number, {meaning_of_zero}, not {value!r}")
    return value


def port(value: Any, path: str) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise SettingsError(path, f"must be a TCP port, a number from 1 to 65535, not {value!r}")
    return value


def url(value: Any, path: str, schemes: tuple[str, ...], *, allow_path: bool) -> str:
    text = string(value, path)
    parts = urlsplit(text)
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if parts.scheme not in schemes or not parts.hostname:
        raise SettingsError(
            path,
            f"must be an absolute URL starting with {expected} and naming a host, not {text!r}",
        )
    try:
        parts.port  # noqa: B018 -- the property raises ValueError on a bad port
    except ValueError:
        raise SettingsError(path, f"has an invalid port number: {text!r}") from None
    if parts.query or parts.fragment:
        raise SettingsError(path, "must not have a query string or fragment")
    if not allow_path and parts.path not in ("", "/"):
        raise SettingsError(path, "must not have a path; give only scheme, host and port")
    return text


def url_port(text: str) -> int:
    """The port of a URL already checked by :func:`url`, the scheme's own if none."""
    parts = urlsplit(text)
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)


def url_address(text: str) -> tuple[str | None, int]:
    """Where a URL already checked by :func:`url` connects: its host and port."""
    return urlsplit(text).hostname, url_port(text)


def ip_address(value: Any, path: str, hint: str = "") -> str:
    """An IPv4 or IPv6 address (``hint``: what to do instead, for the message)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingsError(
            path, f"{value!r} is not an IP address" + (f" ({hint})" if hint else "")
        ) from None


def host_name(value: Any, path: str) -> str:
    """A DNS name or an IP address: no scheme, no port, no path."""
    text = string(value, path)
    if "://" in text or "/" in text:
        raise SettingsError(
            path,
            f"is {text!r}, a URL; give only the host name, like ldap.example.org "
            "(no scheme, no path)",
        )
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(text)
        return text
    if not HOST_NAME_PATTERN.match(text):
        raise SettingsError(
            path, f"{text!r} is not a host name (letters, digits, '-' and dots) or an IP address"
        )
    return text


def image_reference(value: Any, path: str) -> str:
    """A container image reference the engines accept: ``[registry/]name[:tag][@digest]``."""
    text = string(value, path)
    if len(text) > IMAGE_REFERENCE_MAX_LENGTH or not IMAGE_REFERENCE_PATTERN.match(text):
        raise SettingsError(
            path,
            f"{text!r} is not an image reference; use lowercase [registry/]name[:tag], "
            "like quay.io/jupyter/minimal-notebook:2025-01-06 or localhost/lab",
        )
    return text


def env_name(value: Any, path: str) -> str:
    """An environment variable name that is not one JupyterHub sets for each server."""
    text = string(value, path)
    if not ENV_NAME_PATTERN.match(text):
        raise SettingsError(
            path,
            f"{text!r} is not a variable name; use letters, digits and '_', "
            "not starting with a digit",
        )
    if text.startswith(RESERVED_ENV_PREFIXES):
        raise SettingsError(
            path,
            f"{text} belongs to JupyterHub ({', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)} "
            "carry each server's identity and tokens) and can never be set; remove it",
        )
    return text


def file_mode(value: Any, path: str, *, guards: str) -> int:
    """An octal mode such as ``"0700"`` that gives nobody else write access."""
    text = string(value, path)
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise SettingsError(path, f"must be an octal mode such as '0700', not {text!r}")
    mode = int(text, 8)
    if mode & 0o022:
        raise SettingsError(
            path,
            f"is {text}, which lets other users write to {guards}; use 0700 or 0750 "
            "(never group- or world-writable)",
        )
    return mode


def check_username(value: Any, path: str) -> str:
    """Check a JupyterHub username as this deployment allows them.

    Args:
        value: The candidate username.
        path: Dotted setting path to name in the error.

    Returns:
        The username.

    Raises:
        SettingsError: If it is not a string matching ``^[a-z_][a-z0-9_.-]*$`` of at
            most 32 characters.
    """
    name = string(value, path)
    if len(name) > USERNAME_MAX_LENGTH or not USERNAME_PATTERN.match(name):
        raise SettingsError(
            path,
            f"invalid username {name!r}; use lowercase letters, digits, '_', '.', '-', "
            f"starting with a letter or '_', at most {USERNAME_MAX_LENGTH} characters",
        )
    return name


def usernames(value: Any, path: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise SettingsError(path, f"must be a list of usernames, not {type_name(value)}")
    seen: set[str] = set()
    for index, item in enumerate(value):
        name = check_username(item, f"{path}[{index}]")
        if name in seen:
            raise SettingsError(f"{path}[{index}]", f"{name!r} is listed twice")
        seen.add(name)
    return frozenset(seen)


def string_list(value: Any, path: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    """A list of distinct non-empty strings."""
    if not isinstance(value, list):
        raise SettingsError(path, f"must be a list of strings, not {type_name(value)}")
    if not value and not allow_empty:
        raise SettingsError(path, "must not be empty")
    seen: list[str] = []
    for index, item in enumerate(value):
        text = string(item, f"{path}[{index}]")
        if text in seen:
            raise SettingsError(f"{path}[{index}]", f"{text!r} is listed twice")
        seen.append(text)
    return tuple(seen)


def pattern_list(value: Any, path: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    """A list of distinct strings each matching ``pattern`` (``what``: what one is)."""
    if not isinstance(value, list):
        raise SettingsError(path, f"must be a list of {what}s, not {type_name(value)}")
    seen: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not pattern.match(item):
            raise SettingsError(f"{path}[{index}]", f"{item!r} is not a valid {what}")
        if item in seen:
            raise SettingsError(f"{path}[{index}]", f"{item!r} is listed twice")
        seen.append(item)
    return tuple(seen)


def choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        shown = "missing" if value is None else repr(value)
        raise SettingsError(path, f"is {shown}; choose one of: {', '.join(choices)}")
    return value


# --- files and packages on the hub host ------------------------------------------


def _check_secret_mode(path: str, setting: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SettingsError(setting, f"file {path} does not exist") from None
    except OSError as e:
        raise SettingsError(setting, f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SettingsError(setting, f"{path} is not a regular file")
    if info.st_mode & 0o077:
        raise SettingsError(
            setting,
            f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 0600 {path}`",
        )


def read_secret_file(path: str, setting: str) -> str:
    """Read a token from a file that only its owner can read.

    Args:
        path: The file holding the token; surrounding whitespace is stripped.
        setting: Dotted setting path (or option name) to name in errors.

    Returns:
        The token.

    Raises:
        SettingsError: If the file is missing, not a regular file, readable by group
            or others, unreadable, or holds fewer than 8 characters.
    """
    _check_secret_mode(path, setting)
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(setting, f"cannot read {path}: {e}") from None
    if len(token) < TOKEN_MIN_LENGTH:
        raise SettingsError(
            setting,
            f"{path} must hold a token of at least {TOKEN_MIN_LENGTH} characters; "
            "generate one with `openssl rand -hex 32`",
        )
    return token


def secret_path(value: Any, setting: str, *, is_token: bool) -> str:
    """An absolute path to a root-only secret file (read on the hub host only)."""
    path = string(value, setting)
    if not os.path.isabs(path):
        raise SettingsError(setting, f"must be an absolute path, not {path!r}")
    if not on_host():
        return path
    if is_token:
        # Read now, so an empty token file fails validation, not the hub's start;
        # the value is dropped here and read again only by apply_settings.
        read_secret_file(path, setting)
    else:
        _check_secret_mode(path, setting)
    return path


def existing_file(value: Any, setting: str) -> str:
    """An absolute path to a file that exists on the hub host."""
    path = absolute_path(value, setting)
    if on_host() and not os.path.isfile(path):
        raise SettingsError(setting, f"file {path} does not exist")
    return path


def require_package(module: str, package: str, setting: str, kind: str) -> None:
    """The hub's environment must hold ``package`` for ``kind`` (on the host only)."""
    # check-settings runs in the hub's environment: a kind whose package is missing
    # fails there, before the file is replaced, not at the hub's next start.
    if on_host() and importlib.util.find_spec(module) is None:
        raise SettingsError(
            setting,
            f"{kind!r} needs the {package} package in the hub's environment; install it "
            "(the jupyterhub role does so for this kind)",
        )
