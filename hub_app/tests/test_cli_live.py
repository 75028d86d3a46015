"""The CLI against a real JupyterHub and configurable-http-proxy on loopback.

Laid out like production: the hub is configured only through ``apply_settings_file``
with a settings file, and the proxy is a separate process that the hub does not
start (``should_start = False``), holding its token in CONFIGPROXY_AUTH_TOKEN.
The only test-only config is the spawner class, because the test users are not
system accounts: JupyterHub's SimpleLocalProcessSpawner, starting in turn through
hub_app's start queue (one server at a time here) like the bundle's spawners.

configurable-http-proxy is installed with npm into a cache folder on first use
(``HUB_APP_CHP_PREFIX`` overrides where); without npm these tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jupyterhub
import pytest
import requests

from hub_app import cli

from .conftest import PASSWORDS, make_settings, write_private

pytestmark = pytest.mark.live

CHP_VERSION = "4.6.3"  # the version the proxy role installs
STARTUP_TIMEOUT = 60.0


def _chp_binary() -> Path:
    default = Path.home() / ".cache" / "hub_app-tests" / f"configurable-http-proxy-{CHP_VERSION}"
    prefix = Path(os.environ.get("HUB_APP_CHP_PREFIX", default))
    binary = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("npm/node not found: cannot install configurable-http-proxy for live tests")
    prefix.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603 -- fixed arguments, npm found on PATH
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
         f"configurable-http-proxy@{CHP_VERSION}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    if result.returncode != 0 or not binary.exists():
        pytest.fail(f"npm install configurable-http-proxy failed:\n{result.stderr[-3000:]}")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def _kill_leftover_servers(db_path: Path) -> None:
    # cleanup_servers is False, exactly as in production, so a failed test could
    # leave a single-user server running; the hub database knows its pid.
    if not db_path.exists():
        return
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        states = [row[0] for row in db.execute("SELECT state FROM spawners") if row[0]]
    for state in states:
        pid = json.loads(state).get("pid")
        # Only a server still running: a pid whose server has exited may since
        # belong to anything on the machine (a test container's init, say).
        if pid and _is_singleuser_group_leader(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


def _is_singleuser_group_leader(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"jupyterhub-singleuser" in cmdline and os.getpgid(pid) == pid
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class LiveHub:
    settings_path: Path
    public_url: str
    api_url: str
    api_token: str
    log_path: Path
    proxy_api_url: str
    proxy_token: str

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _wait_until_routed(hub: LiveHub, process: subprocess.Popen) -> None:
    """Wait until the hub answers and has put its own route into the proxy."""
    headers = {"Authorization": f"token {hub.api_token}"}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyterhub exited with {process.returncode}:\n{hub.log_tail()}")
        with contextlib.suppress(requests.ConnectionError):
            routes = requests.get(f"{hub.api_url}/proxy", headers=headers, timeout=5)
            if routes.ok and "/" in routes.json():
                return
        time.sleep(0.3)
    pytest.fail(f"jupyterhub did not come up in {STARTUP_TIMEOUT:g} s:\n{hub.log_tail()}")


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory, password_hashes) -> Iterator[LiveHub]:
    chp = _chp_binary()
    root = tmp_path_factory.mktemp("live")
    secrets_dir = root / "secrets"
    secrets_dir.mkdir()
    for name in ("cookie_secret", "proxy_auth_token", "api_client_token", "metrics_token"):
        write_private(secrets_dir / name, os.urandom(32).hex() + "\n")
    hub_port, proxy_port, proxy_api_port = _free_port(), _free_port(), _free_port()
    singleuser = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
    # jupyter_server refuses to run as root without this flag; CI runs as root.
    allow_root = ["--allow-root"] if os.geteuid() == 0 else []

    settings = make_settings(secrets_dir, password_hashes)
    # bob is for the removal test, the last of this module.
    settings["allowed_users"].append("bob")
    settings["authenticator"]["password_hashes"]["bob"] = password_hashes["bob"]
    settings["public_url"] = f"http://127.0.0.1:{proxy_port}/"
    settings["hub"].update(
        bind_url=f"http://127.0.0.1:{hub_port}",
        db_url=f"sqlite:///{root / 'jupyterhub.sqlite'}",
        log_level="DEBUG",
    )
    settings["proxy"]["api_url"] = f"http://127.0.0.1:{proxy_api_port}"
    settings["spawner"].update(
        cmd=[singleuser, *allow_root],
        # jupyter_server alone has no /lab; /api answers without extra packages.
        default_url="/api",
        start_timeout=60,
        http_timeout=30,
        # One server starts at a time: a second start waits its turn.
        start_slots=1,
        queue_timeout=60,
    )
    settings_path = write_private(root / "hub_app.json", json.dumps(settings, indent=2))
    config_path = root / "jupyterhub_config.py"
    home_template = str(root / "home") + "/{username}"
    config_path.write_text(
        "from hub_app.settings import apply_settings_file\n"
        f"apply_settings_file(c, {str(settings_path)!r})\n"
        "# Test only: the test users are not system accounts.\n"
        "from jupyterhub.spawner import SimpleLocalProcessSpawner\n"
        "from hub_app.spawners import StartQueueMixin\n"
        "class QueuedSimpleSpawner(StartQueueMixin, SimpleLocalProcessSpawner):\n"
        "    async def start(self):\n"
        "        return await self.in_turn(super().start)\n"
        "c.JupyterHub.spawner_class = QueuedSimpleSpawner\n"
        f"c.SimpleLocalProcessSpawner.home_dir_template = {home_template!r}\n"
    )

    proxy_env = {
        **os.environ,
        "CONFIGPROXY_AUTH_TOKEN": (secrets_dir / "proxy_auth_token").read_text().strip(),
    }
    log_path = root / "processes.log"
    with log_path.open("ab") as log:
        proxy = subprocess.Popen(  # noqa: S603 -- fixed arguments
            [str(chp), "--ip", "127.0.0.1", "--port", str(proxy_port),
             "--api-ip", "127.0.0.1", "--api-port", str(proxy_api_port),
             "--default-target", f"http://127.0.0.1:{hub_port}",
             "--error-target", f"http://127.0.0.1:{hub_port}/hub/error",
             "--log-level", "warn"],
            env=proxy_env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
        hub_process = subprocess.Popen(  # noqa: S603 -- fixed arguments
            [sys.executable, "-m", "jupyterhub", "-f", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
    hub = LiveHub(
        settings_path=settings_path,
        public_url=settings["public_url"],
        api_url=f"http://127.0.0.1:{hub_port}/hub/api",
        api_token=(secrets_dir / "api_client_token").read_text().strip(),
        log_path=log_path,
        proxy_api_url=f"http://127.0.0.1:{proxy_api_port}/api/routes",
        proxy_token=proxy_env["CONFIGPROXY_AUTH_TOKEN"],
    )
    try:
        _wait_until_routed(hub, hub_process)
        yield hub
    finally:
        with contextlib.suppress(requests.RequestException):
            requests.delete(
                f"{hub.api_url}/users/alice/server",
                headers={"Authorization": f"token {hub.api_token}"},
                timeout=20,
            )
        _stop(hub_process)
        _kill_leftover_servers(root / "jupyterhub.sqlite")
        _stop(proxy)


@pytest.fixture
def hub_app(live_hub, capsys):
    """Run ``hub-app --settings <live settings> ARGS`` in-process."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--settings", str(live_hub.settings_path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _table(out: str) -> dict[str, list[str]]:
    """Rows of a printed table keyed by their first column (header dropped)."""
    return {line.split()[0]: line.split() for line in out.splitlines()[1:]}


def test_users_list(hub_app):
    code, out, err = hub_app("users", "list")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NAME", "ADMIN", "SERVER", "LAST", "ACTIVITY"]
    rows = _table(out)
    assert set(rows) == {"alice", "bob", "hubadmin"}
    assert rows["alice"][1:3] == ["no", "stopped"]
    assert rows["hubadmin"][1:3] == ["yes", "stopped"]


def test_users_list_json(hub_app):
    code, out, _ = hub_app("users", "list", "--json")
    assert code == 0
    assert {user["name"]: user["admin"] for user in json.loads(out)} == {
        "alice": False,
        "bob": False,
        "hubadmin": True,
    }


def test_server_lifecycle(hub_app, live_hub):
    code, out, err = hub_app("server", "start", "alice", "--wait", "--timeout", "60")
    assert code == 0, f"{err}\n{live_hub.log_tail()}"
    assert out == "alice: ready\n"

    assert _table(hub_app("users", "list")[1])["alice"][2] == "ready"
    code, out, _ = hub_app("server", "start", "alice")
    assert (code, out) == (0, "alice: already ready\n")

    code, out, _ = hub_app("proxy", "routes")
    assert code == 0
    rows = _table(out)
    assert rows["/user/alice/"][2:4] == ["alice"]  # default server: empty server name
    assert rows["/user/alice/"][1].startswith("http://127.0.0.1:")
    assert rows["/"][2] == "(hub)"
    code, out, _ = hub_app("proxy", "routes", "--json")
    assert json.loads(out)["/user/alice/"]["data"]["user"] == "alice"

    # Through the proxy, as a browser would reach it.
    response = requests.get(f"{live_hub.public_url}user/alice/api", timeout=10)
    assert response.status_code in (200, 302, 403), response.text

    code, out, err = hub_app("server", "stop", "alice", "--wait")
    assert (code, out) == (0, "alice: stopped\n"), err
    assert _table(hub_app("users", "list")[1])["alice"][2] == "stopped"
    assert "/user/alice/" not in json.loads(hub_app("proxy", "routes", "--json")[1])


def test_a_second_start_waits_its_turn_and_says_so(hub_app, live_hub):
    """One start slot: alice's start waits while hubadmin's runs, and her progress says so."""
    try:
        code, out, err = hub_app("server", "start", "hubadmin")
        # The hub answers at once (slow_spawn_timeout 0); the start goes on.
        assert (code, out) == (0, "hubadmin: pending\n"), err
        code, out, err = hub_app(
            "server", "start", "alice", "--wait", "--progress", "--timeout", "60"
        )
        assert code == 0, f"{err}\n{live_hub.log_tail()}"
        lines = out.splitlines()
        assert lines[-1] == "alice: ready"
        waiting = [line for line in lines if line.startswith("alice: Waiting your turn to start")]
        assert waiting, out
        assert "0 ahead of you in the queue, 1 starting now (1 at a time)" in waiting[0]
        assert "alice: Starting your server" in lines
        assert lines.index(waiting[0]) < lines.index("alice: Starting your server")
        code, out, err = hub_app("server", "start", "hubadmin", "--wait", "--timeout", "60")
        assert code == 0, err
        rows = _table(hub_app("users", "list")[1])
        assert rows["alice"][2] == rows["hubadmin"][2] == "ready"
    finally:
        hub_app("server", "stop", "alice", "--wait")
        hub_app("server", "stop", "hubadmin", "--wait")


def test_proxy_sync_puts_back_a_lost_route(hub_app, live_hub):
    """What the watchdog runs when the proxy starts with an empty routing table."""
    code, _, err = hub_app("server", "start", "alice", "--wait", "--timeout", "60")
    assert code == 0, f"{err}\n{live_hub.log_tail()}"
    try:
        # As if the proxy had restarted: the route is gone from its memory.
        requests.delete(
            f"{live_hub.proxy_api_url}/user/alice",
            headers={"Authorization": f"token {live_hub.proxy_token}"},
            timeout=10,
        ).raise_for_status()
        assert "/user/alice/" not in json.loads(hub_app("proxy", "routes", "--json")[1])

        code, out, err = hub_app("proxy", "sync", "--timeout", "30")
        assert code == 0, err
        assert out.startswith("proxy routes synced: ")
        routes = json.loads(hub_app("proxy", "routes", "--json")[1])
        assert routes["/user/alice/"]["data"]["user"] == "alice"
    finally:
        hub_app("server", "stop", "alice", "--wait")


def test_token_create_gives_a_working_token(hub_app, live_hub):
    code, out, err = hub_app("token", "create", "alice", "--note", "live test")
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n"
    me = requests.get(
        f"{live_hub.api_url}/user", headers={"Authorization": f"token {token}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["name"] == "alice"


def test_token_create_with_scope_and_expiry(hub_app, live_hub):
    code, out, err = hub_app(
        "token", "create", "alice", "--expires-in", "600", "--scope", "read:users:name!user=alice"
    )
    assert code == 0, err
    me = requests.get(
        f"{live_hub.api_url}/user",
        headers={"Authorization": f"token {out.strip()}"},
        timeout=10,
    )
    scopes = me.json()["scopes"]
    assert "read:users:name!user=alice" in scopes
    # Limited to what was asked: none of alice's own server or token rights.
    assert not [scope for scope in scopes if scope.startswith(("servers", "tokens"))]


def test_unknown_user_token_shows_the_hubs_message(hub_app):
    code, out, err = hub_app("token", "create", "nobody")
    assert (code, out) == (1, "")
    # The hub's own words (it names the requester's kind, "Service", before the user).
    assert err.startswith("error: 403 Forbidden: ")
    assert err.endswith(" nobody not found or no permissions to generate tokens\n")


def test_unknown_user_server_start(hub_app):
    code, out, err = hub_app("server", "start", "nobody")
    assert (code, out) == (1, "")
    assert err.startswith("error: 404 Not Found: ")


def test_bad_token_is_refused(live_hub, tmp_path, capsys):
    token_file = write_private(tmp_path / "token", "not-a-real-token\n")
    code = cli.main(["--url", live_hub.api_url, "--token-file", str(token_file), "users", "list"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("error: 403 Forbidden: ")


def test_hashed_login_through_the_proxy(live_hub):
    """The hub's own login path runs HashedPasswordAuthenticator."""
    url = f"{live_hub.public_url}hub/api/users/alice/tokens"
    good = {"auth": {"username": "alice", "password": PASSWORDS["alice"]}}
    bad = {"auth": {"username": "alice", "password": "wrong"}}
    assert requests.post(url, json=good, timeout=10).status_code == 201
    assert requests.post(url, json=bad, timeout=10).status_code == 403


def test_console_script(live_hub):
    script = Path(sys.executable).with_name("hub-app")
    result = subprocess.run(  # noqa: S603 -- fixed arguments
        [str(script), "--settings", str(live_hub.settings_path), "users", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {user["name"] for user in json.loads(result.stdout)} == {"alice", "bob", "hubadmin"}


def test_the_idle_culler_runs_as_the_hubs_service_with_its_own_role(live_hub):
    """The hub starts hub_app.idle_culler; a run succeeds only if its role's scopes suffice."""
    root = live_hub.settings_path.parent
    state = root / "idle-culler.json"
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert state.exists(), live_hub.log_tail()
    record = json.loads(state.read_text())
    assert record["ok"] is True, record
    # Every server the test module started is younger than the hour's timeout.
    assert record["culled"] == []
    log = (root / "idle-culler.log").read_text()
    assert "Started: stop servers idle for 01:00:00, check every 00:05:00" in log
    assert "Run done in" in log


def test_metrics_answer_only_the_scrapers_token(live_hub):
    url = live_hub.api_url.removesuffix("/api") + "/metrics"
    scraper = (live_hub.settings_path.parent / "secrets" / "metrics_token").read_text().strip()
    answer = requests.get(url, headers={"Authorization": f"token {scraper}"}, timeout=10)
    assert answer.status_code == 200
    assert "jupyterhub_running_servers" in answer.text
    # The CLI's token has no read:metrics, and neither has an anonymous request.
    cli_token = {"Authorization": f"token {live_hub.api_token}"}
    assert requests.get(url, headers=cli_token, timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 403


def _health_rows(hub_app) -> dict[str, dict[str, str]]:
    code, out, err = hub_app("health", "--json")
    assert code in (0, 1), err
    return {row["check"]: row for row in json.loads(out)["checks"]}


def test_health_sees_a_lost_route_and_a_stale_one(hub_app, live_hub):
    """`hub-app health` against the real hub: its API, the culler's record, the routes."""
    state = live_hub.settings_path.parent / "idle-culler.json"
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    code, _, err = hub_app("server", "start", "alice", "--wait", "--timeout", "60")
    assert code == 0, f"{err}\n{live_hub.log_tail()}"
    proxy_token = {"Authorization": f"token {live_hub.proxy_token}"}
    try:
        rows = _health_rows(hub_app)
        assert rows["hub API"]["state"] == "OK", rows["hub API"]
        assert rows["hub API"]["detail"].startswith(f"JupyterHub {jupyterhub.__version__} at ")
        assert rows["proxy routes"]["state"] == "OK", rows["proxy routes"]
        assert rows["proxy routes"]["detail"].startswith("1 running server(s), each routed")
        # The record hub_app.idle_culler wrote is one health reads.
        assert rows["idle culler"]["state"] == "OK", rows["idle culler"]

        # As if the proxy had lost alice's route and kept one of a server long gone.
        requests.delete(
            f"{live_hub.proxy_api_url}/user/alice", headers=proxy_token, timeout=10
        ).raise_for_status()
        requests.post(
            f"{live_hub.proxy_api_url}/user/ghost",
            json={"target": "http://127.0.0.1:9", "jupyterhub": True, "user": "ghost"},
            headers=proxy_token,
            timeout=10,
        ).raise_for_status()
        routes = _health_rows(hub_app)["proxy routes"]
        assert routes["state"] == "FAULT"
        assert routes["detail"] == (
            "running server(s) without a route: /user/alice/; route(s) with no server: /user/ghost/"
        )

        # What the row says to do puts both right.
        assert routes["advice"].startswith("`hub-app proxy sync`")
        code, _, err = hub_app("proxy", "sync", "--timeout", "30")
        assert code == 0, err
        assert _health_rows(hub_app)["proxy routes"]["state"] == "OK"
    finally:
        hub_app("server", "stop", "alice", "--wait")


def _server_pids(live_hub: LiveHub) -> dict[str, int]:
    """User name -> the pid of their default server, as the hub's database records it."""
    db_path = live_hub.settings_path.parent / "jupyterhub.sqlite"
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute(
            "SELECT users.name, spawners.state FROM spawners JOIN users"
            " ON spawners.user_id = users.id WHERE spawners.name = ''"
        ).fetchall()
    return {name: json.loads(state).get("pid") for name, state in rows if state}


def _status(live_hub: LiveHub, path: str, headers: dict[str, str]) -> int:
    return requests.get(f"{live_hub.api_url}{path}", headers=headers, timeout=10).status_code


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent (the hub) has not reaped it yet.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_users_remove_stops_one_server_and_forgets_the_user(hub_app, live_hub):
    """What the play does for a name in users_absent; last here, as bob is gone for good."""
    headers = {"Authorization": f"token {live_hub.api_token}"}
    code, out, err = hub_app("token", "create", "bob", "--note", "removal test")
    assert code == 0, err
    bob_token = {"Authorization": f"token {out.strip()}"}
    for name in ("alice", "bob"):
        code, _, err = hub_app("server", "start", name, "--wait", "--timeout", "60")
        assert code == 0, f"{err}\n{live_hub.log_tail()}"
    pids = _server_pids(live_hub)
    assert _running(pids["alice"]) and _running(pids["bob"]), pids
    try:
        # Still allowed in the hub's settings: the hub would add bob back at its start.
        code, out, err = hub_app("users", "remove", "bob")
        assert (code, out) == (1, ""), err
        assert "bob is still in allowed_users" in err

        # What the play deploys first: settings without bob.
        settings = json.loads(live_hub.settings_path.read_text())
        settings["allowed_users"].remove("bob")
        del settings["authenticator"]["password_hashes"]["bob"]
        live_hub.settings_path.write_text(json.dumps(settings))

        code, out, err = hub_app("users", "remove", "bob")
        assert (code, err) == (0, ""), live_hub.log_tail()
        assert out == "bob: server stopped\nbob: removed\n"
        assert not _running(pids["bob"])
        assert _status(live_hub, "/users/bob", headers) == 404
        # Bob's token went with him.
        assert _status(live_hub, "/user", bob_token) == 403
        routes = json.loads(hub_app("proxy", "routes", "--json")[1])
        assert "/user/bob/" not in routes

        # Alice's server never noticed.
        assert _server_pids(live_hub)["alice"] == pids["alice"]
        assert _running(pids["alice"])
        assert _table(hub_app("users", "list")[1])["alice"][2] == "ready"
        assert routes["/user/alice/"]["data"]["user"] == "alice"

        code, out, err = hub_app("users", "remove", "bob")
        assert (code, out, err) == (0, "bob: not in the hub\n", "")
    finally:
        hub_app("server", "stop", "alice", "--wait")
