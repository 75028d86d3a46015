"""``hub-app health``: each check from made-up inputs, then the command as a whole."""

from __future__ import annotations

import json
import subprocess
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub_app import cli, health
from hub_app.api import HubAPIError, HubConnectionError
from hub_app.health import FAULT, OFF, OK, SKIPPED, HealthOptions, Probes, Row
from hub_app.settings import SettingsError, load_settings
from hub_app.settings.services import IdleCullerSettings

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

# --- programs -----------------------------------------------------------------------

# Captured from supervisorctl 4.2.5 (Debian 12) against a supervisord running
# programs in every state, a group member and an event listener (the trailing
# spaces after STARTING left out).
STATUS_SAMPLE = """\
backoff                          BACKOFF   Exited too quickly (process log may have details)
exiter                           EXITED    Dec 04 05:09 AM
grp:member                       RUNNING   pid 4800, uptime 0:00:10
listener                         RUNNING   pid 4780, uptime 0:00:10
notstarted                       STOPPED   Not started
quitter                          FATAL     Exited too quickly (process log may have details)
sleeper                          RUNNING   pid 4807, uptime 0:00:10
starting                         STARTING
stopped                          STOPPED   Dec 04 05:09 AM
"""

HEALTHY_STATUS = """\
jupyterhub                       RUNNING   pid 812, uptime 3 days, 4:05:06
jupyterhub-proxy                 RUNNING   pid 790, uptime 3 days, 4:05:07
jupyterhub-proxy-http            RUNNING   pid 791, uptime 3 days, 4:05:07
supervisor-watchdog              RUNNING   pid 789, uptime 3 days, 4:05:08
"""


def test_parse_supervisor_status_reads_every_state():
    programs = health.parse_supervisor_status(STATUS_SAMPLE)
    assert [(p.name, p.state) for p in programs] == [
        ("backoff", "BACKOFF"),
        ("exiter", "EXITED"),
        ("grp:member", "RUNNING"),
        ("listener", "RUNNING"),
        ("notstarted", "STOPPED"),
        ("quitter", "FATAL"),
        ("sleeper", "RUNNING"),
        ("starting", "STARTING"),
        ("stopped", "STOPPED"),
    ]
    assert programs[2].description == "pid 4800, uptime 0:00:10"
    assert programs[7].description == ""
    # What `supervisorctl status NAME` prints for a name it does not know: no program.
    assert health.parse_supervisor_status("nosuch: ERROR (no such process)\n") == []


@pytest.mark.parametrize(
    "returncode, output, expected",
    [
        (
            0,
            HEALTHY_STATUS,
            [
                ("program jupyterhub", OK),
                ("program jupyterhub-proxy", OK),
                ("program jupyterhub-proxy-http", OK),
                ("program supervisor-watchdog", OK),
            ],
        ),
        (
            3,
            STATUS_SAMPLE,
            [
                ("program backoff", FAULT),
                ("program exiter", FAULT),
                ("program grp:member", OK),
                ("program listener", OK),
                ("program notstarted", FAULT),
                ("program quitter", FAULT),
                ("program sleeper", OK),
                ("program starting", FAULT),
                ("program stopped", FAULT),
            ],
        ),
        # What supervisorctl 4.2.5 prints when supervisord is not there, or not for us.
        (4, "unix:///var/run/supervisor.sock no such file\n", [("supervisord", FAULT)]),
        (4, "unix:///var/run/supervisor.sock refused connection\n", [("supervisord", FAULT)]),
        (
            1,
            "error: <class 'PermissionError'>, [Errno 13] Permission denied: file: "
            "/usr/lib/python3/dist-packages/supervisor/xmlrpc.py line: 557\n",
            [("supervisord", FAULT)],
        ),
        (
            1,
            "error: <class 'xmlrpc.client.Fault'>, <Fault 6: 'SHUTDOWN_STATE'>: file: "
            "/usr/lib/python3.11/xmlrpc/client.py line: 668\n",
            [("supervisord", FAULT)],
        ),
        (None, "supervisorctl is not installed", [("supervisord", FAULT)]),
        (0, "", [("supervisord", FAULT)]),
    ],
)
def test_check_programs(returncode, output, expected):
    rows = health.check_programs(returncode, output)
    assert [(row.check, row.state) for row in rows] == expected
    for row in rows:
        assert bool(row.advice) == (row.state == FAULT), row


def test_check_programs_says_what_to_do():
    rows = {row.check: row for row in health.check_programs(3, STATUS_SAMPLE)}
    assert rows["program quitter"].detail == (
        "FATAL Exited too quickly (process log may have details)"
    )
    assert rows["program quitter"].advice.startswith("`supervisorctl start quitter`")
    down = health.check_programs(4, "unix:///var/run/supervisor.sock no such file\n")[0]
    assert down.detail == "does not answer: unix:///var/run/supervisor.sock no such file"
    assert "`service supervisor start`" in down.advice
    empty = health.check_programs(0, "")[0]
    assert (empty.detail, empty.advice) == (
        "runs no program",
        "deploy the hub: run site.yml (bin/deploy on this host)",
    )


# --- the hub's API and the routes ---------------------------------------------------


def _server(url: str, *, ready: bool = True, pending: str | None = None) -> dict:
    return {"name": "", "url": url, "ready": ready, "pending": pending}


def _user(name: str, *servers: dict) -> dict:
    return {"name": name, "servers": {server["name"]: server for server in servers}}


def _route(spec: str, **data: object) -> tuple[str, dict]:
    return spec, {"routespec": spec, "target": "http://127.0.0.1:50000", "data": data}


HUB_ROUTE = _route("/", hub=True)


class FakeHub:
    """What the checks ask of HubClient; each answer a value or an exception to raise."""

    api_url = "http://127.0.0.1:8081/hub/api"

    def __init__(self, *, version="5.5.4", whoami=None, routes=None, users=()) -> None:
        self.answers = {
            "version": version,
            "whoami": whoami or {"kind": "service", "name": "hub-app-cli"},
            "get_routes": dict([HUB_ROUTE]) if routes is None else routes,
            "iter_users": list(users),
        }
        self.closed = False

    def _answer(self, what: str):
        answer = self.answers[what]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def version(self):
        return self._answer("version")

    def whoami(self):
        return self._answer("whoami")

    def get_routes(self):
        return self._answer("get_routes")

    def iter_users(self):
        return iter(self._answer("iter_users"))

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    "hub, state, detail",
    [
        (
            FakeHub(),
            OK,
            "JupyterHub 5.5.4 at http://127.0.0.1:8081/hub/api, token of service hub-app-cli works",
        ),
        (
            FakeHub(version=HubConnectionError("cannot connect to the hub: Connection refused")),
            FAULT,
            "does not answer: cannot connect to the hub: Connection refused",
        ),
        (
            FakeHub(whoami=HubAPIError(403, "Forbidden", "bad token")),
            FAULT,
            "JupyterHub 5.5.4 refuses the API token: 403 Forbidden",
        ),
        (
            FakeHub(whoami=HubAPIError(500, "Internal Server Error", "boom")),
            FAULT,
            "JupyterHub 5.5.4 fails: 500 Internal Server Error: boom",
        ),
    ],
)
def test_check_hub_api(hub, state, detail):
    row = health.check_hub_api(hub)
    assert (row.check, row.state, row.detail) == ("hub API", state, detail)
    assert bool(row.advice) == (state == FAULT)


@pytest.mark.parametrize(
    "routes, users, state, detail",
    [
        # Only the hub's own route, and no server: nothing to route.
        (
            [HUB_ROUTE],
            [_user("alice")],
            OK,
            "0 running server(s), each routed; 0 user route(s), 1 in all",
        ),
        (
            [HUB_ROUTE, _route("/user/alice/", user="alice", server_name="")],
            [_user("alice", _server("/user/alice/")), _user("bob")],
            OK,
            "1 running server(s), each routed; 1 user route(s), 2 in all",
        ),
        # A service's route is not a user's.
        (
            [HUB_ROUTE, _route("/services/grafana/", service="grafana")],
            [],
            OK,
            "0 running server(s), each routed; 0 user route(s), 2 in all",
        ),
        # A pending server's route may be on its way in or out: left alone.
        (
            [HUB_ROUTE, _route("/user/alice/", user="alice", server_name="")],
            [_user("alice", _server("/user/alice/", ready=False, pending="stop"))],
            OK,
            "0 running server(s), each routed; 1 user route(s), 2 in all",
        ),
        # The hub under a path prefix: routes and server URLs both carry it.
        (
            [_route("/jhub/", hub=True), _route("/jhub/user/alice/", user="alice")],
            [_user("alice", _server("/jhub/user/alice/"))],
            OK,
            "1 running server(s), each routed; 1 user route(s), 2 in all",
        ),
        (
            [HUB_ROUTE],
            [_user("alice", _server("/user/alice/")), _user("bob", _server("/user/bob/"))],
            FAULT,
            "running server(s) without a route: /user/alice/, /user/bob/",
        ),
        (
            [HUB_ROUTE, _route("/user/carol/", user="carol", server_name="")],
            [_user("carol")],
            FAULT,
            "route(s) with no server: /user/carol/",
        ),
        (
            [HUB_ROUTE, _route("/user/carol/", user="carol")],
            [_user("alice", _server("/user/alice/"))],
            FAULT,
            "running server(s) without a route: /user/alice/; route(s) with no server: "
            "/user/carol/",
        ),
    ],
)
def test_compare_routes(routes, users, state, detail):
    row = health.compare_routes(dict(routes), users)
    assert (row.check, row.state, row.detail) == ("proxy routes", state, detail)
    if state == FAULT:
        assert row.advice.startswith("`hub-app proxy sync`")


def test_check_routes_reads_through_the_client():
    hub = FakeHub(
        routes=dict([HUB_ROUTE, _route("/user/carol/", user="carol")]),
        users=[_user("carol")],
    )
    assert health.check_routes(hub).detail == "route(s) with no server: /user/carol/"


def test_check_routes_when_the_proxy_is_down():
    error = HubAPIError(500, "Internal Server Error", "Connection refused")
    row = health.check_routes(FakeHub(routes=error))
    assert row.state == FAULT
    assert row.detail == (
        "the hub cannot read the proxy's routes: 500 Internal Server Error: Connection refused"
    )
    assert "`supervisorctl start jupyterhub-proxy`" in row.advice


# --- certificate --------------------------------------------------------------------


def _certificate(days_left: float, *, self_signed: bool = True) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example.org")])
    issuer = subject if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "R11")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


PEM_PATH = "/etc/jupyterhub/tls/fullchain.pem"


@pytest.mark.parametrize(
    "pem, state, detail, advice",
    [
        (
            _certificate(200.5),
            OK,
            f"{PEM_PATH}: 200 days left (until 2025-12-19 00:00 UTC), self-signed",
            "",
        ),
        (
            # The leaf first, then the chain: the leaf's dates count.
            _certificate(60, self_signed=False) + _certificate(3000),
            OK,
            f"{PEM_PATH}: 60 days left (until 2025-07-31 12:00 UTC), issued by R11",
            "",
        ),
        (
            _certificate(14),
            OK,
            f"{PEM_PATH}: 14 days left (until 2025-06-15 12:00 UTC), self-signed",
            "",
        ),
        (
            _certificate(13.9),
            FAULT,
            f"{PEM_PATH}: 13 days left (until 2025-06-15 09:36 UTC), self-signed; "
            "fewer than 14 days left",
            "re-run site.yml",
        ),
        (
            _certificate(5, self_signed=False),
            FAULT,
            f"{PEM_PATH}: 5 days left (until 2025-06-06 12:00 UTC), issued by R11; "
            "fewer than 14 days left",
            "`certbot renew`",
        ),
        (
            _certificate(-2, self_signed=False),
            FAULT,
            f"{PEM_PATH} expired 2 days ago (2025-05-30 12:00 UTC), issued by R11; "
            "fewer than 14 days left",
            "`certbot renew`",
        ),
        (
            b"not a certificate\n",
            FAULT,
            f"{PEM_PATH} holds no PEM certificate: ",
            "re-run site.yml",
        ),
    ],
)
def test_check_certificate(pem, state, detail, advice):
    row = health.check_certificate(PEM_PATH, pem, NOW, 14)
    assert (row.check, row.state) == ("TLS certificate", state)
    assert row.detail.startswith(detail), row.detail
    if state == OK:
        assert row.detail == detail
    assert row.advice.startswith(advice)


def test_check_certificate_unreadable():
    row = health.check_certificate(PEM_PATH, None, NOW, 14, "No such file or directory")
    assert (row.state, row.detail) == (FAULT, f"cannot read {PEM_PATH}: No such file or directory")


# --- disk ---------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")
GIB = 1024**3


@pytest.mark.parametrize(
    "usage, state, detail",
    [
        (Usage(100 * GIB, 50 * GIB, 50 * GIB), OK, "50.0 GiB free of 100.0 GiB (50%)"),
        (Usage(100 * GIB, 95 * GIB, 5 * GIB), OK, "5.0 GiB free of 100.0 GiB (5%)"),
        (
            Usage(100 * GIB, 96 * GIB, 4 * GIB),
            FAULT,
            "4.0 GiB free of 100.0 GiB (4%); under 5% or 1.0 GiB",
        ),
        # A small filesystem: a tenth free, but under a GiB.
        (
            Usage(8 * GIB, 7.2 * GIB, 0.8 * GIB),
            FAULT,
            "819.2 MiB free of 8.0 GiB (10%); under 5% or 1.0 GiB",
        ),
        (Usage(0, 0, 0), FAULT, "0 B free of 0 B (0%); under 5% or 1.0 GiB"),
    ],
)
def test_check_disk(usage, state, detail):
    row = health.check_disk("/home", lambda path: usage, 5, 1024)
    assert (row.check, row.state, row.detail) == ("disk /home", state, detail)
    if state == FAULT:
        assert "`du -xh --max-depth=2 /home | sort -h | tail`" in row.advice


def test_check_disk_missing_path():
    def usage(path):
        raise FileNotFoundError(2, "No such file or directory", path)

    row = health.check_disk("/srv/nothing", usage, 5, 1024)
    assert (row.state, row.detail) == (FAULT, "cannot look: No such file or directory")


# --- idle culler --------------------------------------------------------------------


def _culler(enabled: bool = True, every: int = 0) -> IdleCullerSettings:
    return IdleCullerSettings(
        enabled=enabled,
        timeout=3600,
        max_age=0,
        every=every,
        remove_users=False,
        state_file="/var/lib/jupyterhub/idle-culler.json",
        log_file="/var/log/jupyterhub/idle-culler.log",
    )


def _record(finished_ago: float | None, *, ok: bool = True, every=300, **extra) -> bytes:
    finished = None if finished_ago is None else NOW - timedelta(seconds=finished_ago)
    record = {
        "started": (NOW - timedelta(seconds=(finished_ago or 0) + 2)).isoformat(),
        "finished": finished and finished.isoformat(),
        "ok": ok,
        "error": None if ok else "HTTPClientError: HTTP 403: Forbidden",
        "every": every,
        "checked": 2,
        "culled": ["alice"],
        **extra,
    }
    return json.dumps(record).encode()


@pytest.mark.parametrize(
    "culler, record, state, detail",
    [
        (_culler(enabled=False), None, OFF, "off (idle_culler.enabled is false)"),
        (
            _culler(),
            _record(120),
            OK,
            "last run finished 2 min ago, stopped 1 (runs every 5 min)",
        ),
        # 3 intervals and a minute: 960 s for every 300 s.
        (_culler(), _record(960), OK, "last run finished 16 min ago, stopped 1 (runs every 5 min)"),
        (
            _culler(),
            _record(961),
            FAULT,
            "last run finished 16 min ago, stopped 1 (runs every 5 min); none for over 16 min",
        ),
        # No interval in the record: the settings' (every 0: a quarter of the timeout).
        (
            _culler(),
            _record(1000, every=None),
            FAULT,
            "last run finished 16 min ago, stopped 1 (runs every 5 min); none for over 16 min",
        ),
        (
            _culler(every=60),
            _record(250, every=None),
            FAULT,
            "last run finished 4 min ago, stopped 1 (runs every 1 min); none for over 4 min",
        ),
        (
            _culler(),
            _record(None, ok=False),
            FAULT,
            f"the last run (started {(NOW - timedelta(seconds=2)).isoformat()}) failed: "
            "HTTPClientError: HTTP 403: Forbidden",
        ),
        (
            _culler(),
            None,
            FAULT,
            "no run record at /var/lib/jupyterhub/idle-culler.json; it has never finished a run",
        ),
        (
            _culler(),
            b"{not json",
            FAULT,
            "unreadable run record /var/lib/jupyterhub/idle-culler.json: ",
        ),
        (
            _culler(),
            _record(10, finished="yesterday"),
            FAULT,
            "unreadable run record /var/lib/jupyterhub/idle-culler.json: ",
        ),
        # A timestamp without a zone is read as UTC.
        (
            _culler(),
            _record(10, finished=(NOW - timedelta(seconds=30)).replace(tzinfo=None).isoformat()),
            OK,
            "last run finished 30 s ago, stopped 1 (runs every 5 min)",
        ),
    ],
)
def test_check_idle_culler(culler, record, state, detail):
    row = health.check_idle_culler(culler, record, NOW)
    assert (row.check, row.state) == ("idle culler", state)
    assert row.detail.startswith(detail), row.detail
    if state == FAULT:
        assert "/var/log/jupyterhub/idle-culler.log" in row.advice
        assert "`supervisorctl restart jupyterhub`" in row.advice
    else:
        assert row.detail == detail
        assert row.advice == ""


def test_check_idle_culler_unreadable_record():
    row = health.check_idle_culler(_culler(), None, NOW, "Permission denied")
    assert (row.state, row.detail) == (
        FAULT,
        "cannot read /var/lib/jupyterhub/idle-culler.json: Permission denied",
    )


# --- all of them --------------------------------------------------------------------


@pytest.fixture
def settings(settings_data, write_settings):
    return load_settings(write_settings(settings_data))


def _probes(loaded, hub: FakeHub, files: dict[str, bytes], **changes) -> Probes:
    def read_bytes(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    return Probes(
        **{
            "settings": lambda: loaded,
            "client": lambda: hub,
            "supervisor_status": lambda: (0, HEALTHY_STATUS),
            "disk_usage": lambda path: Usage(100 * GIB, 10 * GIB, 90 * GIB),
            "read_bytes": read_bytes,
            "now": lambda: NOW,
            **changes,
        }
    )


def test_run_checks_on_a_healthy_hub(settings):
    hub = FakeHub()
    files = {PEM_PATH: _certificate(90), settings.idle_culler.state_file: _record(30)}
    options = HealthOptions(certificate=PEM_PATH, disks=("/home", "/var/lib/jupyterhub"))
    rows = health.run_checks(options, _probes(settings, hub, files), "/etc/hub_app.json")
    assert [(row.check, row.state) for row in rows] == [
        ("program jupyterhub", OK),
        ("program jupyterhub-proxy", OK),
        ("program jupyterhub-proxy-http", OK),
        ("program supervisor-watchdog", OK),
        ("settings", OK),
        ("hub API", OK),
        ("proxy routes", OK),
        ("TLS certificate", OK),
        ("disk /home", OK),
        ("disk /var/lib/jupyterhub", OK),
        ("idle culler", OK),
    ]
    assert health.healthy(rows)
    assert hub.closed


def test_run_checks_skips_what_depends_on_a_fault(settings):
    def no_settings():
        raise SettingsError("idle_culler", "is required but missing")

    def no_client():
        raise SettingsError("settings file", "/etc/hub_app.json does not exist")

    probes = _probes(settings, FakeHub(), {}, settings=no_settings, client=no_client)
    rows = health.run_checks(HealthOptions(), probes, "/etc/hub_app.json")
    by_check = {row.check: row for row in rows}
    assert by_check["settings"] == Row(
        "settings",
        FAULT,
        "idle_culler: is required but missing",
        "fix the inventory and re-run site.yml, which rewrites /etc/hub_app.json; "
        "`hub-app check-settings /etc/hub_app.json` checks it again",
    )
    assert [by_check[check].state for check in ("hub API", "proxy routes", "idle culler")] == [
        SKIPPED
    ] * 3
    assert by_check["TLS certificate"].state == OFF
    assert not health.healthy(rows)


def test_run_checks_hub_down(settings):
    hub = FakeHub(version=HubConnectionError("Connection refused"))
    files = {settings.idle_culler.state_file: _record(30)}
    rows = health.run_checks(HealthOptions(), _probes(settings, hub, files), "/etc/hub_app.json")
    by_check = {row.check: row for row in rows}
    assert by_check["hub API"].state == FAULT
    assert by_check["proxy routes"] == Row(
        "proxy routes", SKIPPED, "not checked: the hub API is at fault"
    )
    assert hub.closed


def test_run_checks_unreadable_token(settings):
    def no_token():
        raise SettingsError("api_client.token_file", "cannot read /etc/token: Permission denied")

    rows = health.run_checks(
        HealthOptions(), _probes(settings, FakeHub(), {}, client=no_token), "/etc/hub_app.json"
    )
    api = next(row for row in rows if row.check == "hub API")
    assert api.state == FAULT
    assert api.detail.startswith("no API token: api_client.token_file: cannot read")
    assert api.advice.startswith("run as root")


# --- the command --------------------------------------------------------------------


@pytest.fixture
def health_command(monkeypatch, settings_data, write_settings, tmp_path, capsys):
    """``hub-app --settings <valid> health ...`` with a stand-in hub and supervisorctl."""
    hub = FakeHub()
    monkeypatch.setattr(cli, "_client", lambda args: hub)
    status = {"returncode": 0, "stdout": HEALTHY_STATUS}

    def run_supervisorctl(argv, **kwargs):
        assert argv == ["/usr/bin/supervisorctl", "status"]
        return subprocess.CompletedProcess(argv, status["returncode"], status["stdout"], "")

    monkeypatch.setattr(health.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(health.subprocess, "run", run_supervisorctl)
    settings_path = str(write_settings(settings_data))
    state_file = Path(settings_data["idle_culler"]["state_file"])
    record = json.loads(_record(0))
    record["finished"] = datetime.now(UTC).isoformat()
    state_file.write_text(json.dumps(record))
    certificate = tmp_path / "fullchain.pem"
    certificate.write_bytes(_certificate((datetime.now(UTC) - NOW).days + 100))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(
            ["--settings", settings_path, "health", "--certificate", str(certificate),
             "--disk", str(tmp_path), *argv]
        )  # fmt: skip
        out, err = capsys.readouterr()
        return code, out, err

    return run, status, hub


def test_health_command_healthy(health_command, tmp_path):
    run, _, _ = health_command
    code, out, err = run()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["CHECK", "STATE", "DETAIL"]
    checks = [line[: lines[0].index("STATE")].strip() for line in lines[1:-1]]
    assert checks == [
        "program jupyterhub",
        "program jupyterhub-proxy",
        "program jupyterhub-proxy-http",
        "program supervisor-watchdog",
        "settings",
        "hub API",
        "proxy routes",
        "TLS certificate",
        f"disk {tmp_path}",
        "idle culler",
    ]
    assert lines[-1] == "healthy: no fault found"
    assert not [line for line in lines if line.startswith("What to do")]
    # Every row OK: the STATE column lines up.
    column = lines[0].index("STATE")
    assert all(line[column : column + 2] == "OK" for line in lines[1:-1]), out


def test_health_command_fault_says_what_to_do(health_command):
    run, status, _ = health_command
    fatal = "FATAL     Exited too quickly (process log may have details)"
    status.update(
        returncode=3,
        stdout=HEALTHY_STATUS.replace("RUNNING   pid 790, uptime 3 days, 4:05:07", fatal),
    )
    code, out, err = run()
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert (
        "What to do (program jupyterhub-proxy): `supervisorctl start jupyterhub-proxy`; "
        "if it does not stay RUNNING, its log in /var/log/supervisor/ says why"
    ) in lines
    assert lines[-1] == "1 fault(s) found"


def test_health_command_json(health_command):
    run, _, hub = health_command
    hub.answers["get_routes"] = dict([HUB_ROUTE, _route("/user/carol/", user="carol")])
    code, out, _ = run("--json")
    assert code == 1
    report = json.loads(out)
    assert report["healthy"] is False
    routes = next(check for check in report["checks"] if check["check"] == "proxy routes")
    assert routes == {
        "check": "proxy routes",
        "state": "FAULT",
        "detail": "route(s) with no server: /user/carol/",
        "advice": routes["advice"],
    }
    assert routes["advice"].startswith("`hub-app proxy sync`")


@pytest.mark.parametrize(
    "argv", [["--min-free-percent", "0"], ["--min-certificate-days", "-1"], ["--disk"]]
)
def test_health_command_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["health", *argv])
    assert exit_info.value.code == 2
