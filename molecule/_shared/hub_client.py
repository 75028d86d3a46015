"""What the Molecule scenarios' tests share: reach the hub in a container like a user.

Every HTTP request goes from the test host to the container's address on podman's
bridge, through the real configurable-http-proxy, with TLS checked against the
hub's own self-signed certificate for HUB_NAME; operator actions use the real
``hub-app`` command inside the container. Imported by each scenario's tests
(the verifier's PYTHONPATH holds molecule/_shared).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from requests.adapters import HTTPAdapter

PROJECT = Path(__file__).resolve().parents[2]
HUB_APP = "/opt/jupyterhub/venv/bin/hub-app"
# The hub's name in the scenarios' inventories (tls_domains); nothing resolves it,
# so requests go to the container's address while TLS checks this name.
HUB_NAME = "hub.molecule.test"
CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"
# Where the play writes the initial administrator's generated password.
INITIAL_ADMIN_CREDENTIALS = "/root/jupyterhub-initial-admin.txt"


def podman_address(name: str) -> str:
    """The IP address of the container ``name`` on podman's bridge, as the test host reaches it."""
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    networks = json.loads(out)
    return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def container_address(host) -> str:
    """The address of testinfra's ``host`` (a podman container)."""
    return podman_address(host.backend.name)


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


class NameCheckingAdapter(HTTPAdapter):
    """Check the server's certificate for ``name`` while connecting to an address.

    With a ``context``, that context's trust anchors; without, the session's
    ``verify``.
    """

    def __init__(self, name: str, context: ssl.SSLContext | None = None) -> None:
        self._name = name
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        kwargs["server_hostname"] = self._name
        kwargs["assert_hostname"] = self._name
        super().init_poolmanager(*args, **kwargs)


def save_certificate(host, directory) -> str:
    """The hub's self-signed certificate, saved on the test host to trust it."""
    path = directory / "hub.pem"
    path.write_text(host.file(CERTIFICATE).content_string)
    return str(path)


def browser(certificate: str, name: str = HUB_NAME) -> requests.Session:
    """A session that trusts only the hub's certificate and checks its name."""
    session = requests.Session()
    session.mount("https://", NameCheckingAdapter(name, trusting(certificate)))
    return session


def hub_app(host, *args: str) -> str:
    """Run ``hub-app`` as root inside the container; fail the test on error."""
    result = host.run_expect([0], " ".join([HUB_APP, *args]))
    return result.stdout.strip()


def xsrf_from(page: str) -> str:
    match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
    assert match, "the login form carries no _xsrf field"
    return match.group(1)


def log_in(
    host, certificate: str, username: str, password: str, *, name: str = HUB_NAME
) -> requests.Response:
    """Log in through the hub's login form like a browser; return the last response.

    ``name``: the name TLS checks the certificate for (HUB_NAME, or the
    container's address where the certificate names it).
    """
    session = browser(certificate, name)
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


def initial_admin_password(host) -> str:
    """The initial administrator's password, as the play wrote it on the host."""
    credentials = host.file(INITIAL_ADMIN_CREDENTIALS).content_string
    match = re.search(r"^password: (\S+)$", credentials, re.MULTILINE)
    assert match, f"{INITIAL_ADMIN_CREDENTIALS} holds no password line"
    return match.group(1)


def session_page(host, certificate: str, cookies: str) -> requests.Response:
    """The hub's home page for a browser session from before (its cookies, sent by hand).

    200: still logged in (same cookie secret, same session in the database). The
    cookies go by hand because the host's address may have changed since.
    """
    return browser(certificate).get(
        hub_url(host, "/hub/home"), headers={"Cookie": cookies}, allow_redirects=False, timeout=30
    )


def recap_changed(output: str) -> int:
    """How many changes the PLAY RECAP of an ansible-playbook run reports."""
    recap = output[output.rindex("PLAY RECAP") :]
    return sum(int(n) for n in re.findall(r"changed=(\d+)", recap))


def user_token(host, username: str) -> str:
    return hub_app(host, "token", "create", username, "--note", "molecule-verify")


def start_kernel(
    host,
    certificate: str,
    username: str,
    token: str,
    kernel: str = "python3",
    *,
    name: str = HUB_NAME,
) -> str:
    """Start a kernel in the user's server through its REST API; return its id."""
    session = browser(certificate, name)
    session.headers["Authorization"] = f"token {token}"
    response = session.post(
        hub_url(host, f"/user/{username}/api/kernels"), json={"name": kernel}, timeout=60
    )
    assert response.status_code == 201, response.text[:500]
    return response.json()["id"]


def delete_kernel(
    host, certificate: str, username: str, token: str, kernel_id: str, *, name: str = HUB_NAME
) -> None:
    session = browser(certificate, name)
    session.headers["Authorization"] = f"token {token}"
    session.delete(hub_url(host, f"/user/{username}/api/kernels/{kernel_id}"), timeout=30)


def _kernel_channels(
    host,
    certificate: str,
    username: str,
    token: str,
    kernel_id: str,
    timeout: float,
    name: str = HUB_NAME,
) -> websocket.WebSocket:
    ws_url = f"wss://{container_address(host)}/user/{username}/api/kernels/{kernel_id}/channels"
    return websocket.create_connection(
        ws_url,
        header=[f"Authorization: token {token}"],
        sslopt={"context": trusting(certificate), "server_hostname": name},
        timeout=timeout,
    )


def _send_execute(ws: websocket.WebSocket, username: str, code: str) -> str:
    """Send an execute_request for ``code``; return its message id."""
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
    return msg_id


def leave_running(
    host, certificate: str, username: str, token: str, kernel_id: str, code: str
) -> None:
    """Start ``code`` in a kernel, wait until the kernel is busy with it, and disconnect.

    The kernel goes on computing with no client attached: a long computation
    nobody watches.
    """
    ws = _kernel_channels(host, certificate, username, token, kernel_id, 60)
    try:
        msg_id = _send_execute(ws, username, code)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if (
                message.get("parent_header", {}).get("msg_id") == msg_id
                and message["msg_type"] == "status"
                and message["content"]["execution_state"] == "busy"
            ):
                return
        pytest.fail(f"the kernel did not start running {code!r} within 60 s")
    finally:
        ws.close()


def execute(
    host,
    certificate: str,
    username: str,
    token: str,
    kernel_id: str,
    code: str,
    timeout: float = 60,
    *,
    name: str = HUB_NAME,
) -> str:
    """Run ``code`` in a running kernel over its websocket; return its text result.

    The result is the ``text/plain`` of the execute_result; else that of the
    display_data messages (IRkernel shows a value with display_data, never
    execute_result); else everything the code printed (kernels such as bash print
    rather than return). Fails if the kernel has not gone idle within ``timeout`` s.
    """
    ws = _kernel_channels(host, certificate, username, token, kernel_id, timeout, name)
    try:
        msg_id = _send_execute(ws, username, code)
        printed: list[str] = []
        displayed: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            # recv() answers the server's websocket pings (every 30 s) itself and
            # keeps reading with a fresh socket timeout, so with pings it never times
            # out: take control frames too, to check the deadline after each frame.
            ws.settimeout(left)
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                pytest.fail(f"the server closed the kernel's websocket while running {code!r}")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            message: dict[str, Any] = json.loads(frame.data)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
            if message["msg_type"] == "display_data":
                displayed.append(message["content"]["data"].get("text/plain", ""))
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            if message["msg_type"] == "error":
                pytest.fail(f"the kernel raised {message['content']['ename']}")
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                result = "\n".join(displayed) if displayed else "".join(printed)
                if not result.strip():
                    pytest.fail(f"{code!r} ran but gave no result and printed nothing")
                return result.strip()
        pytest.fail(f"no result for {code!r} within {timeout:g} s")
    finally:
        ws.close()


def run_code(
    host,
    certificate: str,
    username: str,
    token: str,
    code: str,
    kernel: str = "python3",
    timeout: float = 60,
    *,
    name: str = HUB_NAME,
) -> str:
    """Start a kernel, run ``code`` in it (see :func:`execute`), delete the kernel."""
    kernel_id = start_kernel(host, certificate, username, token, kernel, name=name)
    try:
        return execute(host, certificate, username, token, kernel_id, code, timeout, name=name)
    finally:
        delete_kernel(host, certificate, username, token, kernel_id, name=name)


class Poller(threading.Thread):
    """Ask a user's server for its status every ``interval`` seconds, as a user would.

    A poll succeeds when the server itself answers (``/api/status`` of the user's
    server, with ``started`` in it), not the hub standing in for it. Each poll
    opens a new connection: what a browser opening the page meets.
    """

    def __init__(
        self,
        url: str,
        token: str,
        session_factory: Callable[[], requests.Session],
        interval: float = 0.2,
        timeout: float = 2.0,
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.token = token
        self.session_factory = session_factory
        self.interval = interval
        self.timeout = timeout
        self.stop = threading.Event()
        self.successes: list[float] = []
        self.failures: list[tuple[float, str]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            session = self.session_factory()
            try:
                response = session.get(
                    self.url,
                    headers={"Authorization": f"token {self.token}", "Connection": "close"},
                    allow_redirects=False,
                    timeout=self.timeout,
                )
                if response.status_code == 200 and "started" in response.json():
                    self.successes.append(started)
                else:
                    self.failures.append((started, f"HTTP {response.status_code}"))
            # Any failure is a failed poll, never the end of polling.
            except Exception as error:
                self.failures.append((started, type(error).__name__))
            finally:
                session.close()
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time between two successful answers over [start, end]."""
        points = [start, *(at for at in self.successes if start <= at <= end), end]
        return max(later - earlier for earlier, later in itertools.pairwise(points))

    def failures_between(self, start: float, end: float) -> list[str]:
        return [reason for at, reason in self.failures if start <= at <= end]


def server_pid(host, username: str) -> int:
    out = host.check_output(f"pgrep -u {username} -f jupyterhub-singleuser")
    pids = [int(pid) for pid in out.split()]
    assert len(pids) == 1, f"expected one server process for {username}, found {pids}"
    return pids[0]


# The hub's process, found by its command line (oldest_pid).
HUB_PROCESS = "bin/jupyterhub --config"


def oldest_pid(host, command_line: str) -> int:
    """The oldest process whose command line contains ``command_line``."""
    return int(host.check_output(f"pgrep -o -f {command_line!r}").split()[0])


def mount_namespace(host, pid: int) -> str:
    return host.check_output(f"readlink /proc/{pid}/ns/mnt")


def check_sandboxed(host, pid: int, program: str) -> None:
    """What supervisor-sandbox gives the supervisor program PROGRAM, seen in its process PID.

    Its own mount namespace, with /usr and /etc (and the mounts under them, such
    as the container's /etc/hosts) read-only and a write there refused, and a
    /tmp and /var/tmp of its own: a file in the host's /tmp is not in the
    program's, and the program's is roles/supervisor's private directory.
    """
    own_namespace = mount_namespace(host, pid) != mount_namespace(host, 1)
    assert own_namespace, f"{program} (pid {pid}) shares the host's mounts"
    enter = f"nsenter --target {pid} --mount --"
    # The mount the program sees at each point is the last one listed (those
    # under it are covered).
    visible = {}
    for line in host.file(f"/proc/{pid}/mountinfo").content_string.splitlines():
        mount_point, options = line.split()[4:6]
        visible[mount_point] = options.split(",")
    for mount_point, options in visible.items():
        if mount_point in ("/usr", "/etc") or mount_point.startswith(("/usr/", "/etc/")):
            assert options[0] == "ro", f"{program}: {mount_point} is writable: {options}"
    # A new file in each, and /etc/hosts (a mount of its own in a container).
    for path in ("/etc/sandbox-check", "/usr/sandbox-check", "/etc/hosts"):
        refused = host.run(f"{enter} touch {path}")
        assert refused.rc != 0 and "Read-only file system" in refused.stderr, (path, refused)
    assert not host.file("/etc/sandbox-check").exists
    # One file in the host's /tmp, one in each of the program's (the
    # supervisor role's root-only folder).
    marker = f"sandbox-check-{uuid.uuid4().hex}"
    private = f"/var/lib/supervisor-sandbox/{program}"
    files = f"/tmp/{marker} {private}/tmp/{marker}-private {private}/var-tmp/{marker}-private"  # noqa: S108
    host.run_expect([0], f"touch {files}")
    try:
        assert host.run(f"{enter} test -e /tmp/{marker}").rc == 1, f"{program} sees the host's /tmp"
        host.run_expect([0], f"{enter} test -e /tmp/{marker}-private")
        host.run_expect([0], f"{enter} test -e /var/tmp/{marker}-private")
    finally:
        host.run(f"rm -f {files}")


def run_playbook(
    host, playbook: str = "site.yml", extra_vars: dict | None = None, *options: str
) -> subprocess.CompletedProcess:
    """A real playbook of the project against this container, as an operator runs it.

    ``extra_vars`` change the scenario's inventory for this run only (passed as a
    JSON file, so numbers stay numbers); ``options`` go to ansible-playbook
    (``--check``). The scenario's inventory and Ansible settings come from the
    environment Molecule gives the verifier.
    """
    path = (
        Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
        / f"vars-{os.getpid()}-{time.time_ns()}.json"
    )
    path.write_text(json.dumps(extra_vars or {}))
    try:
        return subprocess.run(
            [
                "ansible-playbook",
                "-i",
                os.environ["MOLECULE_INVENTORY_FILE"],
                "--limit",
                host.backend.name,
                "-e",
                f"@{path}",
                *options,
                str(PROJECT / playbook),
            ],
            capture_output=True,
            text=True,
            cwd=PROJECT,
            env={
                **os.environ,
                "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
                "ANSIBLE_NOCOLOR": "1",
            },
            timeout=900,
            check=False,
        )
    finally:
        path.unlink()
