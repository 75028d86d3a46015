"""A hub that runs all term, checked from outside the container, in the order of a term.

The checks share one hub and run in file order: servers start; Prometheus sees
a server start; the idle culler stops the idle server and keeps the busy and
the watched ones. Everything is real: jupyterhub-idle-culler run by the hub,
Debian's Prometheus scraping the hub with its token, Chromium holding
JupyterLab open.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
from chromium import chromium, new_page, put_notebook
from hub_client import (
    HUB_NAME,
    container_address,
    hub_app,
    leave_running,
    save_certificate,
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
# A computation that outlives the test, printing nothing.
LONG_COMPUTATION = "import time\ntime.sleep(100000)"

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
        page.goto(f"{HUB_URL}/hub/login")
        page.fill("input[name=username]", "carol")
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
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


# --- the checks, in the order of a term ------------------------------------------------


def test_servers_start_idle_busy_and_watched(host, certificate, watched_jupyterlab):
    """alice's server sits idle, bob's kernel computes unwatched, carol's is open in Chromium."""
    for name in ("alice", "bob"):
        hub_app(host, "server", "start", name, "--wait")
    token = user_token(host, "bob")
    kernel = start_kernel(host, certificate, "bob", token)
    leave_running(host, certificate, "bob", token, kernel, LONG_COMPUTATION)
    # From here on nobody sends alice's or bob's server a request.
    shared["untouched_since"] = time.monotonic()
    assert server_ready(host, "carol")


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
