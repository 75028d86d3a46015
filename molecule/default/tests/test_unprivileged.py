"""A root hub switched to an account of its own, with a user at work (debian13 only).

debian13 runs the scenario's root hub like debian12 until the checks before
these are done (pytest runs this file last). Then alice has a server running
and a notebook in it, and site.yml runs again with jupyterhub_hub_user:
jupyterhub, as an operator switches an existing hub. What the switch must keep
(the database, the logins, the running server, the browser session) is checked
as alice sees it, then what the unprivileged hub must be: no hub process runs
as root, its account reads no user's file and runs nothing through sudo but
sudospawner's mediator as the hub's users, a server spawns and runs code,
survives a hub restart, and a user logs in with Chromium. A second run changes
nothing. Every step runs the real parts: sudo, sudospawner, the project's
playbook through ansible-playbook.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import testinfra
from chromium import (
    chromium,
    new_page,
    put_notebook,
    run_first_cell,
    start_jupyterlab,
    submit_login,
)
from hub_client import (
    CERTIFICATE,
    HUB_APP,
    HUB_NAME,
    HUB_PROCESS,
    browser,
    check_sandboxed,
    container_address,
    hub_app,
    hub_url,
    log_in,
    mount_namespace,
    oldest_pid,
    recap_changed,
    run_code,
    run_playbook,
    save_certificate,
    server_pid,
    session_page,
    user_token,
)

PLATFORM = "debian13"
HUB_ACCOUNT = "jupyterhub"
UNPRIVILEGED = {"jupyterhub_hub_user": HUB_ACCOUNT}
# Test-only password: its hash is in molecule.yml's inventory.
PASSWORD = "molecule-alice-password"
NOTEBOOK = "/home/alice/kept-through-the-switch.ipynb"
MEDIATOR = "/opt/jupyterhub/venv/bin/sudospawner"

# What the steps hand each other (they run in file order).
shared: dict = {}


def hub_host():
    return testinfra.get_host(f"podman://{PLATFORM}")


def as_hub_account(host, command: str):
    """``command`` run by the hub's account, as a compromised hub would."""
    return host.run(f"runuser -u {HUB_ACCOUNT} -- sh -c {json.dumps(command)}")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> str:
    return save_certificate(hub_host(), tmp_path_factory.mktemp("certificate"))


def test_alice_is_at_work_on_the_root_hub(certificate):
    host = hub_host()
    assert host.process.filter(user="root", comm="jupyterhub"), "the hub should run as root here"
    hub_app(host, "server", "start", "alice", "--wait", "--timeout", "180")
    put_notebook(host, NOTEBOOK, "alice")
    login = log_in(host, certificate, "alice", PASSWORD)
    assert login.status_code == 302
    shared["cookies"] = "; ".join(f"{c.name}={c.value}" for c in login.session.cookies)
    shared["token"] = user_token(host, "alice")
    shared["pid"] = server_pid(host, "alice")
    shared["users"] = sorted(
        u["name"] for u in json.loads(hub_app(host, "users", "list", "--json"))
    )


def test_the_switch_keeps_the_database_the_logins_and_the_running_server(certificate):
    host = hub_host()
    started = time.monotonic()
    result = run_playbook(host, "site.yml", UNPRIVILEGED)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"\nthe switch to {HUB_ACCOUNT}: {time.monotonic() - started:.1f} s")
    # The play says what it kept.
    assert f"The hub now runs as {HUB_ACCOUNT} (it ran as root)" in result.stdout
    assert "Servers kept running: alice" in result.stdout
    # The same server process, reached through the proxy with the same token.
    assert server_pid(host, "alice") == shared["pid"]
    session = browser(certificate)
    session.headers["Authorization"] = f"token {shared['token']}"
    status = session.get(hub_url(host, "/user/alice/api/status"), timeout=30)
    assert status.status_code == 200, status.text[:300]
    notebook = session.get(
        hub_url(host, "/user/alice/api/contents/kept-through-the-switch.ipynb"), timeout=30
    )
    assert notebook.status_code == 200, notebook.text[:300]
    # The database: the same users; the browser session from before.
    assert (
        sorted(u["name"] for u in json.loads(hub_app(host, "users", "list", "--json")))
        == shared["users"]
    )
    page = session_page(host, certificate, shared["cookies"])
    assert page.status_code == 200, f"the browser session was logged out ({page.status_code})"
    assert log_in(host, certificate, "alice", PASSWORD).status_code == 302


def test_no_hub_process_runs_as_root():
    host = hub_host()
    rows = [line.split(None, 1) for line in host.check_output("ps -eo user:32=,args=").splitlines()]
    hub = [user for user, args in rows if "/bin/jupyterhub --config" in args]
    culler = [user for user, args in rows if "hub_app.idle_culler" in args]
    assert hub == [HUB_ACCOUNT] and culler == [HUB_ACCOUNT], rows
    # Its sudo needs setuid: the hub of its own account runs without no_new_privs.
    hub_pid = oldest_pid(host, HUB_PROCESS)
    status = host.file(f"/proc/{hub_pid}/status").content_string
    assert re.search(r"^NoNewPrivs:\s+0$", status, re.MULTILINE), status
    # Nothing from the hub's environment runs as root: the hub, its services,
    # users' servers and their mediators (as their users).
    assert not [args for user, args in rows if user == "root" and "/opt/jupyterhub/" in args]
    # supervisord started it as root for its sandbox (this platform allows
    # one, molecule.yml), and setpriv dropped it to its account.
    check_sandboxed(host, hub_pid, "jupyterhub")


def test_the_hub_s_state_and_secrets_are_its_account_s_alone():
    host = hub_host()
    for path in (
        "/etc/jupyterhub/secrets/cookie_secret",
        "/etc/jupyterhub/secrets/api_client_token",
        "/etc/jupyterhub/secrets/proxy_auth_token",
    ):
        secret = host.file(path)
        assert (secret.user, secret.mode) == (HUB_ACCOUNT, 0o600), f"{path}: {secret.user}"
    # The state directory (0700) is the account's alone, and so is what it holds.
    state = host.file("/var/lib/jupyterhub")
    assert (state.user, state.mode) == (HUB_ACCOUNT, 0o700)
    assert host.file("/var/lib/jupyterhub/jupyterhub.sqlite").user == HUB_ACCOUNT
    # Its settings it reads, and cannot change.
    settings = host.file("/etc/jupyterhub/hub_app.json")
    assert (settings.user, settings.group, settings.mode) == ("root", HUB_ACCOUNT, 0o640)
    assert as_hub_account(host, "echo >> /etc/jupyterhub/hub_app.json").rc != 0
    # The proxy's own token file stays root's.
    assert host.file("/etc/configurable-http-proxy/auth_token").user == "root"
    # Nothing else can read them.
    assert host.run("runuser -u alice -- cat /etc/jupyterhub/secrets/cookie_secret").rc != 0
    assert host.run("runuser -u alice -- ls /var/lib/jupyterhub").rc != 0


def test_the_hub_s_account_reads_no_user_s_file():
    host = hub_host()
    assert host.file(NOTEBOOK).exists
    denied = as_hub_account(host, f"cat {NOTEBOOK}")
    assert denied.rc != 0 and "Permission denied" in denied.stderr, denied.stdout
    assert as_hub_account(host, "ls /home/alice").rc != 0


def test_sudo_lets_the_hub_s_account_run_the_mediator_as_users_only():
    host = hub_host()
    host.run_expect([0], "visudo -c")
    # Anything as root, even the mediator itself, is refused, without a prompt.
    for command in (
        f"sudo -n -u root {MEDIATOR} --logging=INFO",
        "sudo -n -u root true",
        "sudo -n true",
    ):
        refused = as_hub_account(host, f"{command} < /dev/null")
        assert refused.rc != 0, f"{command} was allowed"
    # Another program as a user, or the mediator with other arguments: refused.
    assert as_hub_account(host, "sudo -n -u alice /bin/sh -c true").rc != 0
    assert as_hub_account(host, f"sudo -n -u alice {MEDIATOR} --logging=DEBUG < /dev/null").rc != 0
    # A system account that is not one of the hub's users: refused.
    assert (
        as_hub_account(
            host, f"sudo -n -u jupyterhub-proxy {MEDIATOR} --logging=INFO < /dev/null"
        ).rc
        != 0
    )
    # What it may do: the mediator, as a user. Signal 0 to the server says it lives.
    probe = as_hub_account(
        host,
        f'echo \'{{"action": "kill", "pid": {shared["pid"]}, "signal": 0}}\''
        f" | sudo -n -u alice -H {MEDIATOR} --logging=INFO",
    )
    assert probe.rc == 0, probe.stderr
    assert json.loads(probe.stdout[probe.stdout.index("{") :]) == {"ok": True, "alive": True}


def test_the_old_server_stops_and_a_new_one_spawns_through_sudospawner(certificate):
    host = hub_host()
    assert hub_app(host, "server", "stop", "alice", "--wait").endswith("stopped")
    assert host.run("pgrep -u alice -f jupyterhub-singleuser").rc == 1
    assert hub_app(host, "server", "start", "alice", "--wait", "--timeout", "180").endswith("ready")
    pid = server_pid(host, "alice")
    server = host.process.get(pid=pid)
    assert server.user == "alice"
    # sudo and the mediator run in the hub's sandbox, and so does the server.
    assert mount_namespace(host, pid) == mount_namespace(host, oldest_pid(host, HUB_PROCESS))
    assert int(host.check_output(f"ps -o ni= -p {pid}")) == 10
    assert run_code(host, certificate, "alice", shared["token"], "5*4") == "20"
    whoami = run_code(
        host, certificate, "alice", shared["token"], "__import__('getpass').getuser()"
    )
    assert whoami == "'alice'"
    log = host.file("/var/log/jupyterhub/servers/alice.log")
    assert log.user == HUB_ACCOUNT
    assert log.mode == 0o640
    assert "sudospawner" in log.content_string or "Spawning" in log.content_string
    shared["pid"] = pid


def test_a_hub_restart_keeps_the_server(certificate):
    host = hub_host()
    host.run_expect([0], "supervisorctl restart jupyterhub")
    deadline = time.monotonic() + 180
    while host.run(f"{HUB_APP} users list").rc != 0:
        assert time.monotonic() < deadline, "the hub did not come back within 180 s"
        time.sleep(1)
    assert server_pid(host, "alice") == shared["pid"]
    assert run_code(host, certificate, "alice", shared["token"], "6*7") == "42"
    # The server's output still reaches its log after the hub that started it is gone.
    size = host.file("/var/log/jupyterhub/servers/alice.log").size
    run_code(host, certificate, "alice", shared["token"], "1+1")
    assert host.file("/var/log/jupyterhub/servers/alice.log").size > size


def test_a_user_logs_in_and_runs_a_cell_in_chromium():
    host = hub_host()
    put_notebook(host, "/home/alice/browser-test.ipynb", "alice")
    hub_url_by_name = f"https://{HUB_NAME}"
    certificate_pem = host.file(CERTIFICATE).content_string.encode()
    with chromium({HUB_NAME: container_address(host)}, [certificate_pem]) as chrome:
        page = new_page(chrome)
        submit_login(page, hub_url_by_name, "alice", PASSWORD)
        page.wait_for_url(f"{hub_url_by_name}/**")
        start_jupyterlab(page, hub_url_by_name, "alice")
        run_first_cell(
            page, f"{hub_url_by_name}/user/alice/lab/tree/browser-test.ipynb", "6 * 7", "42"
        )


def test_a_second_run_changes_nothing():
    host = hub_host()
    result = run_playbook(host, "site.yml", UNPRIVILEGED)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert recap_changed(result.stdout) == 0, result.stdout[-6000:]
    assert server_pid(host, "alice") == shared["pid"]
