"""``hub-app health``: whether the hub is up, and if not, what to do about it.

Read-only: every check looks, none repairs. Each gives a :class:`Row` (the
check, its state, what was seen and, for a fault, what to do):

- each supervisor program, from ``supervisorctl status`` (all of the bundle's
  programs start with supervisord, so any that is not RUNNING is a fault);
- the settings file, which says where the hub is;
- the hub's API: it answers, and it takes the CLI's token;
- the proxy's routes against the running servers, both ways;
- the days left on the TLS certificate;
- free space on the filesystems given;
- the idle culler's last run, from the record :mod:`hub_app.idle_culler` writes.

The checks take what they look at as arguments (``supervisorctl``'s output, a
client, a certificate's bytes, a disk usage function, a run record, the time),
and :func:`run_checks` takes the probes that fetch them, so the tests need no hub.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from .api import HubAPIError, HubConnectionError, routes_without_server, servers_without_route
from .settings import Settings, SettingsError
from .settings.services import IdleCullerSettings

__all__ = [
    "FAULT",
    "OFF",
    "OK",
    "SKIPPED",
    "HealthOptions",
    "Probes",
    "Row",
    "check_certificate",
    "check_disk",
    "check_hub_api",
    "check_idle_culler",
    "check_programs",
    "check_routes",
    "check_settings",
    "compare_routes",
    "healthy",
    "parse_supervisor_status",
    "run_checks",
]

OK = "OK"
FAULT = "FAULT"
# Switched off on purpose (the idle culler, a certificate on a plain-HTTP hub).
OFF = "OFF"
# Not looked at, because what it needs is at fault in another row.
SKIPPED = "SKIPPED"

# supervisord's process states (supervisor.states.ProcessStates).
SUPERVISOR_STATES = frozenset(
    {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}
)
SUPERVISORCTL_TIMEOUT = 30.0
# A run record older than this many check intervals (plus a minute of slack for
# a slow run) means the culler has stopped running.
CULLER_MISSED_RUNS = 3
CULLER_SLACK_SECONDS = 60

_STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)\b\s*(?P<description>.*)$")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """One line of the health table.

    Attributes:
        check: What was checked (``program jupyterhub``, ``disk /home``).
        state: :data:`OK`, :data:`FAULT`, :data:`OFF` or :data:`SKIPPED`.
        detail: What was seen.
        advice: What to do; set on every fault.
    """

    check: str
    state: str
    detail: str
    advice: str = ""


@dataclass(frozen=True)
class Program:
    """One line of ``supervisorctl status``."""

    name: str
    state: str
    description: str


@dataclass(frozen=True)
class HealthOptions:
    """What to check beyond the settings file, and the thresholds.

    Attributes:
        certificate: The PEM certificate the proxy serves; None to skip.
        disks: Paths whose filesystem's free space is checked.
        min_free_percent: A filesystem with less free space than this is a fault.
        min_free_mb: Likewise, in MiB; either threshold falling short is a fault.
        min_certificate_days: A certificate with fewer days left is a fault.
    """

    certificate: str | None = None
    disks: Sequence[str] = ()
    min_free_percent: float = 5.0
    min_free_mb: float = 1024.0
    min_certificate_days: int = 14


class HubReader(Protocol):
    """What the checks ask of :class:`hub_app.api.HubClient`."""

    api_url: str

    def version(self) -> str: ...
    def whoami(self) -> dict[str, Any]: ...
    def get_routes(self) -> dict[str, dict[str, Any]]: ...
    def iter_users(self) -> Iterable[dict[str, Any]]: ...
    def close(self) -> None: ...


def supervisor_status() -> tuple[int | None, str]:
    """Run ``supervisorctl status``.

    Returns:
        Its exit status (None if it did not finish) and its output, stderr included.
    """
    supervisorctl = shutil.which("supervisorctl")
    if supervisorctl is None:
        return None, "supervisorctl is not installed"
    try:
        result = subprocess.run(  # noqa: S603 -- fixed arguments, supervisorctl found on PATH
            [supervisorctl, "status"],
            capture_output=True,
            text=True,
            timeout=SUPERVISORCTL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"supervisorctl status did not answer within {SUPERVISORCTL_TIMEOUT:g} s"
    return result.returncode, result.stdout + result.stderr


def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Probes:
    """Where the checks get what they look at; the tests replace them.

    Attributes:
        settings: Loads the settings file (raises SettingsError).
        client: Makes a hub API client (raises SettingsError for its token file).
        supervisor_status: Runs ``supervisorctl status``.
        disk_usage: ``shutil.disk_usage``.
        read_bytes: Reads a file.
        now: The current time, timezone-aware.
    """

    settings: Callable[[], Settings]
    client: Callable[[], HubReader]
    supervisor_status: Callable[[], tuple[int | None, str]] = supervisor_status
    disk_usage: Callable[[str], Any] = shutil.disk_usage
    read_bytes: Callable[[str], bytes] = _read_bytes
    now: Callable[[], datetime] = _now


# --- formatting ---------------------------------------------------------------------


def _ago(seconds: float) -> str:
    """A duration in the largest whole unit: ``45 s``, ``12 min``, ``3 h``, ``2 days``."""
    seconds = max(0, int(seconds))
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no output)"


# --- programs -----------------------------------------------------------------------


def parse_supervisor_status(text: str) -> list[Program]:
    """The programs in ``supervisorctl status`` output; lines of anything else are left out.

    Args:
        text: The output, such as ``jupyterhub   RUNNING   pid 12, uptime 1 day, 2:03:04``.

    Returns:
        Each program with its state and supervisord's description of it.
    """
    programs = []
    for line in text.splitlines():
        match = _STATUS_LINE.match(line.strip())
        if match and match["state"] in SUPERVISOR_STATES:
            programs.append(Program(match["name"], match["state"], match["description"].strip()))
    return programs


def check_programs(returncode: int | None, output: str) -> list[Row]:
    """A row per supervisor program, or one fault when supervisord does not answer.

    Args:
        returncode: ``supervisorctl status``'s exit status; None if it did not finish.
        output: What it printed.

    Returns:
        The rows.
    """
    programs = parse_supervisor_status(output)
    if not programs:
        if returncode == 0:
            return [
                Row(
                    "supervisord",
                    FAULT,
                    "runs no program",
                    "deploy the hub: run site.yml (bin/deploy on this host)",
                )
            ]
        return [
            Row(
                "supervisord",
                FAULT,
                f"does not answer: {_first_line(output)}",
                "start supervisord, which starts every program: `service supervisor start`; "
                "its own log is /var/log/supervisor/supervisord.log",
            )
        ]
    rows = []
    for program in programs:
        detail = f"{program.state} {program.description}".strip()
        if program.state == "RUNNING":
            rows.append(Row(f"program {program.name}", OK, detail))
        else:
            rows.append(
                Row(
                    f"program {program.name}",
                    FAULT,
                    detail,
                    f"`supervisorctl start {program.name}`; if it does not stay RUNNING, "
                    f"its log in /var/log/supervisor/ says why",
                )
            )
    return rows


# --- settings and the hub's API -----------------------------------------------------


def check_settings(load: Callable[[], Settings], path: str) -> tuple[Row, Settings | None]:
    """Load the settings file.

    Returns:
        The row, and the settings (None when they are unusable).
    """
    try:
        settings = load()
    except SettingsError as e:
        return (
            Row(
                "settings",
                FAULT,
                str(e),
                f"fix the inventory and re-run site.yml, which rewrites {path}; "
                f"`hub-app check-settings {path}` checks it again",
            ),
            None,
        )
    return Row("settings", OK, path), settings


def check_hub_api(client: HubReader) -> Row:
    """The hub answers (``GET /``) and takes the token (``GET /user``).

    Args:
        client: A client for the hub's API.

    Returns:
        The row.
    """
    down_advice = (
        "see the rows of supervisord and the jupyterhub program; if that is RUNNING, its "
        "log (/var/log/supervisor/jupyterhub.log) says why the hub does not answer"
    )
    try:
        version = client.version()
    except (HubConnectionError, HubAPIError) as e:
        return Row("hub API", FAULT, f"does not answer: {e}", down_advice)
    try:
        me = client.whoami()
    except HubConnectionError as e:
        return Row("hub API", FAULT, f"answers, then fails: {e}", down_advice)
    except HubAPIError as e:
        if e.status in (401, 403):
            return Row(
                "hub API",
                FAULT,
                f"JupyterHub {version} refuses the API token: {e.status} {e.reason}",
                "`supervisorctl restart jupyterhub` makes the hub read its token again "
                "(running servers stay up); if that does not help, re-run site.yml",
            )
        return Row("hub API", FAULT, f"JupyterHub {version} fails: {e}", down_advice)
    who = f"{me.get('kind', 'user')} {me.get('name', '?')}"
    return Row("hub API", OK, f"JupyterHub {version} at {client.api_url}, token of {who} works")


def check_routes(client: HubReader) -> Row:
    """Every running server has a route, and every user route a server.

    Args:
        client: A client for the hub's API (which reads the proxy's routes for us).

    Returns:
        The row.
    """
    try:
        routes = client.get_routes()
    except (HubConnectionError, HubAPIError) as e:
        return Row(
            "proxy routes",
            FAULT,
            f"the hub cannot read the proxy's routes: {e}",
            "see the jupyterhub-proxy program's row: `supervisorctl start jupyterhub-proxy` "
            "(the hub puts every route back as soon as the proxy answers); its log is "
            "/var/log/supervisor/jupyterhub-proxy.log",
        )
    try:
        users = list(client.iter_users())
    except (HubConnectionError, HubAPIError) as e:
        return Row("proxy routes", FAULT, f"the hub cannot list the users: {e}", "run again")
    return compare_routes(routes, users)


def compare_routes(routes: dict[str, dict[str, Any]], users: Sequence[dict[str, Any]]) -> Row:
    """The routes row from the proxy's routing table and the hub's user models."""
    unrouted = servers_without_route(routes, users)
    stale = routes_without_server(routes, users)
    running = sum(
        1
        for user in users
        for server in (user.get("servers") or {}).values()
        if server.get("ready")
    )
    if not unrouted and not stale:
        user_routes = sum(1 for route in routes.values() if "user" in (route.get("data") or {}))
        return Row(
            "proxy routes",
            OK,
            f"{running} running server(s), each routed; {user_routes} user route(s), "
            f"{len(routes)} in all",
        )
    problems = []
    if unrouted:
        problems.append("running server(s) without a route: " + ", ".join(unrouted))
    if stale:
        problems.append("route(s) with no server: " + ", ".join(stale))
    return Row(
        "proxy routes",
        FAULT,
        "; ".join(problems),
        "`hub-app proxy sync`: the hub adds the missing routes and deletes the stale ones "
        "now (it also does so by itself every 5 minutes)",
    )


# --- certificate --------------------------------------------------------------------


def _common_name(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else name.rfc4514_string()


def check_certificate(
    path: str, pem: bytes | None, now: datetime, min_days: int, error: str = ""
) -> Row:
    """Days left on the served certificate (the first in a PEM chain).

    Args:
        path: Where the certificate is, for the row.
        pem: Its content; None if it could not be read (``error`` says why).
        now: The current time, timezone-aware.
        min_days: Fewer days left than this is a fault.
        error: Why the file could not be read.

    Returns:
        The row.
    """
    check = "TLS certificate"
    if pem is None:
        return Row(
            check,
            FAULT,
            f"cannot read {path}: {error}",
            "re-run site.yml: the tls role puts the certificate there",
        )
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        return Row(
            check,
            FAULT,
            f"{path} holds no PEM certificate: {e}",
            "re-run site.yml: the tls role puts the certificate there",
        )
    not_after = certificate.not_valid_after_utc
    seconds_left = (not_after - now).total_seconds()
    days_left = math.floor(seconds_left / 86400)
    self_signed = certificate.issuer == certificate.subject
    issuer = "self-signed" if self_signed else f"issued by {_common_name(certificate.issuer)}"
    until = not_after.strftime("%Y-%m-%d %H:%M UTC")
    if seconds_left <= 0:
        detail = f"{path} expired {_ago(-seconds_left)} ago ({until}), {issuer}"
    else:
        detail = f"{path}: {days_left} days left (until {until}), {issuer}"
    if days_left >= min_days:
        return Row(check, OK, detail)
    if self_signed:
        advice = (
            "re-run site.yml: the tls role makes a new self-signed certificate once fewer "
            "than tls_self_signed_renew_days (30) are left"
        )
    else:
        advice = (
            "`certbot renew` (its deploy hook restarts the proxy, keeping every route); "
            "/var/log/letsencrypt/letsencrypt.log says why the automatic renewal failed"
        )
    return Row(check, FAULT, f"{detail}; fewer than {min_days} days left", advice)


# --- disk ---------------------------------------------------------------------------


def check_disk(
    path: str,
    disk_usage: Callable[[str], Any],
    min_free_percent: float,
    min_free_mb: float,
) -> Row:
    """Free space on the filesystem of ``path``.

    Args:
        path: A directory.
        disk_usage: ``shutil.disk_usage`` or a stand-in.
        min_free_percent: Less free space than this share is a fault.
        min_free_mb: Less free space than this many MiB is a fault.

    Returns:
        The row.
    """
    check = f"disk {path}"
    try:
        usage = disk_usage(path)
    except OSError as e:
        return Row(check, FAULT, f"cannot look: {e.strerror or e}", f"check that {path} exists")
    percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    detail = f"{_size(usage.free)} free of {_size(usage.total)} ({percent:.0f}%)"
    if percent >= min_free_percent and usage.free >= min_free_mb * _MIB:
        return Row(check, OK, detail)
    return Row(
        check,
        FAULT,
        f"{detail}; under {min_free_percent:g}% or {_size(min_free_mb * _MIB)}",
        f"free space on the filesystem of {path}; what takes it: "
        f"`du -xh --max-depth=2 {path} | sort -h | tail`",
    )


# --- idle culler --------------------------------------------------------------------


def check_idle_culler(
    culler: IdleCullerSettings, record: bytes | None, now: datetime, error: str = ""
) -> Row:
    """The culler's last run, from the record it writes after each one.

    Args:
        culler: The settings file's ``idle_culler`` section.
        record: The run record's content; None if there is none (``error`` says why).
        now: The current time, timezone-aware.
        error: Why the record could not be read, if it exists.

    Returns:
        The row: a fault when the culler is on and has no record, its last run
        failed, or it has not finished a run for three check intervals.
    """
    check = "idle culler"
    if not culler.enabled:
        return Row(check, OFF, "off (idle_culler.enabled is false)")
    log_advice = (
        f"read its log, {culler.log_file}, and the hub's; the hub runs the culler: "
        "`supervisorctl restart jupyterhub` starts it again (running servers stay up)"
    )
    if record is None and error:
        return Row(check, FAULT, f"cannot read {culler.state_file}: {error}", log_advice)
    if record is None:
        detail = f"no run record at {culler.state_file}; it has never finished a run"
        return Row(check, FAULT, detail, log_advice)
    try:
        data = json.loads(record)
        every = int(data.get("every") or culler.check_interval)
        finished = data.get("finished")
        finished_at = datetime.fromisoformat(finished) if finished else None
        ok = data["ok"]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return Row(check, FAULT, f"unreadable run record {culler.state_file}: {e!r}", log_advice)
    if ok is not True or finished_at is None:
        started = data.get("started") or "?"
        return Row(
            check,
            FAULT,
            f"the last run (started {started}) failed: {data.get('error') or 'no reason given'}",
            log_advice,
        )
    if finished_at.tzinfo is None:
        finished_at = finished_at.replace(tzinfo=UTC)
    age = (now - finished_at).total_seconds()
    limit = CULLER_MISSED_RUNS * every + CULLER_SLACK_SECONDS
    culled = data.get("culled")
    stopped = f", stopped {len(culled)}" if isinstance(culled, list) else ""
    detail = f"last run finished {_ago(age)} ago{stopped} (runs every {_ago(every)})"
    if age > limit:
        return Row(check, FAULT, f"{detail}; none for over {_ago(limit)}", log_advice)
    return Row(check, OK, detail)


# --- all of them --------------------------------------------------------------------


def run_checks(options: HealthOptions, probes: Probes, settings_path: str) -> list[Row]:
    """Run every check.

    Args:
        options: What to check beyond the settings file, and the thresholds.
        probes: Where the checks get what they look at.
        settings_path: The settings file, for the rows.

    Returns:
        The rows, in the table's order.
    """
    now = probes.now()
    rows = check_programs(*probes.supervisor_status())

    settings_row, settings = check_settings(probes.settings, settings_path)
    rows.append(settings_row)

    rows += _hub_rows(probes, settings)

    if options.certificate is None:
        rows.append(Row("TLS certificate", OFF, "not checked (no --certificate)"))
    else:
        try:
            pem, error = probes.read_bytes(options.certificate), ""
        except OSError as e:
            pem, error = None, e.strerror or str(e)
        rows.append(
            check_certificate(options.certificate, pem, now, options.min_certificate_days, error)
        )

    for path in options.disks:
        rows.append(
            check_disk(path, probes.disk_usage, options.min_free_percent, options.min_free_mb)
        )

    if settings is None:
        rows.append(Row("idle culler", SKIPPED, "not checked: the settings are at fault"))
    else:
        culler = settings.idle_culler
        record, error = None, ""
        if culler.enabled:
            try:
                record = probes.read_bytes(culler.state_file)
            except FileNotFoundError:
                pass
            except OSError as e:
                error = e.strerror or str(e)
        rows.append(check_idle_culler(culler, record, now, error))
    return rows


def _hub_rows(probes: Probes, settings: Settings | None) -> list[Row]:
    """The hub API's row, then the routes' (skipped when the API is at fault)."""
    skipped_routes = Row("proxy routes", SKIPPED, "not checked: the hub API is at fault")
    try:
        client = probes.client()
    except SettingsError as e:
        if settings is None:
            return [
                Row(check, SKIPPED, "not checked: the settings are at fault")
                for check in ("hub API", "proxy routes")
            ]
        api_row = Row(
            "hub API",
            FAULT,
            f"no API token: {e}",
            "run as root (the token file is root's only); if it is missing, re-run site.yml",
        )
        return [api_row, skipped_routes]
    with contextlib.closing(client):
        api_row = check_hub_api(client)
        if api_row.state != OK:
            return [api_row, skipped_routes]
        return [api_row, check_routes(client)]


def healthy(rows: Iterable[Row]) -> bool:
    """True when no row is a fault."""
    return all(row.state != FAULT for row in rows)
