"""A Jupyter Server extension: a busy or watched kernel counts as activity.

Loaded into each user's server (``jupyter_server_config.d/hub_app-activity.json``
in the hub's environment). jupyter_server reports to the hub only what happened:
API requests, kernel messages. A kernel computing for an hour sends no message
while it computes, and a notebook left open sends nothing between cells, so the
idle culler would stop both. Every ``interval`` seconds this extension looks at
the kernels: if one is busy, or has a browser connected, the server is in use
now. jupyter_server counts every ``*_last_activity`` value of its settings as
activity (``ServerWebApplication.last_activity``), and jupyterhub-singleuser
reports that to the hub.

It imports nothing beyond jupyter_server's own dependencies: it loads at every
server start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tornado.ioloop import PeriodicCallback

__all__ = ["ACTIVITY_SETTING", "CHECK_SECONDS", "kernels_in_use"]

ACTIVITY_SETTING = "hub_app_kernels_last_activity"
# Shorter than the shortest activity interval the hub asks for (10 s).
CHECK_SECONDS = 5


def kernels_in_use(kernels: list[dict[str, Any]]) -> bool:
    """Whether any kernel model (jupyter_server's) is computing or has a client attached."""
    return any(
        kernel.get("execution_state") == "busy" or kernel.get("connections", 0) > 0
        for kernel in kernels
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hub_app.server_activity"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    kernel_manager = serverapp.kernel_manager

    def mark_if_in_use() -> None:
        if kernels_in_use(kernel_manager.list_kernels()):
            settings[ACTIVITY_SETTING] = datetime.now(UTC)

    callback = PeriodicCallback(mark_if_in_use, CHECK_SECONDS * 1000)
    callback.start()
    # Kept where jupyter_server keeps the server's state, so it lives as long.
    settings["hub_app_activity_callback"] = callback
    serverapp.log.info(
        "hub_app.server_activity: busy or connected kernels count as activity (checked every %d s)",
        CHECK_SECONDS,
    )
