"""Faults a hub meets in a term, while users work: nothing they see may break for long.

Two users' servers run; in alice's a kernel holds a variable. During each fault a
poller asks alice's server for its status through the public URL five times a
second (from the test host, through the real proxy, with TLS checked). After each
fault: every program runs again, every running server has its route, and the
kernel still holds its variable (except across a reboot, where servers end).

Each fault's longest gap and the variable's fate are printed as ``[faults] ...``
lines (they show in the CI log) and kept in molecule/faults/artifacts/.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hub_client import (
    HUB_APP,
    Poller,
    browser,
    container_address,
    execute,
    hub_app,
    hub_url,
    run_playbook,
    save_certificate,
    start_kernel,
    user_token,
)

PROGRAMS = ("jupyterhub", "jupyterhub-proxy", "jupyterhub-proxy-http")
WATCHER = "alice"  # the user whose server is polled, with the kernel variable
OTHER = "carol"
VARIABLE = "survivor = 6 * 7\nsurvivor"
POLL_INTERVAL = 0.2  # five polls a second
# Longest time the user's server may be unreachable during a restart or crash:
# the proxy's own restart (about a second) plus putting the routes back.
MAX_GAP_SECONDS = 10.0
# A failed change: the new proxy's failed start, then the previous one's.
MAX_ROLLBACK_GAP_SECONDS = 20.0
RECOVERY_TIMEOUT = 180
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
BAD_INVENTORIES = Path(__file__).resolve().parent.parent / "bad_inventories"


def record(capsys: pytest.CaptureFixture, host, key: str, value: dict) -> None:
    """Print a measurement past pytest's capture, and keep it in the artifacts."""
    line = {"host": host.backend.name, "fault": key, **value}
    with capsys.disabled():
        print(f"\n[faults] {json.dumps(line)}", flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "faults.jsonl").open("a") as results:
        results.write(json.dumps(line) + "\n")


def is_systemd(host) -> bool:
    return host.run("test -d /run/systemd/system").rc == 0


@dataclass
class Session:
    """What the faults act on: the users' tokens, alice's kernel, the certificate."""

    certificate: str
    tokens: dict[str, str]
    kernel_id: str

    def poller(self, host) -> Poller:
        return Poller(
            hub_url(host, f"/user/{WATCHER}/api/status"),
            self.tokens[WATCHER],
            lambda: browser(self.certificate),
            POLL_INTERVAL,
            timeout=1.0,
        )

    def set_up(self, host) -> None:
        """Both users' servers running, and a kernel of alice's holding the variable.

        What every check starts from and leaves behind (a reboot ends the
        servers, so that check sets this up again).
        """
        for user in (WATCHER, OTHER):
            hub_app(host, "server", "start", user, "--wait", "--timeout", "120")
        self.kernel_id = start_kernel(host, self.certificate, WATCHER, self.tokens[WATCHER])
        execute(host, self.certificate, WATCHER, self.tokens[WATCHER], self.kernel_id, VARIABLE)


@pytest.fixture(scope="module")
def session(host, tmp_path_factory) -> Session:
    certificate = save_certificate(host, tmp_path_factory.mktemp(host.backend.name))
    tokens = {user: user_token(host, user) for user in (WATCHER, OTHER)}
    session = Session(certificate, tokens, kernel_id="")
    session.set_up(host)
    return session


def programs_running(host) -> str:
    """'' when every program runs, else supervisorctl's status."""
    status = host.run("supervisorctl status").stdout
    running = all(re.search(rf"^{p}\s+RUNNING", status, re.MULTILINE) for p in PROGRAMS)
    return "" if running else status


def unrouted_servers(host) -> list[str]:
    users = json.loads(hub_app(host, "users", "list", "--json"))
    routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
    return [
        server["url"]
        for user in users
        for server in (user.get("servers") or {}).values()
        if server.get("ready") and server["url"] not in routes
    ]


def wait_until_recovered(host, poller: Poller, since: float) -> None:
    """Every program runs, the watched server answers again, every server is routed."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    why = ""
    while time.monotonic() < deadline:
        status = programs_running(host)
        answered = any(at > since for at in poller.successes)
        if not status and answered:
            unrouted = unrouted_servers(host)
            if not unrouted:
                return
            why = f"servers without a route: {unrouted}"
        else:
            why = status or "the user's server does not answer through the proxy"
        time.sleep(0.5)
    pytest.fail(f"not recovered within {RECOVERY_TIMEOUT} s: {why}")


def variable_survived(host, session: Session) -> bool:
    value = execute(
        host, session.certificate, WATCHER, session.tokens[WATCHER], session.kernel_id, "survivor"
    )
    return value == "42"


def program_pid(host, program: str) -> int:
    return int(host.check_output(f"supervisorctl pid {program}"))


def kill(program: str) -> Callable:
    def act(host) -> None:
        host.run_expect([0], f"kill -9 {program_pid(host, program)}")

    return act


def supervisorctl_restart(program: str) -> Callable:
    def act(host) -> None:
        host.run_expect([0], f"supervisorctl restart {program}")

    return act


def supervisord_restart(command: str) -> Callable:
    def act(host) -> None:
        if command.startswith("systemctl") and not is_systemd(host):
            pytest.skip("no systemd on this host")
        before = host.check_output("cat /var/run/supervisord.pid")
        host.run_expect([0], command)
        # Restarted, not just left running or left stopped.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = host.run("cat /var/run/supervisord.pid").stdout.strip()
            if now and now != before and host.run(f"test -d /proc/{now}").rc == 0:
                return
            time.sleep(0.5)
        pytest.fail(f"{command}: supervisord did not come back with a new process")

    return act


PORT_HOLDER = """
import pathlib, socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
# Past the TIME_WAIT connections the poller leaves; never past a listener.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
deadline = time.monotonic() + 30
while True:  # take the port the moment its owner lets go of it
    try:
        s.bind(("::", port))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.001)
s.listen()
pathlib.Path(f"/tmp/test-port-holder-{port}.bound").touch()
time.sleep(3600)
"""


def occupy(host, port: int, then: str = "") -> None:
    """Hold a TCP port in the container with a process that is not the bundle's.

    On every address, IPv6 and IPv4 (the proxy listens on both). With ``then``,
    the holder starts first and ``then`` runs (say, a kill of the port's owner):
    the holder takes the port the moment it is free, before anything restarts.
    """
    host.run_expect([0], f"cat > /tmp/test-port-holder <<'EOF'{PORT_HOLDER}EOF")
    host.run(f"rm -f /tmp/test-port-holder-{port}.bound")
    host.run_expect(
        [0],
        f"setsid python3 /tmp/test-port-holder {port} "
        f"</dev/null >/tmp/test-port-holder-{port}.log 2>&1 &",
    )
    if then:
        time.sleep(0.5)
        host.run_expect([0], then)
    deadline = time.monotonic() + 30
    while host.run(f"test -e /tmp/test-port-holder-{port}.bound").rc != 0:
        log = host.run(f"cat /tmp/test-port-holder-{port}.log").stdout
        assert time.monotonic() < deadline, f"could not hold port {port}: {log}"
        time.sleep(0.2)


def release(host, port: int) -> None:
    host.run(f"pkill -f '^python3 /tmp/test-port-holder {port}$'")


def crash_loop_until_fatal(host) -> None:
    """The proxy cannot bind its port until supervisord gives up (FATAL); then it can."""
    occupy(host, 443, then=f"kill -9 {program_pid(host, 'jupyterhub-proxy')}")
    try:
        deadline = time.monotonic() + 120
        while "FATAL" not in host.run("supervisorctl status jupyterhub-proxy").stdout:
            assert time.monotonic() < deadline, "the proxy never became FATAL"
            time.sleep(0.5)
    finally:
        release(host, 443)


FAULTS = {
    "kill -9 jupyterhub": kill("jupyterhub"),
    "kill -9 jupyterhub-proxy": kill("jupyterhub-proxy"),
    "kill -9 jupyterhub-proxy-http": kill("jupyterhub-proxy-http"),
    "supervisorctl restart jupyterhub": supervisorctl_restart("jupyterhub"),
    "supervisorctl restart jupyterhub-proxy": supervisorctl_restart("jupyterhub-proxy"),
    "supervisorctl restart jupyterhub-proxy-http": supervisorctl_restart("jupyterhub-proxy-http"),
    "systemctl restart supervisor": supervisord_restart("systemctl restart supervisor"),
    "service supervisor restart": supervisord_restart("service supervisor restart"),
    "proxy FATAL, then its port free again": crash_loop_until_fatal,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_users_barely_notice(host, session, fault, capsys):
    poller = session.poller(host)
    poller.start()
    try:
        time.sleep(1)
        assert poller.successes, f"the server is unreachable before the fault: {poller.failures}"
        started = time.monotonic()
        FAULTS[fault](host)
        acted = time.monotonic()
        wait_until_recovered(host, poller, acted)
        time.sleep(1)
    finally:
        poller.finish()
    ended = time.monotonic()
    gap = poller.longest_gap(started, ended)
    survived = variable_survived(host, session)
    record(
        capsys,
        host,
        fault,
        {
            "longest_gap_seconds": round(gap, 2),
            "kernel_variable_survived": survived,
            "polls_ok": len([at for at in poller.successes if started <= at <= ended]),
            "polls_failed": len(poller.failures_between(started, ended)),
            "failure_kinds": sorted(set(poller.failures_between(started, ended))),
        },
    )
    assert survived, "the kernel lost its variable"
    limit = MAX_ROLLBACK_GAP_SECONDS if "FATAL" in fault else MAX_GAP_SECONDS
    if "FATAL" not in fault:
        assert gap < limit, f"the user's server was unreachable for {gap:.1f} s"


# --- changes that must not take the hub down ---------------------------------------


def deploy(host, extra_vars: dict) -> subprocess.CompletedProcess:
    """The real play (site.yml) against this container, with some inventory changed."""
    return run_playbook(host, "site.yml", extra_vars)


STATE_FILES = (
    "/etc/supervisor/conf.d/*.conf /opt/configurable-http-proxy/start-proxy "
    "/opt/configurable-http-proxy/tls-profile.js /opt/configurable-http-proxy/http-responder "
    "/etc/jupyterhub/hub_app.json /etc/jupyterhub/jupyterhub_config.py"
)


def host_state(host) -> str:
    """What a failed deploy must leave as it was: files, modes, homes, processes."""
    return host.check_output(
        f"sha256sum {STATE_FILES}; stat -c '%n %a %U %G' /home/* {STATE_FILES}; "
        + "; ".join(f"supervisorctl pid {p}" for p in PROGRAMS)
    )


def recap(output: str) -> dict[str, int]:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(
        zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True)
    )


@dataclass
class FailedChange:
    """A valid inventory change whose program cannot start: its port is held."""

    program: str
    port: int
    change: dict
    on_systemd: bool  # run on one host each: the guard works the same on both
    kept_file: str
    kept_text: str
    says: str  # what the program's log tail must show


FAILED_CHANGES = {
    "proxy on a busy port": FailedChange(
        "jupyterhub-proxy",
        8443,
        {"proxy_https_port": 8443},
        True,
        "/opt/configurable-http-proxy/start-proxy",
        "--port=443",
        "already in use",
    ),
    "hub on a busy port": FailedChange(
        "jupyterhub",
        8090,
        {"jupyterhub_hub_bind_url": "http://127.0.0.1:8090"},
        False,
        "/etc/jupyterhub/hub_app.json",
        "127.0.0.1:8081",
        "already in use",
    ),
}


@pytest.mark.parametrize("name", list(FAILED_CHANGES))
def test_a_change_that_does_not_start_is_rolled_back(host, session, name, capsys):
    """The play fails naming the program and quoting its log; the old one serves again."""
    failed = FAILED_CHANGES[name]
    if failed.on_systemd != is_systemd(host):
        pytest.skip("checked on the other host")
    occupy(host, failed.port)
    poller = session.poller(host)
    poller.start()
    try:
        started = time.monotonic()
        result = deploy(host, failed.change)
        wait_until_recovered(host, poller, time.monotonic())
    finally:
        poller.finish()
        release(host, failed.port)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"{failed.program} did not start with its new configuration" in output, output[-3000:]
    assert "Put back the previous configuration" in output, output[-3000:]
    assert f"Last lines of /var/log/supervisor/{failed.program}.log" in output, output[-3000:]
    assert failed.says in output, output[-3000:]
    assert failed.kept_text in host.file(failed.kept_file).content_string
    gap = poller.longest_gap(started, time.monotonic())
    record(
        capsys,
        host,
        f"deploy: {failed.change}, port held by another process",
        {
            "longest_gap_seconds": round(gap, 2),
            "kernel_variable_survived": variable_survived(host, session),
        },
    )
    assert gap < MAX_ROLLBACK_GAP_SECONDS


@pytest.mark.parametrize(
    "typo", [{"proxy_https_port": 70000}, {"proxy_api_port": 8081}], ids=["https-70000", "api-8081"]
)
def test_port_typos_keep_the_old_hub_serving(host, session, typo, capsys):
    before = host_state(host)
    poller = session.poller(host)
    poller.start()
    try:
        started = time.monotonic()
        result = deploy(host, typo)
        time.sleep(2)
    finally:
        poller.finish()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert next(iter(typo)) in output
    assert host_state(host) == before, "the failed deploy changed the host"
    gap = poller.longest_gap(started, time.monotonic())
    record(capsys, host, f"deploy: {typo}", {"longest_gap_seconds": round(gap, 2)})
    assert gap < 2.0


def bad_inventory_cases() -> list[Path]:
    return sorted(BAD_INVENTORIES.glob("*.yml"))


@pytest.mark.parametrize("case", bad_inventory_cases(), ids=lambda path: path.stem)
def test_a_bad_inventory_is_refused_before_anything_changes(host, session, case, capsys):
    if not is_systemd(host):
        pytest.skip("run once, on the host with systemd (the other one checks the hub's rollback)")
    spec = yaml.safe_load(case.read_text())
    before = host_state(host)
    result = deploy(host, spec["vars"])
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"accepted: {spec['vars']}\n{output[-2000:]}"
    counts = recap(result.stdout)
    assert counts["changed"] == 0, output[-3000:]
    assert spec["expect"] in output, output[-3000:]
    assert host_state(host) == before, "the refused deploy changed the host"
    # ansible-core prints the failed task's message on one line of its own.
    messages = re.findall(r"^\[ERROR\]: Task failed: (?:Action failed: )?(.*)$", output, re.M)
    record(
        capsys, host, f"bad inventory {case.stem}", {"vars": spec["vars"], "message": messages[-1:]}
    )
    # The logged-in user's server still answers.
    assert variable_survived(host, session)


# --- the user's own server dies; then the host reboots -------------------------------


def test_a_dead_server_is_noticed_and_can_start_again(host, session, capsys):
    pid = int(host.check_output(f"pgrep -u {OTHER} -f jupyterhub-singleuser"))
    host.run_expect([0], f"kill -9 {pid}")
    killed = time.monotonic()
    deadline = killed + 60
    while True:
        model = json.loads(hub_app(host, "users", "list", "--json"))
        carol = next(user for user in model if user["name"] == OTHER)
        routes = json.loads(hub_app(host, "proxy", "routes", "--json"))
        if not carol.get("servers") and f"/user/{OTHER}/" not in routes:
            break
        assert time.monotonic() < deadline, f"the hub still shows {OTHER}'s dead server: {carol}"
        time.sleep(0.5)
    noticed = time.monotonic() - killed
    record(capsys, host, "kill -9 of a user's server", {"noticed_after_seconds": round(noticed, 1)})
    # Within the poll interval (5 s in this scenario), with a margin for the API.
    assert noticed < 15
    hub_app(host, "server", "start", OTHER, "--wait", "--timeout", "120")
    assert variable_survived(host, session)


def test_after_a_reboot_the_hub_is_back_and_users_can_start_again(host, session, capsys):
    users_before = {user["name"] for user in json.loads(hub_app(host, "users", "list", "--json"))}
    name = host.backend.name
    started = time.monotonic()
    subprocess.run(["podman", "restart", "--time", "10", name], check=True, capture_output=True)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        if host.run(f"{HUB_APP} users list").rc == 0 and not programs_running(host):
            break
        assert time.monotonic() < deadline, host.run("supervisorctl status").stdout
        time.sleep(1)
    users_after = json.loads(hub_app(host, "users", "list", "--json"))
    assert {user["name"] for user in users_after} == users_before, "the hub database lost users"
    # Servers end at a reboot; the hub knows, and each user starts again.
    assert all(not user.get("servers") for user in users_after), users_after
    hub_app(host, "server", "start", WATCHER, "--wait", "--timeout", "120")
    kernel_id = start_kernel(host, session.certificate, WATCHER, session.tokens[WATCHER])
    result = execute(
        host, session.certificate, WATCHER, session.tokens[WATCHER], kernel_id, "6 * 7"
    )
    assert result == "42"
    record(
        capsys,
        host,
        "container restart (reboot)",
        {
            "back_after_seconds": round(time.monotonic() - started, 1),
            "kernel_variable_survived": False,
        },
    )
    assert container_address(host)
