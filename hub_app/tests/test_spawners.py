"""The per-server log file that lets servers outlive hub restarts; where docker servers listen."""

import asyncio
import getpass
import os
import pwd
import stat
import sys
import time
from pathlib import Path

import pytest
from dockerspawner import DockerSpawner
from traitlets.config import Config

from hub_app.spawners import (
    HubDockerSpawner,
    LoggingLocalProcessSpawner,
    LoggingSudoSpawner,
    _is_server_process,
    open_server_log,
)

ME = getpass.getuser()


def test_the_log_is_created_private_to_the_user_s_group(tmp_path):
    log_dir = tmp_path / "servers"
    with open_server_log(log_dir, ME) as log:
        log.write(b"first line\n")
    info = (log_dir / f"{ME}.log").stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o755
    assert info.st_gid == pwd.getpwnam(ME).pw_gid
    if os.geteuid() == 0:
        assert info.st_uid == 0


def test_the_log_is_appended_across_starts(tmp_path):
    for line in (b"one\n", b"two\n"):
        with open_server_log(tmp_path, ME) as log:
            log.write(line)
    assert (tmp_path / f"{ME}.log").read_bytes() == b"one\ntwo\n"


def test_an_existing_log_gets_its_mode_back(tmp_path):
    path = tmp_path / f"{ME}.log"
    path.write_bytes(b"old\n")
    path.chmod(0o666)
    open_server_log(tmp_path, ME).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_an_unknown_account_is_refused(tmp_path):
    with pytest.raises(KeyError):
        open_server_log(tmp_path, "no-such-user-here")


@pytest.mark.parametrize("spawner_class", [LoggingLocalProcessSpawner, LoggingSudoSpawner])
def test_log_dir_must_be_absolute(spawner_class):
    with pytest.raises(ValueError, match=rf"{spawner_class.__name__}\.log_dir"):
        spawner_class(log_dir="relative/logs")


def test_the_sudo_process_logs_to_the_server_s_file_at_the_configured_niceness(tmp_path):
    """What the mediator hands the server: the log file as standard error, and the niceness.

    The process here stands in for ``sudo ... sudospawner`` (sudo keeps both);
    the molecule scenario `default` runs the real one.
    """
    import subprocess

    spawner = LoggingSudoSpawner(nice=6, log_dir=str(tmp_path))
    before = os.nice(0)
    spawner._server_log = open_server_log(tmp_path, ME)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys; print(os.nice(0)); print('to the log', file=sys.stderr)",
            ],
            preexec_fn=spawner.make_preexec_fn(),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        spawner._server_log.close()
        spawner._server_log = None
    assert int(result.stdout) == before + 6
    assert result.stderr == ""
    assert (tmp_path / f"{ME}.log").read_text() == "to the log\n"
    # A signal's mediator (no start under way) keeps the pipe its errors are read from.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; print('error', file=sys.stderr)"],
        preexec_fn=spawner.make_preexec_fn(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == "error\n"
    assert os.nice(0) == before


def test_a_hub_that_is_not_root_refuses_a_repository_before_any_sudo():
    spawner = LoggingSudoSpawner()
    spawner.git_url = "https://github.com/jupyterhub/jupyterhub"
    with pytest.raises(Exception, match="cannot clone repositories") as raised:
        asyncio.run(spawner._start_logging())
    assert raised.value.status_code == 400


def test_on_the_host_s_network_docker_servers_listen_on_loopback_only():
    spawner = HubDockerSpawner()
    # Listening on every interface of the hub host would bypass the proxy.
    assert spawner.ip == "127.0.0.1"
    # Docker refuses to publish ports on the host's network.
    assert spawner.use_internal_ip is True


def test_on_a_bridge_docker_servers_listen_as_dockerspawner_has_them():
    # On a bridge the server must answer on the container's own address.
    config = Config({"DockerSpawner": {"network_name": "podman"}})
    ours, theirs = HubDockerSpawner(config=config), DockerSpawner(config=config)
    assert ours.ip == theirs.ip != "127.0.0.1"
    assert ours.use_internal_ip == theirs.use_internal_ip


def test_a_reused_pid_is_not_taken_for_the_server():
    """After a reboot the recorded pid may be another process: poll must not keep it."""
    me = pwd.getpwuid(os.getuid()).pw_name
    this_program = [sys.executable]
    assert _is_server_process(os.getpid(), me, this_program)
    assert not _is_server_process(
        os.getpid(), me, ["/opt/jupyterhub/venv/bin/jupyterhub-singleuser"]
    )
    other = "nobody" if me != "nobody" else "root"
    assert not _is_server_process(os.getpid(), other, this_program)


def test_a_server_that_exited_but_is_not_reaped_is_still_the_server():
    """Its command line is empty until the hub reaps it: no "another process" verdict.

    (Taking it for another process cleared the pid in the middle of a stop, and
    LocalProcessSpawner then sent SIGTERM to pid 0: the hub's own process group.)
    """
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert _is_server_process(child.pid, ME, ["/opt/jupyterhub/venv/bin/jupyterhub-singleuser"])
    finally:
        child.wait()


def test_a_spawner_without_a_pid_signals_nobody():
    """os.kill(0, sig) would signal the hub's own process group."""
    spawner = LoggingLocalProcessSpawner()
    spawner.pid = 0
    # Signal 0 only checks: unguarded, os.kill(0, 0) succeeds and says "alive".
    assert asyncio.run(spawner._signal(0)) is False
    spawner.pid = os.getpid()
    assert asyncio.run(spawner._signal(0)) is True


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming a user (the preexec function) needs root")
def test_local_servers_start_at_the_configured_niceness():
    """The hub keeps the CPU first while a class starts: servers run niced."""
    import subprocess

    spawner = LoggingLocalProcessSpawner(nice=7)
    before = os.nice(0)
    niceness = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        preexec_fn=spawner.make_preexec_fn(ME),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(niceness) == before + 7
    assert os.nice(0) == before  # the hub's own priority is untouched


def test_systemd_units_carry_the_niceness():
    from types import SimpleNamespace

    from hub_app.spawners import HubSystemdSpawner

    # systemdspawner names the unit after the user when it is made.
    user = SimpleNamespace(name=ME, id=1)
    assert HubSystemdSpawner(nice=7, user=user).unit_extra_properties == {"Nice": "7"}
    assert HubSystemdSpawner(nice=0, user=user).unit_extra_properties == {}
