"""hub_app.lab_start with the real jupyter_server and JupyterLab: no Node.js at a server's start.

A server is initialised as jupyterhub-singleuser's is (jupyter_server's
``ServerApp.initialize``: extensions found, linked and loaded, JupyterLab's
included) in a subprocess, with a ``node`` on PATH that only records how it was
called. The same start without the extension must call it (JupyterLab's
``yarn config``), or the test proves nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab")

INITIALISE = (
    "from jupyter_server.serverapp import ServerApp\n"
    "app = ServerApp()\n"
    "app.initialize(argv=['--ServerApp.open_browser=False'])\n"
    "print(sorted(app.extension_manager.extensions))\n"
)


def initialise_server(tmp_path: Path, with_extension: bool) -> tuple[list[str], str]:
    """The calls the stand-in node saw, and the extensions the server loaded."""
    run_dir = tmp_path / ("with" if with_extension else "without")
    bin_dir = run_dir / "bin"
    bin_dir.mkdir(parents=True)
    calls = run_dir / "node-calls"
    node = bin_dir / "node"
    node.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 1\n')
    node.chmod(0o755)
    config_dir = run_dir / "etc" / "jupyter_server_config.d"
    config_dir.mkdir(parents=True)
    if with_extension:
        # As the jupyterhub role enables it in the hub's environment.
        extensions = {"ServerApp": {"jpserver_extensions": {"hub_app.lab_start": True}}}
        (config_dir / "hub_app-lab-start.json").write_text(json.dumps(extensions))
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(run_dir),
        "JUPYTER_CONFIG_DIR": str(run_dir / "config"),
        "JUPYTER_CONFIG_PATH": str(run_dir / "etc"),
        "JUPYTER_DATA_DIR": str(run_dir / "data"),
        "JUPYTER_RUNTIME_DIR": str(run_dir / "runtime"),
    }
    started = subprocess.run(  # noqa: S603 -- this interpreter, a fixed program
        [sys.executable, "-c", INITIALISE],
        cwd=run_dir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    seen = calls.read_text().splitlines() if calls.exists() else []
    return seen, started.stdout


def test_jupyterlab_starts_without_running_node(tmp_path):
    calls, loaded = initialise_server(tmp_path, with_extension=True)
    assert "jupyterlab" in loaded and "hub_app.lab_start" in loaded, loaded
    assert calls == []


def test_without_it_jupyterlab_runs_node_at_start(tmp_path):
    calls, loaded = initialise_server(tmp_path, with_extension=False)
    assert "jupyterlab" in loaded, loaded
    assert any("config --json" in call for call in calls), calls
