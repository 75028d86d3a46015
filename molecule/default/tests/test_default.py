"""What a user of a freshly deployed hub sees, checked from outside the container.

Every HTTP request goes from the test host to the container's address, through
the real configurable-http-proxy, to the real hub and the real single-user
server; operator actions use the real ``hub-app`` command inside the container.
Each check runs on every platform of the scenario.
"""

from __future__ import annotations

import json
import re
import ssl
import time

import pytest
import requests
from cryptography import x509

# The helpers, shared with the other scenarios (molecule/_shared/hub_client.py).
from hub_client import (
    CERTIFICATE,
    HUB_APP,
    HUB_PROCESS,
    INITIAL_ADMIN_CREDENTIALS,
    browser,
    check_sandboxed,
    container_address,
    hub_app,
    hub_url,
    initial_admin_password,
    log_in,
    mount_namespace,
    oldest_pid,
    run_code,
    save_certificate,
    server_pid,
    user_token,
)

TEST_USER = "alice"
# Test-only password: its hash is in molecule.yml's inventory.
TEST_PASSWORD = "molecule-alice-password"
INITIAL_ADMIN = "hubadmin"
# Root may make mount namespaces on debian13 only (molecule.yml), as on a real
# host; debian12 is an unprivileged container.
SANDBOXED_PLATFORMS = {"debian13"}
# The programs started as root, each found by its command line.
ROOT_PROGRAMS = {
    "jupyterhub": HUB_PROCESS,
    "jupyterhub-proxy": "configurable-http-proxy",
    "jupyterhub-proxy-http": "http-responder",
}


@pytest.fixture
def trusted_certificate(host, tmp_path) -> str:
    """The hub's self-signed certificate, saved on the test host to trust it."""
    return save_certificate(host, tmp_path)


# --- the checks, in the order a user meets them -----------------------------------


def test_supervisor_runs_the_hub_and_the_proxy(host):
    status = host.check_output("supervisorctl status")
    for program in ("jupyterhub", "jupyterhub-proxy"):
        assert re.search(rf"^{program}\s+RUNNING", status, re.MULTILINE), status


def test_proxy_runs_unprivileged_with_its_token_out_of_sight(host):
    proxy = host.process.get(comm="node")
    assert proxy.user == "jupyterhub-proxy"
    token = host.file("/etc/configurable-http-proxy/auth_token").content_string.strip()
    assert len(token) == 64
    # No secret may appear in any process's arguments.
    arguments = host.check_output("ps -eo args")
    assert token not in arguments
    cookie_secret = host.file("/etc/jupyterhub/secrets/cookie_secret").content_string.strip()
    assert cookie_secret not in arguments


def no_new_privs(host, pid: int) -> bool:
    status = host.file(f"/proc/{pid}/status").content_string
    return re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE) is not None


def test_the_hub_and_the_proxy_can_gain_no_privilege(host):
    """no_new_privs: no setuid program or file capability gives them (or their children) more."""
    for program, command_line in ROOT_PROGRAMS.items():
        pid = oldest_pid(host, command_line)
        assert no_new_privs(host, pid), f"{program} (pid {pid}) could gain privileges"


@pytest.mark.parametrize("program", ROOT_PROGRAMS)
def test_the_hub_and_the_proxy_are_sandboxed_where_the_host_allows(host, program):
    """Read-only system directories and a private /tmp (supervisor_sandbox), or, in
    an unprivileged container, the host's mounts as before and the play saying so."""
    pid = oldest_pid(host, ROOT_PROGRAMS[program])
    if host.backend.name in SANDBOXED_PLATFORMS:
        check_sandboxed(host, pid, program)
    else:
        assert mount_namespace(host, pid) == mount_namespace(host, 1)
        assert host.run("/usr/local/sbin/supervisor-sandbox --probe").rc == 1


@pytest.mark.parametrize(
    "path",
    [
        "/etc/configurable-http-proxy/auth_token",
        "/etc/jupyterhub/secrets/cookie_secret",
        "/etc/jupyterhub/secrets/api_client_token",
        "/etc/jupyterhub/hub_app.json",
        INITIAL_ADMIN_CREDENTIALS,
    ],
)
def test_secret_files_are_readable_by_root_only(host, path):
    secret = host.file(path)
    assert secret.is_file
    assert secret.user == "root"
    assert secret.mode == 0o600


def test_https_serves_the_self_signed_certificate(host, trusted_certificate):
    served = ssl.get_server_certificate((container_address(host), 443))
    on_disk = host.file(CERTIFICATE).content_string
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(on_disk)
    # A client that trusts this certificate accepts it for the hub's name.
    login_page = browser(trusted_certificate).get(hub_url(host, "/hub/login"), timeout=30)
    assert login_page.status_code == 200
    # Mozilla's TLS profiles accept at most 366 days of life.
    life = x509.load_pem_x509_certificate(on_disk.encode())
    assert (life.not_valid_after_utc - life.not_valid_before_utc).days <= 366


def test_plain_http_redirects_to_https(host):
    response = requests.get(
        f"http://{container_address(host)}/hub/login?next=%2Fhub%2F",
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 301
    assert response.headers["Location"].startswith(f"https://{container_address(host)}")
    assert response.headers["Location"].endswith("/hub/login?next=%2Fhub%2F")


def test_a_wrong_password_is_refused(host, trusted_certificate):
    response = log_in(host, trusted_certificate, TEST_USER, "not-the-password")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text


def test_a_user_outside_the_allow_list_is_refused(host, trusted_certificate):
    # bob has a local account and a password hash, but is not in
    # jupyterhub_allowed_users: the right password must not let him in.
    assert host.user("bob").exists
    response = log_in(host, trusted_certificate, "bob", TEST_PASSWORD)
    assert response.status_code == 403


def test_a_user_logs_in_through_the_login_form(host, trusted_certificate):
    response = log_in(host, trusted_certificate, TEST_USER, TEST_PASSWORD)
    assert response.status_code == 302, response.text[:500]
    home = response.session.get(hub_url(host, "/hub/home"), timeout=30)  # type: ignore[attr-defined]
    assert home.status_code == 200
    assert TEST_USER in home.text


def test_the_initial_admin_logs_in_with_the_generated_password(host, trusted_certificate):
    response = log_in(host, trusted_certificate, INITIAL_ADMIN, initial_admin_password(host))
    assert response.status_code == 302
    admin_page = response.session.get(hub_url(host, "/hub/admin"), timeout=30)  # type: ignore[attr-defined]
    assert admin_page.status_code == 200


def test_a_server_spawns_and_its_route_appears_in_the_proxy(host):
    started = hub_app(host, "server", "start", TEST_USER, "--wait", "--timeout", "180")
    assert started.endswith("ready")
    routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert f"/user/{TEST_USER}/" in routes
    assert server_pid(host, TEST_USER) > 0
    # Started by a root hub, it inherits the hub's no_new_privs, and its
    # sandbox where there is one.
    assert no_new_privs(host, server_pid(host, TEST_USER))
    hub = oldest_pid(host, HUB_PROCESS)
    assert mount_namespace(host, server_pid(host, TEST_USER)) == mount_namespace(host, hub)


def test_code_runs_in_the_system_wide_kernel_as_the_user(host, trusted_certificate):
    token = user_token(host, TEST_USER)
    session = browser(trusted_certificate)
    session.headers["Authorization"] = f"token {token}"
    specs = session.get(hub_url(host, f"/user/{TEST_USER}/api/kernelspecs"), timeout=30).json()
    # One Python kernel, and it is the system-wide one, not the hub's environment.
    assert set(specs["kernelspecs"]) == {"python3"}
    kernel_python = specs["kernelspecs"]["python3"]["spec"]["argv"][0]
    assert kernel_python == "/opt/jupyter-kernels/python3/bin/python"
    assert run_code(host, trusted_certificate, TEST_USER, token, "5*4") == "20"
    whoami = "__import__('getpass').getuser()"
    whoami = run_code(host, trusted_certificate, TEST_USER, token, whoami)
    assert whoami == f"'{TEST_USER}'"


def test_a_hub_restart_leaves_the_server_running_and_reachable(host, trusted_certificate):
    token = user_token(host, TEST_USER)
    session = browser(trusted_certificate)
    session.headers["Authorization"] = f"token {token}"
    status_url = hub_url(host, f"/user/{TEST_USER}/api/status")
    # The user is at work: the server has already checked this token with the hub.
    assert session.get(status_url, timeout=30).status_code == 200
    before = server_pid(host, TEST_USER)
    host.run_expect([0], "supervisorctl restart jupyterhub")
    # The proxy (Node) closes a connection idle for 5 s, and the restart takes
    # about that long: a request on the kept connection can cross that close
    # and get no answer (CI saw it once), where a browser would send it again
    # on a new connection. So it goes out on a new connection; a proxy that
    # does not answer still fails the test.
    session.close()
    # While the hub starts again, the proxy keeps routing to the server, and the
    # server keeps serving the user.
    assert session.get(status_url, timeout=30).status_code == 200
    deadline = time.monotonic() + 180
    while host.run(f"{HUB_APP} users list").rc != 0:
        assert time.monotonic() < deadline, "the hub did not come back within 180 s"
        time.sleep(1)
    assert server_pid(host, TEST_USER) == before
    # The new hub process has a sandbox again (a new namespace; the kept
    # server stays in the one it started in, with its /tmp).
    if host.backend.name in SANDBOXED_PLATFORMS:
        check_sandboxed(host, oldest_pid(host, HUB_PROCESS), "jupyterhub")
    users = {user["name"]: user for user in json.loads(hub_app(host, "users", "list", "--json"))}
    assert users[TEST_USER]["servers"][""]["ready"]
    routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert f"/user/{TEST_USER}/" in routes
    assert run_code(host, trusted_certificate, TEST_USER, token, "5*4") == "20"


def test_each_server_logs_to_its_own_file(host):
    log = host.file(f"/var/log/jupyterhub/servers/{TEST_USER}.log")
    assert log.user == "root"
    assert log.group == TEST_USER
    assert log.mode == 0o640
    assert "Jupyter Server" in log.content_string


def test_the_server_stops_through_the_api(host):
    assert hub_app(host, "server", "stop", TEST_USER, "--wait").endswith("stopped")
    assert host.run(f"pgrep -u {TEST_USER} -f jupyterhub-singleuser").rc == 1
    routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert f"/user/{TEST_USER}/" not in routes


def test_each_home_directory_is_private(host):
    home = host.file(f"/home/{TEST_USER}")
    assert home.user == TEST_USER
    assert home.mode == 0o700


def test_a_class_starting_at_once_waits_its_turn_at_a_lower_priority(host):
    """One start slot here (molecule.yml): hubadmin's server starts while alice's
    waits, alice's progress (the spawn page's messages) says so, and both servers
    run niced below the hub and the proxy."""
    try:
        # The hub answers a start at once; the start itself goes on.
        assert hub_app(host, "server", "start", INITIAL_ADMIN) == f"{INITIAL_ADMIN}: pending"
        out = hub_app(
            host, "server", "start", TEST_USER, "--wait", "--progress", "--timeout", "180"
        )
        lines = out.splitlines()
        assert lines[-1] == f"{TEST_USER}: ready"
        waiting = [m for m in lines if m.startswith(f"{TEST_USER}: Waiting your turn to start")]
        assert waiting, out
        assert "1 starting now (1 at a time)" in waiting[0]
        assert lines.index(waiting[0]) < lines.index(f"{TEST_USER}: Starting your server")
        hub_app(host, "server", "start", INITIAL_ADMIN, "--wait", "--timeout", "180")
        for user in (TEST_USER, INITIAL_ADMIN):
            niceness = host.check_output(f"ps -o ni= -p {server_pid(host, user)}")
            assert int(niceness) == 10, user
        for program in (HUB_PROCESS, ROOT_PROGRAMS["jupyterhub-proxy"]):
            pid = oldest_pid(host, program)
            assert int(host.check_output(f"ps -o ni= -p {pid}")) == 0, program
    finally:
        hub_app(host, "server", "stop", TEST_USER, "--wait")
        hub_app(host, "server", "stop", INITIAL_ADMIN, "--wait")
