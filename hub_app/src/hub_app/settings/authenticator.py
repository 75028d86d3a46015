"""The settings file's ``authenticator`` section: one entry per kind in :data:`AUTHENTICATOR_KINDS`.

Each kind parses its section into a frozen dataclass that knows its allow rules,
checks the allowed users against itself, and applies itself to JupyterHub's
config. Errors are :class:`SettingsError` naming the dotted setting.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from ..passwords import check_encoded_hash
from . import primitives as p
from .primitives import SettingsError, read_secret_file

__all__ = ["AUTHENTICATOR_KINDS", "AuthenticatorSettings", "parse_authenticator"]


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


# --- parsing ---------------------------------------------------------------------


def _parse_pam(section: dict, path: str, public_url: str) -> PamSettings:
    if "password_hashes" in section:
        raise SettingsError(
            p.join(path, "password_hashes"),
            'is only used with kind "hashed"; PAM checks system passwords, so remove it',
        )
    p.section(section, path, ("kind",), ("open_sessions",))
    open_sessions = section.get("open_sessions", False)
    return PamSettings(open_sessions=p.boolean(open_sessions, p.join(path, "open_sessions")))


def _parse_hashed(section: dict, path: str, public_url: str) -> HashedSettings:
    p.section(section, path, ("kind", "password_hashes"))
    hashes_path = p.join(path, "password_hashes")
    hashes = section["password_hashes"]
    if not isinstance(hashes, dict):
        raise SettingsError(
            hashes_path, f"must be an object of username to hash, not {p.type_name(hashes)}"
        )
    for username, encoded in hashes.items():
        entry = f"{hashes_path}.{username}"
        p.check_username(username, entry)
        p.string(encoded, entry)
        try:
            check_encoded_hash(encoded)
        except ValueError as e:
            raise SettingsError(entry, str(e)) from None
    return HashedSettings(password_hashes=MappingProxyType(dict(hashes)))


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
        "client_id": p.string(section["client_id"], p.join(path, "client_id")),
        "client_secret_file": p.secret_path(
            section["client_secret_file"], p.join(path, "client_secret_file"), is_token=True
        ),
        "callback_url": base + "hub/oauth_callback",
    }


_GITHUB_ORGANIZATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(:[A-Za-z0-9_.-]+)?$")


def _parse_github(section: dict, path: str, public_url: str) -> GitHubSettings:
    p.section(
        section,
        path,
        ("kind", "client_id", "client_secret_file", "allowed_organizations"),
        ("github_url",),
    )
    p.require_package("oauthenticator", "oauthenticator", "authenticator.kind", "github")
    organizations_path = p.join(path, "allowed_organizations")
    organizations = p.string_list(section["allowed_organizations"], organizations_path)
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
        github_url=p.url(github_url, p.join(path, "github_url"), ("https",), allow_path=True),
    )


def _parse_oidc(section: dict, path: str, public_url: str) -> OidcSettings:
    p.section(
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
    p.require_package("oauthenticator", "oauthenticator", "authenticator.kind", "oidc")
    endpoints = {
        key: p.url(section[key], p.join(path, key), ("https",), allow_path=True)
        for key in ("authorize_url", "token_url", "userdata_url")
    }
    scopes = p.string_list(section["scopes"], p.join(path, "scopes"))
    if "openid" not in scopes:
        raise SettingsError(
            p.join(path, "scopes"),
            "must include 'openid' (without it the provider answers plain OAuth 2.0, "
            "with no identity claims)",
        )
    return OidcSettings(
        **_oauth_client(section, path, public_url),
        **endpoints,
        scopes=scopes,
        username_claim=p.string(section["username_claim"], p.join(path, "username_claim")),
        groups_claim=p.string(section["groups_claim"], p.join(path, "groups_claim")),
        allowed_groups=p.string_list(section["allowed_groups"], p.join(path, "allowed_groups")),
        login_service=p.string(
            section.get("login_service", "OpenID Connect"), p.join(path, "login_service")
        ),
    )


LDAP_TLS_STRATEGIES = ("before_bind", "on_connect")


def _parse_ldap(section: dict, path: str, public_url: str) -> LdapSettings:
    p.section(
        section,
        path,
        ("kind", "server_address", "tls_strategy", "allowed_groups"),
        ("server_port", "ca_certs_file", "bind_dn_templates", "search"),
    )
    p.require_package(
        "ldapauthenticator", "jupyterhub-ldapauthenticator", "authenticator.kind", "ldap"
    )
    tls_strategy = section["tls_strategy"]
    if tls_strategy not in LDAP_TLS_STRATEGIES:
        raise SettingsError(
            p.join(path, "tls_strategy"),
            f"is {tls_strategy!r}; choose one of: {', '.join(LDAP_TLS_STRATEGIES)} "
            "(the bind sends the user's password, so there is no clear-text choice)",
        )
    server_port = section.get("server_port")
    if server_port is not None:
        p.port(server_port, p.join(path, "server_port"))
    ca_certs_file = section.get("ca_certs_file")
    if ca_certs_file is not None:
        ca_certs_file = p.existing_file(ca_certs_file, p.join(path, "ca_certs_file"))
    has_templates = "bind_dn_templates" in section
    if has_templates == ("search" in section):
        raise SettingsError(
            p.join(path, "bind_dn_templates"),
            "give exactly one of bind_dn_templates (the DN is made from the username) "
            "and search (a search finds the DN)",
        )
    templates: tuple[str, ...] = ()
    search: dict[str, Any] = {}
    if has_templates:
        templates_path = p.join(path, "bind_dn_templates")
        templates = p.string_list(section["bind_dn_templates"], templates_path, allow_empty=False)
        for index, template in enumerate(templates):
            if "{username}" not in template:
                raise SettingsError(
                    f"{templates_path}[{index}]",
                    f"{template!r} has no {{username}} placeholder, so every user would "
                    "bind as the same DN",
                )
    else:
        search_path = p.join(path, "search")
        found = p.section(
            section["search"],
            search_path,
            ("base",),
            ("user_attribute", "bind_dn", "bind_password_file"),
        )
        search["search_base"] = p.string(found["base"], p.join(search_path, "base"))
        search["search_user_attribute"] = p.string(
            found.get("user_attribute", "uid"), p.join(search_path, "user_attribute")
        )
        if ("bind_dn" in found) != ("bind_password_file" in found):
            raise SettingsError(
                p.join(search_path, "bind_password_file"),
                "bind_dn and bind_password_file go together (or leave both out for an "
                "anonymous search)",
            )
        if "bind_dn" in found:
            search["search_bind_dn"] = p.string(found["bind_dn"], p.join(search_path, "bind_dn"))
            search["search_bind_password_file"] = p.secret_path(
                found["bind_password_file"],
                p.join(search_path, "bind_password_file"),
                is_token=True,
            )
    return LdapSettings(
        server_address=p.host_name(section["server_address"], p.join(path, "server_address")),
        tls_strategy=tls_strategy,
        allowed_groups=p.string_list(section["allowed_groups"], p.join(path, "allowed_groups")),
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


def parse_authenticator(data: Any, public_url: str) -> AuthenticatorSettings:
    """Validate the ``authenticator`` section with the parser of its kind."""
    path = "authenticator"
    if not isinstance(data, dict):
        raise SettingsError(path, f"must be a JSON object, not {p.type_name(data)}")
    kind = p.choice(data.get("kind"), f"{path}.kind", tuple(AUTHENTICATOR_KINDS))
    return AUTHENTICATOR_KINDS[kind](data, path, public_url)
