"""A hub that runs all term, checked from outside the container, in the order of a term.

The checks share one hub and run in file order: servers start; the health
check passes; Prometheus sees a server start; the idle culler stops the idle
server and keeps the busy and the watched ones; the health check fails with the
proxy stopped and says what to do; a user leaves the inventory. Everything is real:
jupyterhub-idle-culler run by the hub, Debian's Prometheus scraping the hub
with its token, Chromium holding JupyterLab open, ansible-playbook running the
project's site.yml against this container.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest
from chromium import chromium, new_page, put_notebook, submit_login
from hub_client import (
    HUB_NAME,
    browser,
    container_address,
    hub_app,
    hub_url,
    leave_running,
    run_playbook,
    save_certificate,
    server_pid,
    start_kernel,
    user_token,
)

# molecule.yml: the idle timeout, and the interval it implies (a quarter).
IDLE_TIMEOUT = 60
CHECK_INTERVAL = 15
CULLER_LOG = "/var/log/jupyterhub/idle-culler.log"
CULLER_RECORD = "/var/lib/jupyterhub/idle-culler.json"
# Test-only password of every user: its hash is in molecule.yml's inventory.
PASSWORD = "molecule-alice-password"
HUB_URL = f"https://{HUB_NAME}"
PROMETHEUS_QUERY = "http://127.0.0.1:9090/api/v1/query"
PASSWORD_HASH = (
    "scrypt$ln=15,r=8,p=1$7DHp1M10P4+ZGDrD341ktQ$mC8VPe8LTnXx5gPeYWv84Ujyz+g3oUMbHQJDZjRq9P4"
)
# A computation that outlives the test, printing nothing.
LONG_COMPUTATION = "import time\ntime.sleep(100000)"

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# What the checks hand each other (they run in file order, on one hub).
shared: dict[str, object] = {}


@pytest.fixture(scope="module")
def certificate(host, tmp_path_factory) -> str:
    return save_certificate(host, tmp_path_factory.mktemp("certificate"))


@pytest.fixture(scope="module")
def watched_jupyterlab(host):
    """carol's JupyterLab, open on a notebook in Chromium for the whole module."""
    pem = host.file("/etc/jupyterhub/tls/fullchain.pem").content_string.encode()
    put_notebook(host, "/home/carol/watched.ipynb", "carol")
    with chromium({HUB_NAME: container_address(host)}, [pem]) as chromium_browser:
        page = new_page(chromium_browser)
        submit_login(page, HUB_URL, "carol", PASSWORD)
        page.wait_for_url(f"{HUB_URL}/**")
        page.goto(f"{HUB_URL}/hub/spawn")
        page.wait_for_url(f"{HUB_URL}/user/carol/lab**", timeout=180_000)
        page.goto(f"{HUB_URL}/user/carol/lab/tree/watched.ipynb")
        # The notebook's kernel is up and idle: a browser is attached to it.
        page.wait_for_selector(".jp-Notebook")
        page.wait_for_selector(".jp-NotebookPanel-toolbar .jp-KernelName")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
            ".some((e) => /Idle/.test(e.innerText))",
            timeout=120_000,
        )
        yield page


def users(host) -> dict[str, dict]:
    return {user["name"]: user for user in json.loads(hub_app(host, "users", "list", "--json"))}


def server_ready(host, name: str) -> bool:
    user = users(host).get(name)
    return bool(user and user.get("servers", {}).get("", {}).get("ready"))


def prometheus_value(host, query: str) -> float | None:
    """The value of an instant query, asked of Prometheus (not the hub)."""
    # The container has no curl: its Python asks.
    script = (
        "import json, sys, urllib.parse, urllib.request\n"
        "query = urllib.parse.urlencode({'query': sys.argv[1]})\n"
        f"print(urllib.request.urlopen('{PROMETHEUS_QUERY}?' + query).read().decode())"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(query)}")
    result = json.loads(out)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def check_playbook(host, name: str):
    """playbooks/check.yml against this host, in check mode; its output is kept in artifacts/."""
    result = run_playbook(host, "playbooks/check.yml", None, "--check")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"check-{name}.txt").write_text(result.stdout + result.stderr)
    return result


# --- the checks, in the order of a term ------------------------------------------------


def test_servers_start_idle_busy_and_watched(host, certificate, watched_jupyterlab):
    """alice's server sits idle, bob's kernel computes unwatched, carol's is open in Chromium."""
    for name in ("alice", "bob"):
        hub_app(host, "server", "start", name, "--wait")
    shared["bob_token"] = token = user_token(host, "bob")
    kernel = start_kernel(host, certificate, "bob", token)
    leave_running(host, certificate, "bob", token, kernel, LONG_COMPUTATION)
    # From here on nobody sends alice's or bob's server a request.
    shared["untouched_since"] = time.monotonic()
    assert server_ready(host, "carol")


def test_the_health_check_passes_on_a_healthy_hub(host):
    result = check_playbook(host, "healthy")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for program in ("jupyterhub", "jupyterhub-proxy"):
        assert re.search(rf"{program}\b.*\bOK\b", result.stdout), result.stdout[-4000:]


def test_prometheus_sees_a_server_start(host):
    """Prometheus's own answer, from scraping the hub with the read:metrics token."""
    running = len([name for name in ("alice", "bob", "carol") if server_ready(host, name)])
    deadline = time.monotonic() + 60
    while prometheus_value(host, "jupyterhub_running_servers") != running:
        assert time.monotonic() < deadline, (
            f"Prometheus never reported {running} running servers: "
            f"{prometheus_value(host, 'jupyterhub_running_servers')}"
        )
        time.sleep(2)
    hub_app(host, "server", "start", "hubadmin", "--wait")
    deadline = time.monotonic() + 60
    while prometheus_value(host, "jupyterhub_running_servers") != running + 1:
        assert time.monotonic() < deadline, "Prometheus did not see hubadmin's server start"
        time.sleep(2)
    # The scrape itself used the scraper's token and succeeded.
    assert prometheus_value(host, 'up{job="jupyterhub"}') == 1
    hub_app(host, "server", "stop", "hubadmin", "--wait")


def test_the_idle_server_is_stopped_the_busy_and_watched_kept(host):
    # Stopped at most a timeout plus two check intervals after its last use
    # (activity reaches the hub every interval, the culler looks every interval).
    deadline = shared["untouched_since"] + IDLE_TIMEOUT + 3 * CHECK_INTERVAL + 30
    while server_ready(host, "alice"):
        assert time.monotonic() < deadline, host.file(CULLER_LOG).content_string[-3000:]
        time.sleep(3)
    # bob's server got no request for longer than the timeout and two checks too.
    time.sleep(
        max(0, shared["untouched_since"] + IDLE_TIMEOUT + 2 * CHECK_INTERVAL - time.monotonic())
    )
    log = host.file(CULLER_LOG).content_string
    assert server_ready(host, "bob"), log[-3000:]
    assert server_ready(host, "carol"), log[-3000:]
    assert "Stopping alice's server" in log
    assert "Keeping bob's server" in log
    assert "Keeping carol's server" in log
    record = json.loads(host.file(CULLER_RECORD).content_string)
    assert record["ok"] is True, record


def test_the_health_check_fails_with_the_proxy_stopped_and_says_what_to_do(host):
    host.run_expect([0], "supervisorctl stop jupyterhub-proxy")
    try:
        result = check_playbook(host, "proxy-stopped")
    finally:
        host.run_expect([0], "supervisorctl start jupyterhub-proxy")
    assert result.returncode != 0, result.stdout[-4000:]
    assert re.search(r"jupyterhub-proxy\b.*\bFAULT\b", result.stdout), result.stdout[-4000:]
    assert "What to do" in result.stdout, result.stdout[-4000:]
    # The hub puts the routes back once the proxy answers: healthy again.
    deadline = time.monotonic() + 60
    while (result := check_playbook(host, "healthy-again")).returncode != 0:
        assert time.monotonic() < deadline, result.stdout[-4000:]
        time.sleep(3)


def test_a_user_leaves_the_inventory(host, certificate):
    """bob goes (server, hub user, tokens, account; home archived); nobody else's server stops."""
    carol_token = user_token(host, "carol")
    # carol's server must outlive the idle timeout during the deploy: a
    # computation keeps it busy.
    kernel = start_kernel(host, certificate, "carol", carol_token)
    leave_running(host, certificate, "carol", carol_token, kernel, LONG_COMPUTATION)
    carol_pid = server_pid(host, "carol")
    bob_token = shared["bob_token"]
    session = browser(certificate)
    who_am_i = hub_url(host, "/hub/api/user")
    assert session.get(who_am_i, headers={"Authorization": f"token {bob_token}"}).ok
    host.run_expect([0], "echo kept > /home/bob/notes.txt && chown bob: /home/bob/notes.txt")
    bob_uid = host.check_output("id -u bob")

    change = {
        "users_accounts": [
            {"name": "hubadmin", "admin": True},
            {"name": "alice"},
            {"name": "carol"},
            {"name": "dave"},
        ],
        "users_absent": ["bob"],
        "users_absent_home": "archive",
        "jupyterhub_allowed_users": ["hubadmin", "alice", "carol", "dave"],
        # alice becomes an administrator, dave arrives.
        "jupyterhub_admin_users": ["hubadmin", "alice"],
        "jupyterhub_password_hashes": {name: PASSWORD_HASH for name in ("alice", "carol", "dave")},
    }
    result = run_playbook(host, "site.yml", change)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

    known = users(host)
    assert "bob" not in known
    assert session.get(who_am_i, headers={"Authorization": f"token {bob_token}"}).status_code == 403
    assert host.run("getent passwd bob").rc == 2
    assert host.run(f"pgrep -U {bob_uid}").rc == 1, "a process of bob's is left"
    archives = host.check_output("ls /var/backups/jupyterhub-homes/")
    assert re.search(r"^bob-.*\.tar\.gz$", archives, re.MULTILINE), archives
    assert "notes.txt" in host.check_output("tar -tzf /var/backups/jupyterhub-homes/bob-*.tar.gz")
    assert not host.file("/home/bob").exists
    # Everyone else's server ran on, the same process; admins and users changed.
    assert server_pid(host, "carol") == carol_pid
    carol = session.get(
        hub_url(host, "/user/carol/api/status"), headers={"Authorization": f"token {carol_token}"}
    )
    assert carol.ok, carol.text[:300]
    assert known["alice"]["admin"] is True
    assert "dave" in known

    # The same inventory again changes nothing.
    again = run_playbook(host, "site.yml", change)
    assert again.returncode == 0, again.stdout[-6000:]
    recap = re.search(r"changed=(\d+)", again.stdout.rsplit("PLAY RECAP", 1)[-1])
    assert recap and recap.group(1) == "0", again.stdout[-6000:]
