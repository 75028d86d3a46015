"""Each host's checks in a worker of its own, side by side; results shown at the end.

The faults change a host's state (they restart its programs, reboot it), so one
host's checks run in order in a single worker, and the two hosts' workers run
at the same time (molecule.yml passes ``-n 2 --dist loadgroup``): the scenario
takes the time of its slower host, not the sum.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "artifacts" / "faults.jsonl"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, once per run
        RESULTS.unlink(missing_ok=True)


def _host_id(item: pytest.Item) -> str:
    host = getattr(item, "callspec", None) and item.callspec.params.get("_testinfra_host")
    return host.backend.get_pytest_id() if host is not None else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # (xdist runs a group's checks in node-id order, not the module's: each
    # check leaves its host as it found it, two servers and the kernel.)
    for item in items:
        if _host_id(item):
            item.add_marker(pytest.mark.xdist_group(_host_id(item)))


def pytest_terminal_summary(terminalreporter) -> None:
    """The measurements of every fault (workers' prints do not reach the log)."""
    if not RESULTS.exists():
        return
    terminalreporter.section("faults: longest time each user's server was unreachable")
    for line in RESULTS.read_text().splitlines():
        terminalreporter.write_line("[faults] " + json.dumps(json.loads(line)))
