"""Pytest plugin: run Molecule's testinfra checks in the containers directly.

Molecule hands testinfra ``--connection=ansible`` and its inventory. The
scenarios' ``ansible_connection: podman_nsenter`` is not one testinfra can map
to its own backends, so every ``host.run()`` would start an ``ansible`` process
(about a second each). This plugin reads the same inventory and points
testinfra at ``podman://`` hosts instead, and runs those through nsenter, as
the scenarios' Ansible does (container_namespaces.py: about 4 ms a command where
``podman exec`` takes 180 ms). ``podman://NAME`` keeps its meaning, a running
podman container, for every test, ``testinfra.get_host`` included.

Load it with ``-p pytest_podman_hosts`` and this directory on PYTHONPATH
(the ``verifier`` section of each scenario's molecule.yml does both).

It also holds a scenario's checks until the machine is quiet when bin/test asks
for it (MOLECULE_VERIFY_WAITS_FOR names a lock file): a scenario that measures
how long users wait through faults deploys while lint and unit tests run, but
checks only after they end.
"""

import fcntl
import os
import subprocess
import sys
import time
from typing import Any

import container_namespaces
import pytest
import testinfra.backend
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.utils.ansible_runner import AnsibleRunner

PODMAN_CONNECTIONS = {"podman", "containers.podman.podman", "podman_nsenter"}


class NsenterBackend(BaseBackend):
    """testinfra's ``podman://`` hosts, entered with nsenter."""

    NAME = "podman"

    def __init__(self, name: str, *args: Any, **kwargs: Any):
        self.name, self.user = self.parse_containerspec(name)
        super().__init__(self.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        """Run a shell command in the container, as testinfra's podman backend does."""
        shell_command = self.get_command(command, *args)
        try:
            argv, environment = container_namespaces.command(
                self.name, ["/bin/sh", "-c", shell_command], self.user
            )
        except container_namespaces.ContainerNotRunning as error:
            return self.result(125, self.encode(shell_command), b"", str(error).encode())
        completed = subprocess.run(  # noqa: S603 -- nsenter, then the test's command
            argv, env=environment, stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        return self.result(
            completed.returncode, self.encode(shell_command), completed.stdout, completed.stderr
        )


testinfra.backend.BACKENDS["podman"] = f"{__name__}.NsenterBackend"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Replace ``--connection=ansible`` by one ``podman://`` URL per host.

    Args:
        config: the pytest configuration; its testinfra options are edited.
    """
    option = config.option
    inventory = getattr(option, "ansible_inventory", None)
    if getattr(option, "connection", None) != "ansible" or not inventory:
        return
    runner = AnsibleRunner(inventory)
    hosts = runner.get_hosts(getattr(option, "hosts", None) or "all")
    urls = []
    for name in hosts:
        variables = runner.get_variables(name)
        if variables.get("ansible_connection") not in PODMAN_CONNECTIONS:
            return  # not a podman scenario: leave testinfra's defaults alone
        urls.append(f"podman://{variables.get('ansible_host', name)}")
    option.connection = None
    option.hosts = ",".join(urls)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Wait for the lock bin/test holds while other work shares the machine.

    Args:
        session: the pytest session (unused: the lock is a file descriptor kept
            open, shared, until pytest exits).
    """
    lock = os.environ.get("MOLECULE_VERIFY_WAITS_FOR")
    if not lock:
        return
    started = time.monotonic()
    descriptor = os.open(lock, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    print(
        f"pytest_podman_hosts: waited {time.monotonic() - started:.0f} s for {lock} "
        "(lint and unit tests) before checking",
        file=sys.stderr,
    )
