"""The settings file's ``idle_culler`` and ``metrics`` sections: the hub's own services.

The idle culler is jupyterhub-idle-culler, run by the hub as a managed service
(through :mod:`hub_app.idle_culler`, which records each run); the metrics
section makes a token for a Prometheus scraper. Each service gets a role
holding only the scopes it uses. Errors are :class:`SettingsError` naming the
dotted setting.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import primitives as p
from .primitives import SettingsError

__all__ = [
    "IDLE_CULLER_SCOPES",
    "IDLE_CULLER_SERVICE",
    "METRICS_SCOPES",
    "METRICS_SERVICE",
    "IdleCullerSettings",
    "MetricsSettings",
    "activity_environment",
    "activity_interval",
    "parse_idle_culler",
    "parse_metrics",
    "service_roles",
    "services",
]

IDLE_CULLER_SERVICE = "idle-culler"
# What jupyterhub-idle-culler's README lists, and nothing more: the user list,
# each user's and server's last activity, stopping servers; admin:users only to
# delete idle users too.
IDLE_CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")
IDLE_CULLER_USER_SCOPES = ("admin:users",)
METRICS_SERVICE = "prometheus"
METRICS_SCOPES = ("read:metrics",)

# Activity reaches the hub in two ways: each server reports its own
# (JUPYTERHUB_ACTIVITY_INTERVAL) and the hub reads the proxy's routes
# (JupyterHub.last_activity_interval); both default to 5 minutes. With the
# culler on, both, and the culler's own check, follow its timeout: a quarter
# of it, so a server is stopped at most about 1.5 timeouts after its last use.
ACTIVITY_INTERVAL_DEFAULT = 300
ACTIVITY_INTERVAL_MIN = 10
IDLE_TIMEOUT_MIN = 60


@dataclass(frozen=True)
class IdleCullerSettings:
    enabled: bool
    # Seconds without activity after which a server is stopped.
    timeout: int
    # Seconds after which a server is stopped even if active; 0 for never.
    max_age: int
    # Seconds between the culler's checks; 0 for activity_interval(timeout).
    every: int
    # Delete idle users too (not only their servers).
    remove_users: bool
    # Where hub_app.idle_culler records each run (read by `hub-app health`).
    state_file: str
    # The culler's own log, with each decision.
    log_file: str

    @property
    def check_interval(self) -> int:
        """Seconds between the culler's checks."""
        return self.every or activity_interval(self.timeout)


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool
    # The scraper's token (root-only); read only when enabled.
    token_file: str


def activity_interval(timeout: int) -> int:
    """How often activity is reported for an idle timeout: a quarter of it, 10 s to 5 min."""
    return max(ACTIVITY_INTERVAL_MIN, min(ACTIVITY_INTERVAL_DEFAULT, timeout // 4))


def parse_idle_culler(data: Any) -> IdleCullerSettings:
    path = "idle_culler"
    section = p.section(
        data,
        path,
        ("enabled", "timeout", "max_age", "every", "remove_users", "state_file", "log_file"),
    )
    timeout = p.at_least_one(section["timeout"], f"{path}.timeout")
    if timeout < IDLE_TIMEOUT_MIN:
        # Activity is reported every 10 s at the fastest: a shorter timeout would
        # stop servers that are in use.
        raise SettingsError(
            f"{path}.timeout",
            f"is {timeout} seconds; use at least {IDLE_TIMEOUT_MIN} (servers report "
            f"their activity every {ACTIVITY_INTERVAL_MIN} s at the fastest)",
        )
    every = p.count(section["every"], f"{path}.every", "0 for a quarter of the timeout")
    if every > timeout:
        raise SettingsError(
            f"{path}.every",
            f"is {every} seconds, longer than the idle timeout ({timeout}); servers would stay "
            "up to twice the timeout: use at most the timeout, or 0 for a quarter of it",
        )
    return IdleCullerSettings(
        enabled=p.boolean(section["enabled"], f"{path}.enabled"),
        timeout=timeout,
        max_age=p.count(section["max_age"], f"{path}.max_age", "0 for no maximum age"),
        every=every,
        remove_users=p.boolean(section["remove_users"], f"{path}.remove_users"),
        state_file=p.absolute_path(section["state_file"], f"{path}.state_file"),
        log_file=p.absolute_path(section["log_file"], f"{path}.log_file"),
    )


def parse_metrics(data: Any) -> MetricsSettings:
    section = p.section(data, "metrics", ("enabled", "token_file"))
    enabled = p.boolean(section["enabled"], "metrics.enabled")
    token_file = (
        p.secret_path(section["token_file"], "metrics.token_file", is_token=True)
        if enabled
        else p.absolute_path(section["token_file"], "metrics.token_file")
    )
    return MetricsSettings(enabled=enabled, token_file=token_file)


def services(culler: IdleCullerSettings, metrics: MetricsSettings) -> list[dict[str, Any]]:
    """The managed idle culler and the scraper's token, as ``JupyterHub.services`` entries."""
    entries: list[dict[str, Any]] = []
    if culler.enabled:
        entries.append(
            {
                "name": IDLE_CULLER_SERVICE,
                # The hub starts it, with its API URL and a token of its own in the
                # environment, and starts it again with every hub restart.
                "command": [
                    sys.executable,
                    "-m",
                    "hub_app.idle_culler",
                    f"--state-file={culler.state_file}",
                    f"--log-file={culler.log_file}",
                    f"--timeout={culler.timeout}",
                    f"--cull-every={culler.check_interval}",
                    f"--max-age={culler.max_age}",
                    f"--cull-users={str(culler.remove_users).lower()}",
                    # The inventory's administrators stay, idle or not.
                    "--cull-admin-users=false",
                    # No config file from the service's working directory.
                    "--config=",
                ],
            }
        )
    if metrics.enabled:
        entries.append(
            {
                "name": METRICS_SERVICE,
                "api_token": p.read_secret_file(metrics.token_file, "metrics.token_file"),
            }
        )
    return entries


def service_roles(culler: IdleCullerSettings, metrics: MetricsSettings) -> list[dict[str, Any]]:
    """One role per service, with only the scopes it uses (``JupyterHub.load_roles``)."""
    roles: list[dict[str, Any]] = []
    if culler.enabled:
        scopes = IDLE_CULLER_SCOPES + (IDLE_CULLER_USER_SCOPES if culler.remove_users else ())
        roles.append(
            {
                "name": IDLE_CULLER_SERVICE,
                "description": "Stop idle servers (and remove idle users if configured)",
                "scopes": list(scopes),
                "services": [IDLE_CULLER_SERVICE],
            }
        )
    if metrics.enabled:
        roles.append(
            {
                "name": "metrics-scraper",
                "description": "Read the hub's Prometheus metrics, nothing else",
                "scopes": list(METRICS_SCOPES),
                "services": [METRICS_SERVICE],
            }
        )
    return roles


def activity_environment(c: Any, culler: IdleCullerSettings) -> dict[str, str]:
    """Report activity often enough for the culler's timeout.

    Sets the hub's own interval (reading the proxy's routes) and returns the
    servers' environment for theirs (jupyterhub-singleuser reads it).
    """
    interval = activity_interval(culler.timeout) if culler.enabled else ACTIVITY_INTERVAL_DEFAULT
    c.JupyterHub.last_activity_interval = interval
    return {"JUPYTERHUB_ACTIVITY_INTERVAL": str(interval)}
