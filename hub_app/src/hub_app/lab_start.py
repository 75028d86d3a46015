"""A Jupyter Server extension: JupyterLab starts without asking Node.js for yarn's settings.

Enabled in each user's server (``jupyter_server_config.d/hub_app-lab-start.json``
in the hub's environment).

JupyterLab 4 builds its application options when its server extension is
first looked at (``jupyterlab.labapp`` reads the application's version on
import), and their npm registry's default runs ``node yarn.js config --json``
whenever ``node`` is on PATH (``jupyterlab.commands._yarn_config``). Node.js is
on every hub's PATH (the proxy runs on it), and that one call was 0.44 s of a
server's 1.58 s start here (benchmarks/results/spawn-latency.md), and as much
CPU per server of a class starting at once. The registry is only used to
build JupyterLab extensions from source, which no user can do here (the
application directory is the hub's environment's, root's; prebuilt extensions
from pip need no registry). This extension answers yarn's settings as empty,
which is what JupyterLab does itself when it finds no Node.js: the registry is
then yarn's default.

jupyter_server looks at the enabled extensions in the order of their names,
so this one (``hub_app.lab_start``) is looked at before ``jupyterlab``: the change is
made then, in ``_jupyter_server_extension_points``. Importing
``jupyterlab.commands`` runs no Node.js itself.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__all__ = ["NO_YARN_CONFIG", "skip_yarn_config"]

# What jupyterlab.commands._yarn_config returns when it finds no Node.js.
NO_YARN_CONFIG: dict[str, dict] = {"yarn config": {}, "npm config": {}}
log = logging.getLogger(__name__)


def _without_node(logger: Any) -> dict[str, dict]:
    logger.debug("hub_app.lab_start: yarn's settings not read (no source builds on this hub)")
    return {key: dict(value) for key, value in NO_YARN_CONFIG.items()}


def skip_yarn_config() -> bool:
    """Have JupyterLab take yarn's settings as empty; False where there is nothing to change."""
    try:
        commands = importlib.import_module("jupyterlab.commands")
    except ImportError:
        return False
    if not callable(getattr(commands, "_yarn_config", None)):
        log.warning(
            "hub_app.lab_start: this JupyterLab has no jupyterlab.commands._yarn_config;"
            " its start may run Node.js"
        )
        return False
    commands._yarn_config = _without_node
    return True


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    skip_yarn_config()
    return [{"module": "hub_app.lab_start"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # The change happened when jupyter_server looked at the extension.
    serverapp.log.debug("hub_app.lab_start: loaded")
