"""Run commands in a running podman container through nsenter.

``podman exec`` costs about 0.18 s of wall time per command here (the podman
client starts, reads its database, asks conmon and runc to set up an exec
session); Ansible's podman connection also runs ``podman mount`` once per task.
A scenario runs thousands of commands, so that cost was most of a converge
that changes nothing. nsenter enters the namespaces of the container's init
(mount with its root, UTS, IPC, network, PID, cgroup) in about 4 ms: the same
filesystem, processes, network and hostname as ``podman exec``, with the
container's configured environment.

What differs: the command keeps the host root's capabilities and no seccomp
filter (as an SSH session's root on a real host has every capability). Like
``podman exec``, it first joins the cgroups of the container's init: a command
left in the host's cgroups is outside the container's systemd's tree, and a
nested podman's runc asks that systemd to move its processes into a scope,
which then fails ("Couldn't move process ... to requested cgroup"; seen with
the docker spawner's image builds, cgroup v1, December 2026). Daemons that
Ansible starts on the systemd images are started by the container's systemd,
in its cgroups; on the sysvinit image they are children of the command. Either
way they are reparented to the container's init and die with its PID
namespace when the container stops.

The container's init PID changes when the container restarts, so the lookup
(one ``podman inspect``) is cached per container name with the process's start
time, and made again when that process is gone.

Used by connection_plugins/podman_nsenter.py (Ansible) and pytest_podman_hosts
(testinfra).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

CACHE_DIRECTORY = Path(tempfile.gettempdir()) / "podman-nsenter-pids"


class ContainerNotRunning(RuntimeError):
    """The container does not exist or has no running init process."""


def _start_time(pid: int) -> str | None:
    """Return a process's start time (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its ")".
    return stat.rpartition(")")[2].split()[19]


def _inspect(container: str, podman: str) -> dict:
    """Ask podman for the container's init PID and configured environment."""
    template = "{{json .State.Pid}} {{json .Config.Env}}"
    completed = subprocess.run(  # noqa: S603 -- podman, with the inventory's container name
        [podman, "inspect", "--type", "container", "--format", template, container],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ContainerNotRunning(f"podman inspect {container} failed: {completed.stderr.strip()}")
    pid_text, _, env_text = completed.stdout.strip().partition(" ")
    pid = json.loads(pid_text)
    started = _start_time(pid) if pid else None
    if not started:
        raise ContainerNotRunning(f"container {container} is not running")
    return {"pid": pid, "started": started, "env": json.loads(env_text) or []}


def container_process(container: str, podman: str = "podman") -> dict:
    """Return ``{"pid", "started", "env"}`` for the container's init.

    Args:
        container: the container's name or ID.
        podman: the podman executable, for the lookup.

    Raises:
        ContainerNotRunning: the container is gone or stopped.
    """
    cache = CACHE_DIRECTORY / container.replace("/", "_")
    try:
        known = json.loads(cache.read_text())
        if _start_time(known["pid"]) == known["started"]:
            return known
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _inspect(container, podman)
    CACHE_DIRECTORY.mkdir(mode=0o700, exist_ok=True)
    # Atomic replace: scenarios and forks look containers up side by side.
    handle, temporary = tempfile.mkstemp(dir=CACHE_DIRECTORY)
    with os.fdopen(handle, "w") as stream:
        json.dump(found, stream)
    os.replace(temporary, cache)
    return found


# A shell that writes its own PID into each cgroup.procs it is given (up to
# "--"), then becomes the rest of its arguments: the cgroups are joined before
# nsenter, and everything it starts, is. A write that fails (a hierarchy this
# host does not let root move into) leaves that one as it was.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ 2>/dev/null >"$1"; shift; done; shift; exec "$@"'


def _cgroup_procs_files(pid: int) -> list[str]:
    """The host's cgroup.procs file of each cgroup PID belongs to (cgroup v1 and v2)."""
    root = Path("/sys/fs/cgroup")
    files = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return files
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers:  # cgroup v2: the unified hierarchy
            hierarchy = root / "unified" if (root / "unified").is_dir() else root
        else:
            hierarchy = root / controllers.removeprefix("name=")
        procs = hierarchy / path.lstrip("/") / "cgroup.procs"
        if procs.is_file():
            files.append(str(procs))
    return files


def command(
    container: str, argv: list[str], user: str | None = None, podman: str = "podman"
) -> tuple[list[str], dict]:
    """Return the host command line and environment that run ``argv`` inside.

    Args:
        container: the container's name or ID.
        argv: the command to run in the container.
        user: run as this account of the container (root when None).
        podman: the podman executable, for the lookup.
    """
    process = container_process(container, podman)
    join = ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *_cgroup_procs_files(process["pid"]), "--"]
    prefix = [*join, "nsenter", f"--target={process['pid']}", "--all", "--root", "--wd"]
    if user and user != "root":
        prefix += ["runuser", "-u", user, "--"]
    environment = dict(entry.split("=", 1) for entry in process["env"] if "=" in entry)
    environment.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    environment.setdefault("HOME", "/root")
    return prefix + argv, environment
