"""Load, validate and apply the hub's one JSON settings file.

Ansible renders the file from inventory; ``jupyterhub_config.py`` on the host only
calls :func:`apply_settings_file`. Every rule lives here, so the same check runs as
the template task's ``validate:`` command (``hub-app check-settings``) and when the
hub starts, and a bad inventory fails before the file on the host changes.

Every error names the dotted path of the setting at fault (``hub.bind_url``,
``authenticator.password_hashes.alice``) and says what is allowed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import ssl
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from .passwords import check_encoded_hash
from .spawner_settings import SpawnerSettings, apply_spawner, parse_spawner

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
    # The kind's own allow rules (beside allowed_users and allow_all), as dotted
    # settings, for the "nobody could log in" message; empty when it has none.
    allow_rule_settings: ClassVar[tuple[str, ...]]

    def has_allow_rule(self) -> bool:
        """Whether one of the kind's own allow rules (groups, organisations) is set."""

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """Raise SettingsError if the allowed users could not log in with this kind."""

    def apply(self, c: Any) -> None:
        """Set the authenticator class and its traits on a JupyterHub config."""


@dataclass(frozen=True)
class PamSettings:
    """``authenticator.kind = "pam"``: system accounts checked through PAM."""

    kind: ClassVar[str] = "pam"
    allow_rule_settings: ClassVar[tuple[str, ...]] = ()
    # pam_open_session fails in containers and is rarely needed for a hub.
    open_sessions: bool = False

    def has_allow_rule(self) -> bool:
        """PAM has no allow rule of its own: allowed_users or allow_all decide."""
        return False

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
    allow_rule_settings: ClassVar[tuple[str, ...]] = ()
    password_hashes: Mapping[str, str]

    def has_allow_rule(self) -> bool:
        """A hash is not an allow rule: allowed_users or allow_all decide."""
        return False

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


def _apply_oauth_client(c: Any, client_id: str, client_secret_file: str, callback_url: str):
    """The OAuth client settings GitHub and OIDC share (``OAuthenticator`` traits)."""
    c.OAuthenticator.client_id = client_id
    # Read here, from a root-only file, so the secret is never in the settings file,
    # a process argument or a log.
    c.OAuthenticator.client_secret = read_secret_file(
        client_secret_file, "authenticator.client_secret_file"
    )
    c.OAuthenticator.oauth_callback_url = callback_url


@dataclass(frozen=True)
class GitHubSettings:
    """``authenticator.kind = "github"``: oauthenticator's GitHubOAuthenticator.

    Membership of ``allowed_organizations`` (``org`` or ``org:team``) is checked by
    GitHubOAuthenticator itself, against GitHub's API, at every login.
    """

    kind: ClassVar[str] = "github"
    allow_rule_settings: ClassVar[tuple[str, ...]] = ("authenticator.allowed_organizations",)
    client_id: str
    client_secret_file: str
    callback_url: str
    allowed_organizations: tuple[str, ...]
    github_url: str = "https://github.com"

    def has_allow_rule(self) -> bool:
        """Whether organisations or teams are listed."""
        return bool(self.allowed_organizations)

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """GitHub accounts live at GitHub, so there is nothing to check here."""

    def apply(self, c: Any) -> None:
        """Select GitHubOAuthenticator and set its client, URLs and organisations."""
        c.JupyterHub.authenticator_class = "oauthenticator.github.GitHubOAuthenticator"
        _apply_oauth_client(c, self.client_id, self.client_secret_file, self.callback_url)
        c.GitHubOAuthenticator.github_url = self.github_url
        c.GitHubOAuthenticator.allowed_organizations = set(self.allowed_organizations)
        # read:org lets the hub see private organisation and team membership, not
        # only public membership; nothing broader is asked for.
        c.GitHubOAuthenticator.scope = ["read:org"] if self.allowed_organizations else []


@dataclass(frozen=True)
class OidcSettings:
    """``authenticator.kind = "oidc"``: oauthenticator's GenericOAuthenticator.

    The endpoints are explicit (Ansible reads them from the issuer's discovery
    document at deploy time), so the hub starts even when the provider is down.
    """

    kind: ClassVar[str] = "oidc"
    allow_rule_settings: ClassVar[tuple[str, ...]] = ("authenticator.allowed_groups",)
    client_id: str
    client_secret_file: str
    callback_url: str
    authorize_url: str
    token_url: str
    userdata_url: str
    scopes: tuple[str, ...]
    username_claim: str
    groups_claim: str
    allowed_groups: tuple[str, ...]
    login_service: str = "OpenID Connect"

    def has_allow_rule(self) -> bool:
        """Whether groups are listed."""
        return bool(self.allowed_groups)

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """Accounts live at the provider, so there is nothing to check here."""

    def apply(self, c: Any) -> None:
        """Select GenericOAuthenticator and set its client, endpoints, claims and groups."""
        c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
        _apply_oauth_client(c, self.client_id, self.client_secret_file, self.callback_url)
        c.GenericOAuthenticator.login_service = self.login_service
        c.GenericOAuthenticator.authorize_url = self.authorize_url
        c.GenericOAuthenticator.token_url = self.token_url
        c.GenericOAuthenticator.userdata_url = self.userdata_url
        c.GenericOAuthenticator.scope = list(self.scopes)
        c.GenericOAuthenticator.username_claim = self.username_claim
        if self.allowed_groups:
            # oauthenticator 17 reads groups from the userinfo answer kept in the
            # auth state under "oauth_user"; allowed_groups needs manage_groups.
            c.GenericOAuthenticator.manage_groups = True
            c.GenericOAuthenticator.auth_state_groups_key = f"oauth_user.{self.groups_claim}"
            c.GenericOAuthenticator.allowed_groups = set(self.allowed_groups)


@dataclass(frozen=True)
class LdapSettings:
    """``authenticator.kind = "ldap"``: ldapauthenticator's LDAPAuthenticator.

    Either ``bind_dn_templates`` (the user binds with a DN made from the username)
    or ``search`` (a service account looks the user's DN up first).
    """

    kind: ClassVar[str] = "ldap"
    allow_rule_settings: ClassVar[tuple[str, ...]] = ("authenticator.allowed_groups",)
    server_address: str
    tls_strategy: str
    allowed_groups: tuple[str, ...]
    server_port: int | None = None
    ca_certs_file: str | None = None
    bind_dn_templates: tuple[str, ...] = ()
    search_base: str | None = None
    search_user_attribute: str = "uid"
    search_bind_dn: str | None = None
    search_bind_password_file: str | None = None

    def has_allow_rule(self) -> bool:
        """Whether group DNs are listed."""
        return bool(self.allowed_groups)

    def check_users(self, allowed_users: frozenset[str], allow_all: bool) -> None:
        """Accounts live in the directory, so there is nothing to check here."""

    def apply(self, c: Any) -> None:
        """Select LDAPAuthenticator and set its server, TLS, DN rules and groups."""
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        c.LDAPAuthenticator.server_address = self.server_address
        if self.server_port is not None:
            c.LDAPAuthenticator.server_port = self.server_port
        c.LDAPAuthenticator.tls_strategy = self.tls_strategy
        # ldap3 does not verify the server's certificate unless told to; the bind
        # sends the user's password, so it must go to the right server.
        tls_kwargs: dict[str, Any] = {"validate": ssl.CERT_REQUIRED, "sni": self.server_address}
        if self.ca_certs_file:
            tls_kwargs["ca_certs_file"] = self.ca_certs_file
        c.LDAPAuthenticator.tls_kwargs = tls_kwargs
        if self.bind_dn_templates:
            c.LDAPAuthenticator.bind_dn_template = list(self.bind_dn_templates)
        else:
            c.LDAPAuthenticator.lookup_dn = True
            c.LDAPAuthenticator.user_search_base = self.search_base
            c.LDAPAuthenticator.user_attribute = self.search_user_attribute
            c.LDAPAuthenticator.lookup_dn_user_dn_attribute = self.search_user_attribute
            if self.search_bind_dn:
                c.LDAPAuthenticator.lookup_dn_search_user = self.search_bind_dn
                c.LDAPAuthenticator.lookup_dn_search_password = read_secret_file(
                    self.search_bind_password_file or "", "authenticator.search.bind_password_file"
                )
        if self.allowed_groups:
            c.LDAPAuthenticator.allowed_groups = list(self.allowed_groups)


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


def _parse_pam(section: dict, path: str, public_url: str) -> PamSettings:
    if "password_hashes" in section:
        raise SettingsError(
            _join(path, "password_hashes"),
            'is only used with kind "hashed"; PAM checks system passwords, so remove it',
        )
    _section(section, path, ("kind",), ("open_sessions",))
    open_sessions = section.get("open_sessions", False)
    return PamSettings(open_sessions=_bool(open_sessions, _join(path, "open_sessions")))


def _parse_hashed(section: dict, path: str, public_url: str) -> HashedSettings:
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


def _require_package(module: str, package: str, kind: str) -> None:
    # check-settings runs in the hub's environment: a kind whose package is missing
    # fails there, before the file is replaced, not at the hub's next start.
    if importlib.util.find_spec(module) is None:
        raise SettingsError(
            "authenticator.kind",
            f"{kind!r} needs the {package} package in the hub's environment; install it "
            "(the jupyterhub role does so for this kind)",
        )


def _string_list(value: Any, path: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SettingsError(path, f"must be a list of strings, not {_type_name(value)}")
    if not value and not allow_empty:
        raise SettingsError(path, "must not be empty")
    seen: list[str] = []
    for index, item in enumerate(value):
        text = _string(item, f"{path}[{index}]")
        if text in seen:
            raise SettingsError(f"{path}[{index}]", f"{text!r} is listed twice")
        seen.append(text)
    return tuple(seen)


def _oauth_client(section: dict, path: str, public_url: str) -> dict[str, str]:
    """Check what every OAuth kind needs and derive its callback URL.

    The callback URL is always ``<public_url>hub/oauth_callback``: it is never typed
    twice, so it cannot drift from the URL users open.
    """
    if urlsplit(public_url).scheme != "https":
        raise SettingsError(
            "public_url",
            f"is {public_url!r}, but authenticator.kind {section['kind']!r} sends users "
            "back to the hub with a login code, which must not travel in clear text; "
            "use an https:// public URL",
        )
    base = public_url if public_url.endswith("/") else public_url + "/"
    return {
        "client_id": _string(section["client_id"], _join(path, "client_id")),
        "client_secret_file": _secret_path(
            section["client_secret_file"], _join(path, "client_secret_file"), is_token=True
        ),
        "callback_url": base + "hub/oauth_callback",
    }


_GITHUB_ORGANIZATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(:[A-Za-z0-9_.-]+)?$")


def _parse_github(section: dict, path: str, public_url: str) -> GitHubSettings:
    _section(
        section,
        path,
        ("kind", "client_id", "client_secret_file", "allowed_organizations"),
        ("github_url",),
    )
    _require_package("oauthenticator", "oauthenticator", "github")
    organizations_path = _join(path, "allowed_organizations")
    organizations = _string_list(section["allowed_organizations"], organizations_path)
    for index, entry in enumerate(organizations):
        if not _GITHUB_ORGANIZATION.match(entry):
            raise SettingsError(
                f"{organizations_path}[{index}]",
                f"{entry!r} is not an organisation ('my-org') or a team ('my-org:my-team')",
            )
    github_url = section.get("github_url", "https://github.com")
    return GitHubSettings(
        **_oauth_client(section, path, public_url),
        allowed_organizations=organizations,
        github_url=_url(github_url, _join(path, "github_url"), ("https",), allow_path=True),
    )


def _parse_oidc(section: dict, path: str, public_url: str) -> OidcSettings:
    _section(
        section,
        path,
        (
            "kind",
            "client_id",
            "client_secret_file",
            "authorize_url",
            "token_url",
            "userdata_url",
            "scopes",
            "username_claim",
            "groups_claim",
            "allowed_groups",
        ),
        ("login_service",),
    )
    _require_package("oauthenticator", "oauthenticator", "oidc")
    endpoints = {
        key: _url(section[key], _join(path, key), ("https",), allow_path=True)
        for key in ("authorize_url", "token_url", "userdata_url")
    }
    scopes = _string_list(section["scopes"], _join(path, "scopes"))
    if "openid" not in scopes:
        raise SettingsError(
            _join(path, "scopes"),
            "must include 'openid' (without it the provider answers plain OAuth 2.0, "
            "with no identity claims)",
        )
    return OidcSettings(
        **_oauth_client(section, path, public_url),
        **endpoints,
        scopes=scopes,
        username_claim=_string(section["username_claim"], _join(path, "username_claim")),
        groups_claim=_string(section["groups_claim"], _join(path, "groups_claim")),
        allowed_groups=_string_list(section["allowed_groups"], _join(path, "allowed_groups")),
        login_service=_string(
            section.get("login_service", "OpenID Connect"), _join(path, "login_service")
        ),
    )


LDAP_TLS_STRATEGIES = ("before_bind", "on_connect")


def _parse_ldap(section: dict, path: str, public_url: str) -> LdapSettings:
    _section(
        section,
        path,
        ("kind", "server_address", "tls_strategy", "allowed_groups"),
        ("server_port", "ca_certs_file", "bind_dn_templates", "search"),
    )
    _require_package("ldapauthenticator", "jupyterhub-ldapauthenticator", "ldap")
    tls_strategy = _string(section["tls_strategy"], _join(path, "tls_strategy"))
    if tls_strategy not in LDAP_TLS_STRATEGIES:
        raise SettingsError(
            _join(path, "tls_strategy"),
            f"is {tls_strategy!r}; choose one of: {', '.join(LDAP_TLS_STRATEGIES)} "
            "(the bind sends the user's password, so there is no clear-text choice)",
        )
    server_port = section.get("server_port")
    if server_port is not None and (type(server_port) is not int or not 0 < server_port < 65536):
        raise SettingsError(
            _join(path, "server_port"), f"must be a port number, not {server_port!r}"
        )
    ca_certs_file = section.get("ca_certs_file")
    if ca_certs_file is not None:
        ca_certs_file = _absolute_path(ca_certs_file, _join(path, "ca_certs_file"))
        if not os.path.isfile(ca_certs_file):
            raise SettingsError(
                _join(path, "ca_certs_file"), f"file {ca_certs_file} does not exist"
            )
    has_templates = "bind_dn_templates" in section
    if has_templates == ("search" in section):
        raise SettingsError(
            _join(path, "bind_dn_templates"),
            "give exactly one of bind_dn_templates (the DN is made from the username) "
            "and search (a search finds the DN)",
        )
    templates: tuple[str, ...] = ()
    search: dict[str, Any] = {}
    if has_templates:
        templates_path = _join(path, "bind_dn_templates")
        templates = _string_list(section["bind_dn_templates"], templates_path, allow_empty=False)
        for index, template in enumerate(templates):
            if "{username}" not in template:
                raise SettingsError(
                    f"{templates_path}[{index}]",
                    f"{template!r} has no {{username}} placeholder, so every user would "
                    "bind as the same DN",
                )
    else:
        search_path = _join(path, "search")
        found = _section(
            section["search"],
            search_path,
            ("base",),
            ("user_attribute", "bind_dn", "bind_password_file"),
        )
        search["search_base"] = _string(found["base"], _join(search_path, "base"))
        search["search_user_attribute"] = _string(
            found.get("user_attribute", "uid"), _join(search_path, "user_attribute")
        )
        if ("bind_dn" in found) != ("bind_password_file" in found):
            raise SettingsError(
                _join(search_path, "bind_password_file"),
                "bind_dn and bind_password_file go together (or leave both out for an "
                "anonymous search)",
            )
        if "bind_dn" in found:
            search["search_bind_dn"] = _string(found["bind_dn"], _join(search_path, "bind_dn"))
            search["search_bind_password_file"] = _secret_path(
                found["bind_password_file"], _join(search_path, "bind_password_file"), is_token=True
            )
    return LdapSettings(
        server_address=_string(section["server_address"], _join(path, "server_address")),
        tls_strategy=tls_strategy,
        allowed_groups=_string_list(section["allowed_groups"], _join(path, "allowed_groups")),
        server_port=server_port,
        ca_certs_file=ca_certs_file,
        bind_dn_templates=templates,
        **search,
    )


# One entry per `authenticator.kind`: a parse function (section, dotted path, the
# public URL) returning a frozen dataclass with `has_allow_rule`, `check_users` and
# `apply`.
AUTHENTICATOR_KINDS: Mapping[str, Callable[[dict, str, str], AuthenticatorSettings]] = (
    MappingProxyType(
        {
            "pam": _parse_pam,
            "hashed": _parse_hashed,
            "github": _parse_github,
            "oidc": _parse_oidc,
            "ldap": _parse_ldap,
        }
    )
)


def _parse_authenticator(data: Any, public_url: str) -> AuthenticatorSettings:
    path = "authenticator"
    if not isinstance(data, dict):
        raise SettingsError(path, f"must be a JSON object, not {_type_name(data)}")
    kind = data.get("kind")
    choices = ", ".join(AUTHENTICATOR_KINDS)
    if kind not in AUTHENTICATOR_KINDS:
        shown = "missing" if kind is None else repr(kind)
        raise SettingsError(f"{path}.kind", f"is {shown}; choose one of: {choices}")
    return AUTHENTICATOR_KINDS[kind](data, path, public_url)


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

    authenticator = _parse_authenticator(top["authenticator"], public_url)

    allowed_users = _usernames(top["allowed_users"], "allowed_users")
    admin_users = _usernames(top["admin_users"], "admin_users")
    allow_all = _bool(top["allow_all"], "allow_all")
    if not allowed_users and not allow_all and not authenticator.has_allow_rule():
        # An OAuth or LDAP hub with no rule at all would let in nobody (JupyterHub 5)
        # or, configured by hand, everybody with an account at the provider: both
        # are refused here, and allow_all must be said explicitly.
        rules = ", ".join(("allowed_users", *authenticator.allow_rule_settings))
        raise SettingsError(
            "allowed_users",
            f"is empty{', ' if authenticator.allow_rule_settings else ' '}"
            + "".join(f"{rule} is empty, " for rule in authenticator.allow_rule_settings)
            + f"and allow_all is false, so no user could log in; set {rules} or allow_all",
        )
    not_allowed = sorted(admin_users - allowed_users)
    if not_allowed and not allow_all:
        raise SettingsError(
            "admin_users",
            f"{', '.join(map(repr, not_allowed))} would be admin but not allowed to log in "
            "(not in allowed_users, and allow_all is false); add to allowed_users",
        )
    authenticator.check_users(allowed_users, allow_all)

    # The spawner section (kind, limits, options form): hub_app.spawner_settings.
    spawner_settings = parse_spawner(top["spawner"])

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

    # The spawner kind and its settings; every kind's servers log outside the
    # hub's output, so they outlive hub restarts (hub_app.spawner_settings).
    apply_spawner(c, settings.spawner)

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
