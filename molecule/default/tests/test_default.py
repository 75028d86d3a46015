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
import subprocess
import time
import uuid
from typing import Any

import pytest
import requests
import websocket
from requests.adapters import HTTPAdapter

HUB_APP = "/opt/jupyterhub/venv/bin/hub-app"
TEST_USER = "alice"
# Test-only password: its hash is in molecule.yml's inventory.
TEST_PASSWORD = "molecule-alice-password"
INITIAL_ADMIN = "hubadmin"
INITIAL_ADMIN_CREDENTIALS = "/root/jupyterhub-initial-admin.txt"
# The hub's name in the scenario's inventory (tls_domains); nothing resolves it,
# so requests go to the container's address while TLS checks this name.
HUB_NAME = "hub.molecule.test"
CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"


# --- helpers ------------------------------------------------------------------


def container_address(host) -> str:
    """The container's IP address on podman's bridge, as the test host reaches it."""
    name = host.backend.name
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    networks = json.loads(out)
    return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def hub_url(host, path: str = "/") -> str:
    return f"https://{container_address(host)}{path}"


def trusting(certificate: str) -> ssl.SSLContext:
    """A TLS context whose only trust anchor is the hub's own certificate.

    The self-signed certificate is a leaf (CA:FALSE), so OpenSSL accepts it as a
    trust anchor only with partial chains allowed: this pins that exact certificate.
    """
    context = ssl.create_default_context(cafile=certificate)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class _HubNameAdapter(HTTPAdapter):
    """Verify the hub's certificate, for HUB_NAME, while connecting to an address."""

    def __init__(self, certificate: str) -> None:
        self._context = trusting(certificate)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        kwargs["server_hostname"] = HUB_NAME
        kwargs["assert_hostname"] = HUB_NAME
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture
def trusted_certificate(host, tmp_path) -> str:
    """The hub's self-signed certificate, saved on the test host to trust it."""
    path = tmp_path / "hub.pem"
    path.write_text(host.file(CERTIFICATE).content_string)
    return str(path)


def browser(certificate: str) -> requests.Session:
    """A session that trusts only the hub's certificate and checks its name."""
    session = requests.Session()
    session.mount("https://", _HubNameAdapter(certificate))
    return session


def hub_app(host, *args: str) -> str:
    """Run ``hub-app`` as root inside the container; fail the test on error."""
    result = host.run_expect([0], " ".join([HUB_APP, *args]))
    return result.stdout.strip()


def xsrf_from(page: str) -> str:
    match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
    assert match, "the login form carries no _xsrf field"
    return match.group(1)


def log_in(host, certificate: str, username: str, password: str) -> requests.Response:
    """Log in through the hub's login form like a browser; return the last response."""
    session = browser(certificate)
    form = session.get(hub_url(host, "/hub/login"), timeout=30)
    assert form.status_code == 200, form.text[:500]
    response = session.post(
        hub_url(host, "/hub/login"),
        data={"username": username, "password": password, "_xsrf": xsrf_from(form.text)},
        timeout=60,
        allow_redirects=False,
    )
    response.session = session  # type: ignore[attr-defined]
    return response


def user_token(host, username: str) -> str:
    return hub_app(host, "token", "create", username, "--note", "molecule-verify")


def run_code(host, certificate: str, username: str, token: str, code: str) -> str:
    """Start a kernel through the server's REST API, run ``code``, return its text result."""
    session = browser(certificate)
    session.headers["Authorization"] = f"token {token}"
    base = hub_url(host, f"/user/{username}/api")
    kernel = session.post(f"{base}/kernels", json={"name": "python3"}, timeout=60)
    assert kernel.status_code == 201, kernel.text[:500]
    kernel_id = kernel.json()["id"]
    ws_url = f"wss://{container_address(host)}/user/{username}/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(
        ws_url,
        header=[f"Authorization: token {token}"],
        sslopt={"context": trusting(certificate), "server_hostname": HUB_NAME},
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": username,
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": False},
                    "channel": "shell",
                }
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message: dict[str, Any] = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
            if message["msg_type"] == "error":
                pytest.fail(f"the kernel raised {message['content']['ename']}")
        pytest.fail(f"no result for {code!r} within 60 s")
    finally:
        ws.close()
        session.delete(f"{base}/kernels/{kernel_id}", timeout=30)


def server_pid(host, username: str) -> int:
    out = host.check_output(f"pgrep -u {username} -f jupyterhub-singleuser")
    pids = [int(pid) for pid in out.split()]
    assert len(pids) == 1, f"expected one server process for {username}, found {pids}"
    return pids[0]


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
    credentials = host.file(INITIAL_ADMIN_CREDENTIALS).content_string
    password = re.search(r"^password: (\S+)$", credentials, re.MULTILINE).group(1)
    response = log_in(host, trusted_certificate, INITIAL_ADMIN, password)
    assert response.status_code == 302
    admin_page = response.session.get(hub_url(host, "/hub/admin"), timeout=30)  # type: ignore[attr-defined]
    assert admin_page.status_code == 200


def test_a_server_spawns_and_its_route_appears_in_the_proxy(host):
    started = hub_app(host, "server", "start", TEST_USER, "--wait", "--timeout", "180")
    assert started.endswith("ready")
    routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert f"/user/{TEST_USER}/" in routes
    assert server_pid(host, TEST_USER) > 0


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
    # While the hub starts again, the proxy keeps routing to the server, and the
    # server keeps serving the user.
    assert session.get(status_url, timeout=30).status_code == 200
    deadline = time.monotonic() + 180
    while host.run(f"{HUB_APP} users list").rc != 0:
        assert time.monotonic() < deadline, "the hub did not come back within 180 s"
        time.sleep(1)
    assert server_pid(host, TEST_USER) == before
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
