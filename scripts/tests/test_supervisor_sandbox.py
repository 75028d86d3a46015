"""Tests of the supervisor role's sandbox launcher (roles/supervisor/files/supervisor-sandbox.py).

The launcher runs for real on the test host, as supervisord would start it
(root, a command after ``--``): the namespace, the read-only mounts and the
private /tmp are the kernel's, nothing is mocked. On a host where root may not
make a mount namespace (an unprivileged container) those tests are skipped; the
molecule scenarios then show the other side (the play runs programs without).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/supervisor/files/supervisor-sandbox.py"
_loader = importlib.machinery.SourceFileLoader("supervisor_sandbox", str(SCRIPT))
sandbox = importlib.util.module_from_spec(
    importlib.util.spec_from_loader("supervisor_sandbox", _loader)
)
_loader.exec_module(sandbox)


def launch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *argv], capture_output=True, text=True, check=False
    )


def host_can_sandbox() -> bool:
    return os.geteuid() == 0 and launch("--probe").returncode == 0


needs_namespaces = pytest.mark.skipif(
    not host_can_sandbox(),
    reason="root may not make a mount namespace here (supervisor-sandbox --probe)",
)


@pytest.fixture
def program():
    """A program name of this test's own, and its private directories removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    shutil.rmtree(sandbox.BASE / name, ignore_errors=True)


@needs_namespaces
def test_a_program_gets_read_only_system_directories_and_its_own_tmp(program):
    marker = Path(f"/tmp/{program}-host")  # noqa: S108 -- the host's /tmp under test
    marker.touch()
    try:
        ran = launch(
            program,
            "--",
            "sh",
            "-c",
            f"touch /etc/{program} /usr/{program}; test -e {marker}; echo host-tmp=$?;"
            f" echo written > /tmp/kept; echo written > /var/tmp/kept",
        )
    finally:
        marker.unlink()
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count("Read-only file system") == 2, ran.stderr
    assert not Path(f"/etc/{program}").exists()
    assert "host-tmp=1" in ran.stdout
    private = sandbox.BASE / program
    assert (private / "tmp" / "kept").read_text() == "written\n"
    assert (private / "var-tmp" / "kept").read_text() == "written\n"
    assert (private / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert sandbox.BASE.stat().st_mode & 0o777 == 0o700


@needs_namespaces
def test_the_host_keeps_its_mounts(program):
    before = Path("/proc/self/mountinfo").read_text()
    assert launch(program, "--", "true").returncode == 0
    assert Path("/proc/self/mountinfo").read_text() == before
    probe_file = Path(f"/etc/.{program}")
    probe_file.touch()
    probe_file.unlink()


@needs_namespaces
def test_the_private_tmp_outlives_a_restart_and_not_a_reboot(program):
    assert launch(program, "--", "sh", "-c", "echo 1 > /tmp/kept").returncode == 0
    # A restart (the hub's servers keep running and keep their files).
    assert launch(program, "--", "cat", "/tmp/kept").stdout == "1\n"  # noqa: S108
    # The first start after a reboot: another boot id.
    (sandbox.BASE / program / "boot_id").write_text("an earlier boot\n")
    again = launch(program, "--", "ls", "-A", "/tmp")  # noqa: S108
    assert again.returncode == 0 and again.stdout == "", again


@needs_namespaces
def test_the_command_replaces_the_launcher(program):
    """supervisord's signals reach the program itself: same pid, no launcher left."""
    launcher = subprocess.Popen(
        [sys.executable, "-I", str(SCRIPT), program, "--", "sh", "-c", "echo $$"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = launcher.communicate(timeout=30)
    assert launcher.returncode == 0
    assert int(out) == launcher.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a directory to another account")
def test_a_base_directory_that_is_not_root_s_is_refused(tmp_path, monkeypatch):
    """Made (or replaced by a symlink) by another account first: nothing is made in it."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    for base in (theirs, link):
        monkeypatch.setattr(sandbox, "BASE", base)
        with pytest.raises(sandbox.SandboxError, match="not a directory of root's"):
            sandbox.program_directories("jupyterhub")
    assert list(theirs.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "theirs"]


def test_a_program_the_host_cannot_sandbox_starts_without_and_says_so():
    """A bad name: the command still runs, and stderr says why it is not sandboxed."""
    for name in ("../etc", ".hidden", ""):
        ran = launch(name, "--", "sh", "-c", "echo ran")
        assert ran.returncode == 0 and ran.stdout == "ran\n", ran
        assert "NOT SANDBOXED" in ran.stderr and "not a program name" in ran.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the launcher as another account")
def test_a_launcher_not_started_as_root_starts_the_program_without():
    # The checkout may sit in a folder only root reads (CI's clone does): the
    # other account runs a copy of the launcher, with the system's Python as
    # on a host.
    folder = Path(tempfile.mkdtemp(prefix="supervisor-sandbox-test-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        copy = folder / "supervisor-sandbox"
        shutil.copyfile(SCRIPT, copy)
        copy.chmod(0o755)
        as_nobody = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-I",
                str(copy),
                "jupyterhub",
                "--",
                "sh",
                "-c",
                "echo ran",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        shutil.rmtree(folder)
    assert as_nobody.returncode == 0 and as_nobody.stdout == "ran\n", as_nobody
    assert "NOT SANDBOXED" in as_nobody.stderr and "must start as root" in as_nobody.stderr


def test_without_a_command_it_says_how_to_call_it():
    ran = launch("jupyterhub")
    assert ran.returncode == 2
    assert "supervisor-sandbox NAME -- COMMAND" in ran.stderr


def test_every_mount_under_a_directory_is_found_once_parents_first():
    mountinfo = "\n".join(
        [
            "22 1 0:21 / / rw,relatime - overlay overlay rw",
            "30 22 0:5 /etc/hosts /etc/hosts rw,nosuid,nodev,relatime - tmpfs tmpfs rw",
            "31 22 0:5 /etc /etc rw,relatime - ext4 /dev/vda rw",
            "32 31 0:5 /x /etc/my\\040dir rw,noexec - tmpfs tmpfs rw",
            "33 31 0:5 /etc/hosts /etc/hosts rw,nodev - tmpfs tmpfs rw",
            "34 22 0:6 / /etcetera rw - tmpfs tmpfs rw",
        ]
    )
    assert sandbox.mounts_under("/etc", mountinfo) == [
        ("/etc", ["rw", "relatime"]),
        # The mount on top (listed last) is the one a remount reaches.
        ("/etc/hosts", ["rw", "nodev"]),
        ("/etc/my dir", ["rw", "noexec"]),
    ]
