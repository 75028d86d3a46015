"""Load, validate and apply the hub's one JSON settings file.

Ansible renders the file from inventory; ``jupyterhub_config.py`` on the host only
calls :func:`apply_settings_file`. Every rule lives here, so the same check runs as
the template task's ``validate:`` command (``hub-app check-settings``) and when the
hub starts, and a bad inventory fails before the file on the host changes.

Every error names the dotted path of the setting at fault (``hub.bind_url``,
``authenticator.password_hashes.alice``) and says what is allowed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from .passwords import check_encoded_hash

__all__ = [
    "API_CLIENT_ROLE",
    "API_CLIENT_SCOPES",
    "AUTHENTICATOR_KINDS",
    "DEFAULT_SETTINGS_PATH",
    "Settings",
    "SettingsError",
    "apply_settings",
    "apply_settings_file",
    "check_username",
    "load_settings",
    "parse_settings",
    "read_secret_file",
]

DEFAULT_SETTINGS_PATH = "/etc/jupyterhub/hub_app.json"
SETTINGS_VERSION = 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
USERNAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]*$")
USERNAME_MAX_LENGTH = 32
SERVICE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# JupyterHub refuses API tokens shorter than this (orm.APIToken.min_length).
TOKEN_MIN_LENGTH = 8

API_CLIENT_ROLE = "hub-app-cli"
# Exactly what `hub-app` calls, checked against the @needs_scope decorators of
# JupyterHub 5.5's REST handlers:
#   GET /users                     list:users (names) + read:users (admin, activity)
#                                  + read:servers (the servers dict, from `servers`)
#   GET /users/{name}              read:users, read:servers
#   POST/DELETE /users/{name}/server   servers (delete:servers is its subscope)
#   GET /proxy                     proxy
#   POST /users/{name}/tokens      tokens
# admin:users and admin:servers are deliberately absent: they add deleting users,
# reading auth_state and writing server state, none of which the CLI does.
API_CLIENT_SCOPES = ("list:users", "read:users", "servers", "proxy", "tokens")


class SettingsError(Exception):
    """A settings file that cannot be used, naming the setting and the fix.

    Attributes:
        setting: Dotted path of the setting at fault, such as ``hub.bind_url``.
        problem: What is wrong and what is allowed instead.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


# --- settings model ---------------------------------------------------------------


class AuthenticatorSettings(Protocol):
    """What every authenticator kind provides once its section has been parsed."""

    kind: ClassVar[str]

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """Raise SettingsError if the allowed users could not log in with this kind."""

    def apply(self, c: Any) -> None:
        """Set the authenticator class and its traits on a JupyterHub config."""


@dataclass(frozen=True)
class PamSettings:
    """``authenticator.kind = "pam"``: system accounts checked through PAM."""

    kind: ClassVar[str] = "pam"
    # pam_open_session fails in containers and is rarely needed for a hub.
    open_sessions: bool = False

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """PAM accounts live outside the settings file, so there is nothing to check."""

    def apply(self, c: Any) -> None:
        """Select PAMAuthenticator and set ``PAMAuthenticator.open_sessions``."""
        c.JupyterHub.authenticator_class = "pam"
        c.PAMAuthenticator.open_sessions = self.open_sessions


@dataclass(frozen=True)
class HashedSettings:
    """``authenticator.kind = "hashed"``: scrypt hashes kept in the settings file."""

    kind: ClassVar[str] = "hashed"
    password_hashes: Mapping[str, str]

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """Every allowed user needs a hash, or that user could never log in.

        Raises:
            SettingsError: Naming the first allowed user (sorted) without a hash.
        """
        for username in sorted(allowed_users):
            if username not in self.password_hashes:
                raise SettingsError(
                    f"authenticator.password_hashes.{username}",
                    f"allowed user {username!r} has no password hash, so could never log "
                    "in; add one (create it with `hub-app hash-password`) or remove the "
                    "user from allowed_users",
                )

    def apply(self, c: Any) -> None:
        """Select HashedPasswordAuthenticator and set its ``password_hashes``."""
        c.JupyterHub.authenticator_class = "hub_app.auth.HashedPasswordAuthenticator"
        c.HashedPasswordAuthenticator.password_hashes = dict(self.password_hashes)


@dataclass(frozen=True)
class HubSettings:
    bind_url: str
    db_url: str
    cookie_secret_file: str
    log_level: str


@dataclass(frozen=True)
class ProxySettings:
    api_url: str
    auth_token_file: str


@dataclass(frozen=True)
class SpawnerSettings:
    cmd: tuple[str, ...]
    default_url: str
    notebook_dir: str
    start_timeout: int
    http_timeout: int
    environment: Mapping[str, str]
    log_dir: str


@dataclass(frozen=True)
class ApiClientSettings:
    service_name: str
    token_file: str


@dataclass(frozen=True)
class Settings:
    """A validated settings file. Secrets are not held here, only their paths."""

    version: int
    public_url: str
    hub: HubSettings
    proxy: ProxySettings
    authenticator: AuthenticatorSettings
    allowed_users: frozenset[str]
    admin_users: frozenset[str]
    allow_all: bool
    spawner: SpawnerSettings
    api_client: ApiClientSettings

    @property
    def hub_api_url(self) -> str:
        """The hub's REST API as reached directly on ``hub.bind_url``, without the proxy.

        The hub serves under the public URL's path prefix (JupyterHub's base_url) on
        its private address too, so that prefix is kept.
        """
        base_path = urlsplit(self.public_url).path or "/"
        if not base_path.endswith("/"):
            base_path += "/"
        return self.hub.bind_url.rstrip("/") + base_path + "hub/api"


# --- validation helpers -----------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _section(data: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """Check that ``data`` is an object with exactly the allowed keys.

    Returns:
        ``data``, now known to be a dict.
    """
    where = path or "settings file"
    if not isinstance(data, dict):
        raise SettingsError(where, f"must be a JSON object, not {_type_name(data)}")
    allowed = (*required, *optional)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SettingsError(
            _join(path, unknown[0]),
            f"unknown key {unknown[0]!r} (a typo?); allowed keys here: {', '.join(allowed)}",
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise SettingsError(_join(path, missing[0]), "is required but missing")
    return data


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SettingsError(path, f"must be a string, not {_type_name(value)}")
    if not allow_empty and not value:
        raise SettingsError(path, "must not be empty")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(path, f"must be true or false, not {_type_name(value)}")
    return value


def _absolute_path(value: Any, path: str) -> str:
    text = _string(value, path)
    if not os.path.isabs(text):
        raise SettingsError(
            path, f"must be an absolute path, like /var/log/jupyterhub, not {text!r}"
        )
    return text


def _positive_int(value: Any, path: str) -> int:
    # bool is a subclass of int in Python; `true` is not a timeout.
    if type(value) is not int or value <= 0:
        raise SettingsError(path, f"must be a positive integer (seconds), not {value!r}")
    return value


def _url(value: Any, path: str, schemes: tuple[str, ...], *, allow_path: bool) -> str:
    text = _string(value, path)
    parts = urlsplit(text)
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if parts.scheme not in schemes or not parts.hostname:
        raise SettingsError(
            path, f"must be an absolute URL starting with {expected} and naming a host"
        )
    try:
        parts.port  # noqa: B018 -- the property raises ValueError on a bad port
    except ValueError:
        raise SettingsError(path, "has an invalid port number") from None
    if parts.query or parts.fragment:
        raise SettingsError(path, "must not have a query string or fragment")
    if not allow_path and parts.path not in ("", "/"):
        raise SettingsError(path, "must not have a path; give only scheme, host and port")
    return text


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
    name = _string(value, path)
    if len(name) > USERNAME_MAX_LENGTH or not USERNAME_PATTERN.match(name):
        raise SettingsError(
            path,
            f"invalid username {name!r}; use lowercase letters, digits, '_', '.', '-', "
            f"starting with a letter or '_', at most {USERNAME_MAX_LENGTH} characters",
        )
    return name


def _usernames(value: Any, path: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise SettingsError(path, f"must be a list of usernames, not {_type_name(value)}")
    seen: set[str] = set()
    for index, item in enumerate(value):
        name = check_username(item, f"{path}[{index}]")
        if name in seen:
            raise SettingsError(f"{path}[{index}]", f"{name!r} is listed twice")
        seen.add(name)
    return frozenset(seen)


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


def _secret_path(value: Any, setting: str, *, is_token: bool) -> str:
    path = _string(value, setting)
    if not os.path.isabs(path):
        raise SettingsError(setting, f"must be an absolute path, not {path!r}")
    if is_token:
        # Read now, so an empty token file fails validation, not the hub's start;
        # the value is dropped here and read again only by apply_settings.
        read_secret_file(path, setting)
    else:
        _check_secret_mode(path, setting)
    return path


# --- authenticator kinds ----------------------------------------------------------


def _parse_pam(section: dict, path: str) -> PamSettings:
    if "password_hashes" in section:
        raise SettingsError(
            _join(path, "password_hashes"),
            'is only used with kind "hashed"; PAM checks system passwords, so remove it',
        )
    _section(section, path, ("kind",), ("open_sessions",))
    open_sessions = section.get("open_sessions", False)
    return PamSettings(open_sessions=_bool(open_sessions, _join(path, "open_sessions")))


def _parse_hashed(section: dict, path: str) -> HashedSettings:
    _section(section, path, ("kind", "password_hashes"))
    hashes_path = _join(path, "password_hashes")
    hashes = section["password_hashes"]
    if not isinstance(hashes, dict):
        raise SettingsError(
            hashes_path, f"must be an object of username to hash, not {_type_name(hashes)}"
        )
    for username, encoded in hashes.items():
        entry = f"{hashes_path}.{username}"
        check_username(username, entry)
        _string(encoded, entry)
        try:
            check_encoded_hash(encoded)
        except ValueError as e:
            raise SettingsError(entry, str(e)) from None
    return HashedSettings(password_hashes=MappingProxyType(dict(hashes)))


# One entry per `authenticator.kind`. A new kind (github, oidc, ldap) is one parse
# function returning a frozen dataclass with `check_users` and `apply`.
AUTHENTICATOR_KINDS: Mapping[str, Callable[[dict, str], AuthenticatorSettings]] = MappingProxyType(
    {"pam": _parse_pam, "hashed": _parse_hashed}
)


def _parse_authenticator(data: Any) -> AuthenticatorSettings:
    path = "authenticator"
    if not isinstance(data, dict):
        raise SettingsError(path, f"must be a JSON object, not {_type_name(data)}")
    kind = data.get("kind")
    choices = ", ".join(AUTHENTICATOR_KINDS)
    if kind not in AUTHENTICATOR_KINDS:
        shown = "missing" if kind is None else repr(kind)
        raise SettingsError(f"{path}.kind", f"is {shown}; choose one of: {choices}")
    return AUTHENTICATOR_KINDS[kind](data, path)


# --- the whole file ---------------------------------------------------------------


def parse_settings(data: Any) -> Settings:
    """Validate settings already decoded from JSON.

    Args:
        data: The decoded JSON document.

    Returns:
        The validated settings.

    Raises:
        SettingsError: For the first rule broken, naming its setting.
    """
    top = _section(
        data,
        "",
        (
            "version",
            "public_url",
            "hub",
            "proxy",
            "authenticator",
            "allowed_users",
            "admin_users",
            "allow_all",
            "spawner",
            "api_client",
        ),
    )
    # Checked first: a different version means the other rules may not apply.
    if type(top["version"]) is not int or top["version"] != SETTINGS_VERSION:
        raise SettingsError("version", f"must be {SETTINGS_VERSION}, not {top['version']!r}")
    public_url = _url(top["public_url"], "public_url", ("http", "https"), allow_path=True)

    hub = _section(top["hub"], "hub", ("bind_url", "db_url", "cookie_secret_file", "log_level"))
    log_level = _string(hub["log_level"], "hub.log_level")
    if log_level not in LOG_LEVELS:
        raise SettingsError(
            "hub.log_level", f"is {log_level!r}; choose one of: {', '.join(LOG_LEVELS)}"
        )
    hub_settings = HubSettings(
        bind_url=_url(hub["bind_url"], "hub.bind_url", ("http",), allow_path=False),
        db_url=_string(hub["db_url"], "hub.db_url"),
        cookie_secret_file=_secret_path(
            hub["cookie_secret_file"], "hub.cookie_secret_file", is_token=False
        ),
        log_level=log_level,
    )

    proxy = _section(top["proxy"], "proxy", ("api_url", "auth_token_file"))
    proxy_settings = ProxySettings(
        api_url=_url(proxy["api_url"], "proxy.api_url", ("http",), allow_path=False),
        auth_token_file=_secret_path(
            proxy["auth_token_file"], "proxy.auth_token_file", is_token=True
        ),
    )

    authenticator = _parse_authenticator(top["authenticator"])

    allowed_users = _usernames(top["allowed_users"], "allowed_users")
    admin_users = _usernames(top["admin_users"], "admin_users")
    allow_all = _bool(top["allow_all"], "allow_all")
    if not allowed_users and not allow_all:
        raise SettingsError(
            "allowed_users",
            "is empty and allow_all is false, so no user could log in; "
            "set allowed_users or allow_all",
        )
    not_allowed = sorted(admin_users - allowed_users)
    if not_allowed and not allow_all:
        raise SettingsError(
            "admin_users",
            f"{', '.join(map(repr, not_allowed))} would be admin but not allowed to log in "
            "(not in allowed_users, and allow_all is false); add to allowed_users",
        )
    authenticator.check_users(allowed_users, allow_all)

    spawner = _section(
        top["spawner"],
        "spawner",
        (
            "cmd",
            "default_url",
            "notebook_dir",
            "start_timeout",
            "http_timeout",
            "environment",
            "log_dir",
        ),
    )
    cmd = spawner["cmd"]
    if not isinstance(cmd, list) or not cmd:
        raise SettingsError("spawner.cmd", "must be a non-empty list of strings")
    for index, arg in enumerate(cmd):
        _string(arg, f"spawner.cmd[{index}]")
    default_url = _string(spawner["default_url"], "spawner.default_url")
    if not default_url.startswith("/"):
        raise SettingsError(
            "spawner.default_url", f"must start with '/', like /lab, not {default_url!r}"
        )
    environment = spawner["environment"]
    if not isinstance(environment, dict):
        raise SettingsError(
            "spawner.environment",
            f"must be an object of string to string, not {_type_name(environment)}",
        )
    for key, value in environment.items():
        if not key:
            raise SettingsError("spawner.environment", "variable names must not be empty")
        _string(value, f"spawner.environment.{key}", allow_empty=True)
    spawner_settings = SpawnerSettings(
        cmd=tuple(cmd),
        default_url=default_url,
        notebook_dir=_string(spawner["notebook_dir"], "spawner.notebook_dir"),
        start_timeout=_positive_int(spawner["start_timeout"], "spawner.start_timeout"),
        http_timeout=_positive_int(spawner["http_timeout"], "spawner.http_timeout"),
        environment=MappingProxyType(dict(environment)),
        log_dir=_absolute_path(spawner["log_dir"], "spawner.log_dir"),
    )

    api_client = _section(top["api_client"], "api_client", ("service_name", "token_file"))
    service_name = _string(api_client["service_name"], "api_client.service_name")
    if not SERVICE_NAME_PATTERN.match(service_name):
        raise SettingsError(
            "api_client.service_name",
            f"invalid service name {service_name!r}; use lowercase letters, digits, "
            "'_', '.', '-', starting with a letter or digit",
        )
    api_client_settings = ApiClientSettings(
        service_name=service_name,
        token_file=_secret_path(api_client["token_file"], "api_client.token_file", is_token=True),
    )

    return Settings(
        version=SETTINGS_VERSION,
        public_url=public_url,
        hub=hub_settings,
        proxy=proxy_settings,
        authenticator=authenticator,
        allowed_users=allowed_users,
        admin_users=admin_users,
        allow_all=allow_all,
        spawner=spawner_settings,
        api_client=api_client_settings,
    )


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a settings file.

    Args:
        path: The JSON settings file.

    Returns:
        The validated settings.

    Raises:
        SettingsError: If the file cannot be read, is not JSON, or breaks a rule.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError("settings file", f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError("settings file", f"cannot read {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(
            "settings file", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    return parse_settings(data)


def apply_settings(c: Any, settings: Settings) -> None:
    """Set JupyterHub configuration from validated settings.

    Args:
        c: The traitlets config object (``c`` in ``jupyterhub_config.py``).
        settings: Settings from :func:`load_settings`.

    Raises:
        SettingsError: If a token file became unreadable since validation.
    """
    c.JupyterHub.bind_url = settings.public_url
    c.JupyterHub.public_url = settings.public_url
    c.JupyterHub.hub_bind_url = settings.hub.bind_url
    c.JupyterHub.db_url = settings.hub.db_url
    c.JupyterHub.cookie_secret_file = settings.hub.cookie_secret_file
    c.JupyterHub.log_level = settings.hub.log_level
    # A hub restart (upgrade, config change) must leave running user servers alone.
    c.JupyterHub.cleanup_servers = False
    # An upgraded JupyterHub migrates the database at start instead of refusing to
    # run; for SQLite it first copies the file aside as a backup.
    c.JupyterHub.upgrade_db = True

    # The proxy is its own supervisor program, so restarting the hub loses no route.
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = settings.proxy.api_url
    # Passed in config, never argv or logs: argv is world-readable in /proc.
    c.ConfigurableHTTPProxy.auth_token = read_secret_file(
        settings.proxy.auth_token_file, "proxy.auth_token_file"
    )

    settings.authenticator.apply(c)
    c.Authenticator.allowed_users = set(settings.allowed_users)
    c.Authenticator.admin_users = set(settings.admin_users)
    c.Authenticator.allow_all = settings.allow_all
    # The inventory is the one list of who may log in: with JupyterHub 5's default,
    # anyone once stored in the hub database would stay allowed after being removed
    # from allowed_users.
    c.Authenticator.allow_existing_users = False

    # LocalProcessSpawner, but each server logs to a file of its own: the hub's
    # output is a pipe that dies with the hub, and servers outlive hub restarts.
    c.JupyterHub.spawner_class = "hub_app.spawners.LoggingLocalProcessSpawner"
    c.LoggingLocalProcessSpawner.log_dir = settings.spawner.log_dir
    c.Spawner.cmd = list(settings.spawner.cmd)
    c.Spawner.default_url = settings.spawner.default_url
    c.Spawner.notebook_dir = settings.spawner.notebook_dir
    c.Spawner.start_timeout = settings.spawner.start_timeout
    c.Spawner.http_timeout = settings.spawner.http_timeout
    c.Spawner.environment = dict(settings.spawner.environment)

    service_name = settings.api_client.service_name
    c.JupyterHub.services = [
        {
            "name": service_name,
            "api_token": read_secret_file(settings.api_client.token_file, "api_client.token_file"),
        }
    ]
    c.JupyterHub.load_roles = [
        {
            "name": API_CLIENT_ROLE,
            "description": "What the hub-app operator CLI needs, and nothing more",
            "scopes": list(API_CLIENT_SCOPES),
            "services": [service_name],
        }
    ]


def apply_settings_file(c: Any, path: str | os.PathLike[str] = DEFAULT_SETTINGS_PATH) -> None:
    """Load a settings file and apply it, or stop the hub with a clear message.

    Args:
        c: The traitlets config object (``c`` in ``jupyterhub_config.py``).
        path: The JSON settings file.

    Raises:
        SystemExit: With status 2 if the settings are unusable, after printing
            ``hub_app settings error in <path>: <setting>: <problem>`` to stderr, so
            the process supervisor's log shows why the hub did not start.
    """
    try:
        apply_settings(c, load_settings(path))
    except SettingsError as e:
        print(f"hub_app settings error in {path}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
