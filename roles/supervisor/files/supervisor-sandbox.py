#!/usr/bin/python3
"""Start a supervisor program in a mount namespace of its own.

    supervisor-sandbox NAME -- COMMAND [ARG]...
    supervisor-sandbox --probe

What systemd's ``ProtectSystem=full`` and ``PrivateTmp=yes`` give a unit, given
to one supervisord program (and whatever it starts), on any host where root may
make a mount namespace, with or without systemd as PID 1:

* ``/usr``, ``/boot``, ``/efi`` and ``/etc`` are read-only, each mount under
  them too (in a container /etc/hosts and /etc/resolv.conf are mounts of their
  own), keeping their other flags (nosuid, nodev, noexec).
* ``/tmp`` and ``/var/tmp`` are the program's own: ``BASE/NAME/tmp`` and
  ``BASE/NAME/var-tmp`` (mode 1777) under a root-only ``BASE``
  (/var/lib/supervisor-sandbox). They outlive a restart of the program, unlike
  systemd's: the hub's users' servers keep running across a hub restart and
  keep their files in them. They are emptied at the first start after a
  reboot, as /tmp is.

Mounts made on the host later (an NFS home, say) still reach the program: its
namespace is a slave of the host's. Nothing it mounts reaches the host.

supervisord starts this as root; COMMAND then drops its privileges itself
(setpriv) or keeps them (a root hub). It replaces itself with COMMAND, so
supervisord's signals reach COMMAND directly and no process of it stays root.

``--probe`` makes such a namespace and checks that /etc is read-only in it
(exit 0), or says why this host cannot (exit 1): the supervisor role asks once
per run and renders its programs with or without this launcher accordingly.
Should the namespace fail later all the same (the host changed since), the
command starts without it, and the program's log says so.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

# ProtectSystem=full's directories.
READ_ONLY_DIRECTORIES = ("/usr", "/boot", "/efi", "/etc")
# Root-only (0700), in a directory only root writes: not under /var/tmp, where
# any account could make it (or a symlink by its name) first.
BASE = Path("/var/lib/supervisor-sandbox")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CLONE_NEWNS = 0x00020000
CAP_SYS_ADMIN = 21
# supervisord's pid file (Debian's supervisord.conf).
SUPERVISORD_PID_FILES = (Path("/run/supervisord.pid"), Path("/var/run/supervisord.pid"))
# Per-mount flags a read-only remount keeps (the kernel resets those not given).
KEPT_MOUNT_FLAGS = ("nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime")


class SandboxError(Exception):
    """This host cannot sandbox the program; the message says why."""


def run(*argv: str) -> None:
    # mount with arguments this file builds, found on PATH as supervisord's.
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        reason = result.stderr.strip() or f"exit {result.returncode}"
        raise SandboxError(f"{' '.join(argv)}: {reason}")


def leave_host_mount_namespace() -> None:
    """From here on, this process and its children have their own mount table."""
    host_namespace = os.readlink("/proc/self/ns/mnt")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise SandboxError(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    if os.readlink("/proc/self/ns/mnt") == host_namespace:
        raise SandboxError("still in the host's mount namespace after unshare")
    # Host mounts keep propagating in; nothing propagates out.
    run("mount", "--make-rslave", "/")


def mounts_under(directory: str, mountinfo: str) -> list[tuple[str, list[str]]]:
    """Mount points at or under DIRECTORY with their per-mount options, parents first.

    MOUNTINFO: the text of /proc/self/mountinfo.
    """
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        # mountinfo escapes spaces and the like as octal (\040).
        mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
        if mount_point == directory or mount_point.startswith(directory + "/"):
            found.append((mount_point, fields[5].split(",")))
    # A path listed twice (a mount over a mount) is remounted once: the
    # remount applies to the one on top, the only one visible.
    unique = {mount_point: options for mount_point, options in found}
    return sorted(unique.items(), key=lambda item: item[0].count("/"))


def make_read_only(directory: str) -> None:
    if not os.path.isdir(directory) or os.path.islink(directory):
        return
    run("mount", "--rbind", directory, directory)
    for mount_point, options in mounts_under(directory, Path("/proc/self/mountinfo").read_text()):
        kept = [flag for flag in options if flag in KEPT_MOUNT_FLAGS]
        run("mount", "-o", ",".join(["remount", "bind", "ro", *kept]), mount_point)


def private_directory(path: Path) -> Path:
    path.mkdir(mode=0o1777, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask, and the sticky bit with it. 1777
    # is what /tmp is: every account may write, none may remove another's.
    os.chmod(path, 0o1777)  # noqa: S103
    os.chown(path, 0, 0)
    return path


def program_directories(name: str) -> tuple[Path, Path]:
    """BASE/NAME/{tmp,var-tmp}, emptied at the first start after a reboot."""
    BASE.mkdir(mode=0o700, exist_ok=True)
    found = BASE.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != 0:
        raise SandboxError(f"{BASE} is not a directory of root's")
    os.chmod(BASE, 0o700)
    home = BASE / name
    boot_marker = home / "boot_id"
    boot_id = BOOT_ID.read_text().strip()
    if home.is_dir() and (not boot_marker.is_file() or boot_marker.read_text().strip() != boot_id):
        shutil.rmtree(home)
    home.mkdir(mode=0o700, exist_ok=True)
    boot_marker.write_text(boot_id + "\n")
    return private_directory(home / "tmp"), private_directory(home / "var-tmp")


def sandbox(name: str) -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "must start as root (supervisord's user=root); the command drops privileges itself"
        )
    if not name or "/" in name or name.startswith("."):
        raise SandboxError(f"not a program name: {name!r}")
    tmp, var_tmp = program_directories(name)
    leave_host_mount_namespace()
    for directory in READ_ONLY_DIRECTORIES:
        make_read_only(directory)
    run("mount", "--bind", str(tmp), "/tmp")  # noqa: S108 -- the mount point
    run("mount", "--bind", str(var_tmp), "/var/tmp")  # noqa: S108 -- the mount point


def supervisord_can_unshare() -> None:
    """Raise unless init and the running supervisord both hold CAP_SYS_ADMIN.

    Init: after a reboot it starts supervisord, which has at most its
    capabilities. The running supervisord: it starts the programs now. The
    probe itself may run with more than either (Ansible entering a container
    with nsenter has the host root's capabilities, and a supervisord it
    started has them too until the container restarts).
    """
    pids = {"1": "init"}
    for pid_file in SUPERVISORD_PID_FILES:
        running = pid_file.read_text().strip() if pid_file.is_file() else ""
        if running and Path(f"/proc/{running}").is_dir():
            pids[running] = "supervisord"
            break
    for pid, name in pids.items():
        status = Path(f"/proc/{pid}/status").read_text()
        effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.MULTILINE).group(1), 16)
        if not effective >> CAP_SYS_ADMIN & 1:
            raise SandboxError(f"{name} (pid {pid}) lacks CAP_SYS_ADMIN")


def probe() -> int:
    try:
        supervisord_can_unshare()
    except (SandboxError, OSError) as error:
        print(f"supervisor-sandbox: {error}", file=sys.stderr)
        return 1
    pid = os.fork()
    if pid == 0:
        # In a child: the probe's namespace goes with it.
        try:
            sandbox("probe")
            try:
                Path("/etc/.supervisor-sandbox-probe").write_text("")
            except OSError:
                os._exit(0)
            Path("/etc/.supervisor-sandbox-probe").unlink()
            print("supervisor-sandbox: /etc stayed writable in the sandbox", file=sys.stderr)
        except (SandboxError, OSError) as error:
            print(f"supervisor-sandbox: {error}", file=sys.stderr)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(BASE / "probe", ignore_errors=True)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    if argv == ["--probe"]:
        return probe()
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    name, command = argv[0], argv[2:]
    try:
        sandbox(name)
    except (SandboxError, OSError) as error:
        # The host no longer allows it (the play probed otherwise: a host that
        # lost CAP_SYS_ADMIN, say, after a reboot). The program starts anyway,
        # as systemd starts a unit whose sandboxing the kernel refuses: a hub
        # that stays down loses its users more than this hardening protects
        # them. Loudly, in the program's log; the next deploy probes again.
        print(
            f"supervisor-sandbox: {name}: NOT SANDBOXED, starting it without: {error}",
            file=sys.stderr,
            flush=True,
        )
    # The program's own command line from its supervisord program file.
    os.execvp(command[0], command)  # noqa: S606
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
