"""The settings file's hub-wide sections: ``hub``, ``proxy``, ``api_client`` and who may log in.

Errors are :class:`SettingsError` naming the dotted setting.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from . import primitives as p
from .authenticator import AuthenticatorSettings
from .primitives import SettingsError

__all__ = [
    "LOG_LEVELS",
    "ApiClientSettings",
    "HubSettings",
    "ProxySettings",
    "admin_role",
    "check_logins",
    "parse_api_client",
    "parse_hub",
    "parse_proxy",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SERVICE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


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


def parse_hub(data: Any) -> HubSettings:
    hub = p.section(data, "hub", ("bind_url", "db_url", "cookie_secret_file", "log_level"))
    return HubSettings(
        bind_url=p.url(hub["bind_url"], "hub.bind_url", ("http",), allow_path=False),
        db_url=p.string(hub["db_url"], "hub.db_url"),
        cookie_secret_file=p.secret_path(
            hub["cookie_secret_file"], "hub.cookie_secret_file", is_token=False
        ),
        log_level=p.choice(hub["log_level"], "hub.log_level", LOG_LEVELS),
    )


def check_reachable_hub(hub: HubSettings) -> None:
    """With servers on other hosts (Slurm's nodes), the hub's API must be on a private address.

    Those servers call the hub's API (``hub.bind_url``, also where they connect):
    loopback is not reachable from another host, a wildcard is no address to
    connect to, and a public address would open the API to the internet.

    Raises:
        SettingsError: Naming ``hub.bind_url`` and the fix.
    """
    host, _ = p.url_address(hub.bind_url)
    fix = (
        "set it to http://ADDRESS:8081 with ADDRESS this host's address on the network "
        "the compute nodes share with it (proxy_default_target in the inventory)"
    )
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        raise SettingsError(
            "hub.bind_url",
            f"is {hub.bind_url}, not an IP address; the nodes' servers need one: {fix}",
        ) from None
    if address.is_loopback or address.is_unspecified:
        raise SettingsError(
            "hub.bind_url",
            f"is {hub.bind_url}, which the servers on the compute nodes cannot reach "
            f"(loopback or every address): {fix}",
        )
    if not address.is_private:
        raise SettingsError(
            "hub.bind_url",
            f"is {hub.bind_url}, a public address: the hub's API would be open beyond the "
            f"cluster; {fix}, a private one",
        )


def parse_proxy(data: Any, hub: HubSettings) -> ProxySettings:
    proxy = p.section(data, "proxy", ("api_url", "auth_token_file"))
    api_url = p.url(proxy["api_url"], "proxy.api_url", ("http",), allow_path=False)
    if p.url_address(api_url) == p.url_address(hub.bind_url):
        raise SettingsError(
            "proxy.api_url",
            f"is {api_url}, the address the hub itself listens on (hub.bind_url); "
            "the proxy's API needs a port of its own",
        )
    return ProxySettings(
        api_url=api_url,
        auth_token_file=p.secret_path(
            proxy["auth_token_file"], "proxy.auth_token_file", is_token=True
        ),
    )


def parse_api_client(data: Any) -> ApiClientSettings:
    api_client = p.section(data, "api_client", ("service_name", "token_file"))
    service_name = p.string(api_client["service_name"], "api_client.service_name")
    if not SERVICE_NAME_PATTERN.match(service_name):
        raise SettingsError(
            "api_client.service_name",
            f"invalid service name {service_name!r}; use lowercase letters, digits, "
            "'_', '.', '-', starting with a letter or digit",
        )
    return ApiClientSettings(
        service_name=service_name,
        token_file=p.secret_path(api_client["token_file"], "api_client.token_file", is_token=True),
    )


def check_logins(
    authenticator: AuthenticatorSettings,
    allowed_users: frozenset[str],
    admin_users: frozenset[str],
    allow_all: bool,
) -> None:
    """Somebody can log in, every admin can, and every allowed user can with this kind."""
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


def admin_role(admin_users: frozenset[str]) -> dict[str, Any]:
    """JupyterHub's built-in ``admin`` role, with exactly ``admin_users`` as its members.

    ``Authenticator.admin_users`` can only grant: a name taken out of it stays an
    admin in the hub's database (its help says so, JupyterHub 5.5). A member list
    given for the admin role is exact at every start instead: JupyterHub makes the
    listed users admins and sets ``admin = False`` on every other user
    (``JupyterHub.init_role_assignment``), so the inventory is the one list of
    admins, both ways. The role keeps JupyterHub's own scopes; services and groups
    hold no admin role in this bundle, so their empty lists change nothing.

    Args:
        admin_users: The validated ``admin_users`` setting.

    Returns:
        A ``JupyterHub.load_roles`` entry.
    """
    return {"name": "admin", "users": sorted(admin_users)}
