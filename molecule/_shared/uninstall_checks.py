"""What playbooks/uninstall.yml must leave on a hub host, for the scenarios' tests.

``leftovers(host)`` lists every artefact of the bundle still on testinfra's
``host`` after an uninstall, with the default paths, so a test can
``assert leftovers(host) == []``; ``missing_kept(host, accounts)`` lists what an
uninstall without ``uninstall_purge`` must have kept and did not. Each entry is
one readable line (``path /opt/jupyterhub``, ``port 443 listening``...), so a
failing assert says what is left. Imported by the scenarios' tests (the
verifier's PYTHONPATH holds molecule/_shared).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# The bundle's supervisor programs (proxy, plain-HTTP responder, hub, the
# docker spawner's podman API, the supervisor role's watchdog).
PROGRAMS = (
    "jupyterhub",
    "jupyterhub-proxy",
    "jupyterhub-proxy-http",
    "jupyterhub-podman-api",
    "supervisor-watchdog",
)

# Gone after every uninstall (each role's defaults).
PATHS = (
    # jupyterhub
    "/opt/jupyterhub",
    "/etc/jupyterhub",
    "/etc/logrotate.d/jupyterhub-servers",
    "/var/log/jupyterhub",
    "/root/jupyterhub-initial-admin.txt",
    "/run/jupyterhub",
    # proxy
    "/opt/configurable-http-proxy",
    "/etc/configurable-http-proxy",
    # kernels
    "/opt/jupyter-kernels",
    "/usr/local/share/jupyter",
    # tls
    "/var/lib/jupyterhub-acme",
    "/etc/letsencrypt/renewal-hooks/deploy/jupyterhub",
    # supervisor
    "/usr/local/sbin/supervisor-guard",
    "/usr/local/sbin/supervisor-watchdog",
    "/usr/local/sbin/supervisor-sandbox",
    "/var/lib/supervisor-sandbox",
    "/etc/supervisor/on-start.d",
    "/var/lib/supervisor-guard",
    *(f"/etc/supervisor/conf.d/{program}.conf" for program in PROGRAMS),
    # backup
    "/usr/local/sbin/jupyterhub-backup",
    "/etc/cron.d/jupyterhub-backup",
    "/etc/logrotate.d/jupyterhub-backup",
    "/var/lib/jupyterhub-backup",
    "/var/cache/jupyterhub-backup",
)
GLOBS = (
    "/usr/local/share/ca-certificates/jupyterhub-*.crt",
    *(f"/var/log/supervisor/{program}.log*" for program in PROGRAMS),
    *(f"/var/log/supervisor/{program}-std*---*" for program in PROGRAMS),
)

# Gone only with uninstall_purge (kept otherwise, see missing_kept).
PURGED_PATHS = (
    "/var/lib/jupyterhub",
    "/var/backups/jupyterhub",
    "/var/backups/jupyterhub-homes",
    "/etc/letsencrypt/renewal/jupyterhub.conf",
    "/etc/letsencrypt/live/jupyterhub",
    "/etc/letsencrypt/archive/jupyterhub",
)

# proxy_https_port, proxy_http_port, proxy_api_port, the hub's port.
PORTS = (443, 80, 8001, 8081)

# A process is the bundle's when one of its arguments is one of these
# programs, or lies in one of these folders.
PROCESS_NAMES = ("configurable-http-proxy", "jupyterhub", "jupyterhub-singleuser")
PROCESS_PREFIXES = ("/opt/jupyterhub/", "/opt/configurable-http-proxy/", "/opt/jupyter-kernels/")

# Run on the host with python3 (Ansible's hosts have it): which of the paths
# and globs in argv[1] exist, every process's arguments, and the TCP ports
# listened on. /proc only, no ps or ss (minimal images lack them).
_PROBE = """
import glob, json, os, sys
wanted = json.loads(sys.argv[1])
found = [p for p in wanted["paths"] if os.path.lexists(p)]
for pattern in wanted["globs"]:
    found.extend(sorted(glob.glob(pattern)))
processes = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) in (os.getpid(), os.getppid()):
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            arguments = f.read().decode(errors="replace").split("\\0")[:-1]
    except OSError:
        continue
    if arguments:
        processes.append([int(pid), arguments])
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    except OSError:
        pass
print(json.dumps({"found": found, "processes": processes, "ports": sorted(ports)}))
"""


def _probe(host, paths: Iterable[str], globs: Iterable[str] = ()) -> dict:
    query = json.dumps({"paths": list(paths), "globs": list(globs)})
    return json.loads(host.check_output("python3 -c %s %s", _PROBE, query))


def _is_bundle_process(arguments: list[str]) -> bool:
    return any(
        argument.rsplit("/", 1)[-1] in PROCESS_NAMES or argument.startswith(PROCESS_PREFIXES)
        for argument in arguments
    )


def _has_command(host, command: str) -> bool:
    return host.run("command -v %s", command).rc == 0


def leftovers(host, purged: bool = False, accounts: Iterable[str] = ()) -> list[str]:
    """Every artefact of the bundle still on the host, one readable line each.

    Args:
        host: testinfra's host, a hub host after playbooks/uninstall.yml.
        purged: whether the uninstall ran with ``uninstall_purge=true``: then the
            hub's state, the backups on the host, the Let's Encrypt certificate,
            the accounts and their homes must be gone too.
        accounts: the names of ``users_accounts`` (checked with ``purged`` only).

    Returns:
        The leftovers; empty when the host is clean.
    """
    accounts = list(accounts)
    paths = [*PATHS, *(PURGED_PATHS if purged else ())]
    if purged:
        paths.extend(f"/home/{name}" for name in accounts)
    probe = _probe(host, paths, GLOBS)
    found = [f"path {path}" for path in probe["found"]]
    found += [f"port {port} listening" for port in PORTS if port in probe["ports"]]
    found += [
        f"process {pid}: {' '.join(arguments)}"
        for pid, arguments in probe["processes"]
        if _is_bundle_process(arguments)
    ]

    if _has_command(host, "supervisorctl"):
        # Exit status 3 when a program is not running, 4 when supervisord is not.
        status = host.run("supervisorctl status").stdout
        found += [
            f"supervisor program {line.strip()}"
            for line in status.splitlines()
            if line.split() and line.split()[0] in PROGRAMS
        ]
    diversion = host.run("dpkg-divert --list /etc/init.d/supervisor").stdout.strip()
    if diversion:
        found.append(f"dpkg diversion: {diversion}")
    if host.file("/run/systemd/system").is_directory:
        units = host.run(
            "systemctl list-units --all --plain --no-legend --full %s",
            "jupyter-*-singleuser.service",
        ).stdout
        found += [f"systemd unit {line.split()[0]}" for line in units.splitlines() if line.strip()]
    if _has_command(host, "podman"):
        containers = host.run(
            "podman ps --all --format %s --filter %s", "{{.Names}}", "name=^jupyter-"
        ).stdout.split()
        found += [f"container {name}" for name in containers]

    # jupyterhub: the account of a hub that did not run as root (jupyterhub_hub_user).
    users = ["jupyterhub-proxy", "jupyterhub", *(accounts if purged else ())]
    groups = [
        "jupyterhub-proxy",
        "jupyterhub",
        *(["jupyterhub-admins", "jupyterhub-users"] if purged else []),
    ]
    found += [f"account {name}" for name in users if host.run("getent passwd %s", name).rc == 0]
    found += [f"group {name}" for name in groups if host.run("getent group %s", name).rc == 0]
    return found


def missing_kept(host, accounts: Iterable[str]) -> list[str]:
    """What an uninstall without ``uninstall_purge`` must keep and did not.

    Args:
        host: testinfra's host, a hub host after playbooks/uninstall.yml.
        accounts: the names of ``users_accounts``.

    Returns:
        One line per missing account, home or the hub's database; empty when all
        is kept.
    """
    accounts = list(accounts)
    database = "/var/lib/jupyterhub/jupyterhub.sqlite"
    probe = _probe(host, [database, *(f"/home/{name}" for name in accounts)])
    missing = [] if database in probe["found"] else [f"the hub's database {database}"]
    missing += [f"home /home/{name}" for name in accounts if f"/home/{name}" not in probe["found"]]
    missing += [
        f"account {name}" for name in accounts if host.run("getent passwd %s", name).rc != 0
    ]
    return missing
