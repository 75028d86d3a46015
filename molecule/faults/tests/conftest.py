"""The faults' measurements, shown at the end of the run (and kept in artifacts/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "artifacts" / "faults.jsonl"


def pytest_sessionstart(session: pytest.Session) -> None:
    RESULTS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter) -> None:
    """Every fault's longest gap, in one place at the end of the log."""
    if not RESULTS.exists():
        return
    terminalreporter.section("faults: longest time each user's server was unreachable")
    for line in RESULTS.read_text().splitlines():
        terminalreporter.write_line("[faults] " + json.dumps(json.loads(line)))
