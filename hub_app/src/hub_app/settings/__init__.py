"""Load, validate and apply the hub's one JSON settings file.

Ansible renders the file from inventory; ``jupyterhub_config.py`` on the host only
calls :func:`apply_settings_file`. Every rule lives in this package, by concern:
:mod:`.primitives` (ports, URLs, timeouts, names: one check per kind of value),
then :mod:`.hub`, :mod:`.authenticator` and :mod:`.spawner` (the sections). The
same rules run in three places: on the Ansible controller before the play changes
anything (:mod:`hub_app.inventory`, naming the inventory variable), as the template
task's ``validate:`` command (``hub-app check-settings``), and when the hub starts.

Every error names the dotted path of the setting at fault (``hub.bind_url``,
``authenticator.password_hashes.alice``) and says what is allowed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import primitives as p
from .authenticator import AUTHENTICATOR_KINDS, AuthenticatorSettings, parse_authenticator
from .hub import (
    ApiClientSettings,
    HubSettings,
    ProxySettings,
    admin_role,
    check_logins,
    check_reachable_hub,
    parse_api_client,
    parse_hub,
    parse_proxy,
)
from .primitives import SettingsError, check_username, read_secret_file
from .services import (
    IdleCullerSettings,
    MetricsSettings,
    activity_environment,
    parse_idle_culler,
    parse_metrics,
    service_roles,
    services,
)
from .spawner import SpawnerSettings, apply_spawner, parse_spawner

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

API_CLIENT_ROLE = "hub-app-cli"
# Exactly what `hub-app` calls, checked against the @needs_scope decorators of
# JupyterHub 5.5's REST handlers:
#   GET /users                     list:users (names) + read:users (admin, activity)
#                                  + read:servers (the servers dict, from `servers`)
#   GET /users/{name}              read:users, read:servers
#   POST/DELETE /users/{name}/server   servers (delete:servers is its subscope)
#   DELETE /users/{name}           delete:users (`users remove`; JupyterHub 5 has it
#                                  as a scope of its own, a subscope of admin:users)
#   GET /proxy                     proxy
#   POST /users/{name}/tokens      tokens
# admin:users and admin:servers are deliberately absent: they add creating and
# renaming users, reading auth_state and writing server state, none of which the
# CLI does.
API_CLIENT_SCOPES = ("list:users", "read:users", "servers", "delete:users", "proxy", "tokens")


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
    idle_culler: IdleCullerSettings
    metrics: MetricsSettings

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


# --- the whole file ---------------------------------------------------------------


def parse_settings(data: Any, *, on_host: bool = True) -> Settings:
    """Validate settings already decoded from JSON.

    Args:
        data: The decoded JSON document.
        on_host: False to skip the checks that read the hub host's secret files and
            packages (the inventory check on the Ansible controller).

    Returns:
        The validated settings.

    Raises:
        SettingsError: For the first rule broken, naming its setting.
    """
    if not on_host:
        with p.away_from_host():
            return parse_settings(data)
    top = p.section(
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
            "idle_culler",
            "metrics",
        ),
    )
    # Checked first: a different version means the other rules may not apply.
    if type(top["version"]) is not int or top["version"] != SETTINGS_VERSION:
        raise SettingsError("version", f"must be {SETTINGS_VERSION}, not {top['version']!r}")
    public_url = p.url(top["public_url"], "public_url", ("http", "https"), allow_path=True)
    hub = parse_hub(top["hub"])
    proxy = parse_proxy(top["proxy"], hub)
    authenticator = parse_authenticator(top["authenticator"], public_url)
    allowed_users = p.usernames(top["allowed_users"], "allowed_users")
    admin_users = p.usernames(top["admin_users"], "admin_users")
    allow_all = p.boolean(top["allow_all"], "allow_all")
    check_logins(authenticator, allowed_users, admin_users, allow_all)
    spawner = parse_spawner(top["spawner"])
    if spawner.slurm is not None:
        check_reachable_hub(hub)
    return Settings(
        version=SETTINGS_VERSION,
        public_url=public_url,
        hub=hub,
        proxy=proxy,
        authenticator=authenticator,
        allowed_users=allowed_users,
        admin_users=admin_users,
        allow_all=allow_all,
        spawner=spawner,
        api_client=parse_api_client(top["api_client"]),
        idle_culler=parse_idle_culler(top["idle_culler"]),
        metrics=parse_metrics(top["metrics"]),
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
    # Admins are the admin role's members (load_roles below), not
    # Authenticator.admin_users, which can only grant: see hub.admin_role.
    c.Authenticator.allow_all = settings.allow_all
    # The inventory is the one list of who may log in: with JupyterHub 5's default,
    # anyone once stored in the hub database would stay allowed after being removed
    # from allowed_users.
    c.Authenticator.allow_existing_users = False

    # The spawner kind and its settings; every kind's servers log outside the
    # hub's output, so they outlive hub restarts (hub_app.spawner_settings).
    apply_spawner(c, settings.spawner, activity_environment(c, settings.idle_culler))

    service_name = settings.api_client.service_name
    c.JupyterHub.services = [
        {
            "name": service_name,
            "api_token": read_secret_file(settings.api_client.token_file, "api_client.token_file"),
        },
        *services(settings.idle_culler, settings.metrics),
    ]
    c.JupyterHub.load_roles = [
        {
            "name": API_CLIENT_ROLE,
            "description": "What the hub-app operator CLI needs, and nothing more",
            "scopes": list(API_CLIENT_SCOPES),
            "services": [service_name],
        },
        admin_role(settings.admin_users),
        *service_roles(settings.idle_culler, settings.metrics),
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
