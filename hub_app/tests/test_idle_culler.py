"""hub_app.idle_culler: decisions logged, each run recorded (the culling is the culler's own)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from hub_app import idle_culler
from hub_app.server_activity import kernels_in_use


def _server(name: str, server_name: str = "") -> dict:
    url = f"/user/{name}/{server_name + '/' if server_name else ''}"
    return {"name": server_name, "url": url, "ready": True, "pending": None}


def test_decisions_follow_the_culler_and_are_logged(caplog):
    logger = logging.getLogger("test.decisions")
    decisions = idle_culler.DecisionLog(logger)
    with caplog.at_level(logging.INFO, logger="test.decisions"):
        kept = decisions(inactive=timedelta(seconds=59), inactive_limit=60, server=_server("alice"))
        stopped = decisions(
            inactive=timedelta(seconds=61), inactive_limit=60, server=_server("bob", "gpu")
        )
    assert (kept, stopped) == (False, True)
    assert decisions.checked == 2
    assert decisions.culled == ["bob/gpu"]
    assert "Keeping alice's server: idle for 00:00:59 (limit 00:01:00)" in caplog.text
    assert "Stopping bob/gpu's server: idle for 00:01:01 (limit 00:01:00)" in caplog.text


async def test_each_run_is_recorded(tmp_path):
    state = tmp_path / "idle-culler.json"
    decisions = idle_culler.DecisionLog(logging.getLogger("test.runs"))

    async def cull_idle(**kwargs):
        decisions(inactive=timedelta(hours=2), inactive_limit=3600, server=_server("carol"))
        return None

    run = idle_culler._recorded(cull_idle, str(state), 900, decisions, decisions.logger)
    await run(url="http://hub/api")
    record = json.loads(state.read_text())
    assert record["ok"] is True
    assert record["error"] is None
    assert record["every"] == 900
    assert record["checked"] == 1
    assert record["culled"] == ["carol"]
    assert record["started"] <= record["finished"]
    assert state.stat().st_mode & 0o777 == 0o644


async def test_a_failed_run_is_recorded_and_raised(tmp_path):
    state = tmp_path / "idle-culler.json"
    decisions = idle_culler.DecisionLog(logging.getLogger("test.runs"))

    async def cull_idle(**kwargs):
        raise PermissionError("403 Forbidden")

    run = idle_culler._recorded(cull_idle, str(state), 60, decisions, decisions.logger)
    with pytest.raises(PermissionError):
        await run()
    record = json.loads(state.read_text())
    assert record["ok"] is False
    assert record["finished"] is None
    assert record["error"] == "PermissionError: 403 Forbidden"
    # No temporary file is left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["idle-culler.json"]


def test_paths_must_be_absolute():
    app = idle_culler.IdleCullerWithRecord()
    with pytest.raises(Exception, match=r"IdleCullerWithRecord\.state_file must be an absolute"):
        app.state_file = "idle.json"


@pytest.mark.parametrize(
    ("kernels", "in_use"),
    [
        ([], False),
        ([{"execution_state": "idle", "connections": 0}], False),
        ([{"execution_state": "busy", "connections": 0}], True),
        ([{"execution_state": "idle", "connections": 1}], True),
        (
            [{"execution_state": "idle", "connections": 0}, {"execution_state": "busy"}],
            True,
        ),
        ([{"execution_state": "starting", "connections": 0}], False),
    ],
)
def test_busy_or_watched_kernels_count_as_activity(kernels, in_use):
    assert kernels_in_use(kernels) is in_use
