"""Pytest plugin: run Molecule's testinfra checks over ``podman exec``.

Molecule hands testinfra ``--connection=ansible`` and its inventory. The
podman driver's ``ansible_connection: podman`` is not one testinfra can map to
its own backends, so every ``host.run()`` would start an ``ansible`` process
(about a second each). This plugin reads the same inventory and points
testinfra at its ``podman://`` backend instead: one ``podman exec`` per call.

Load it with ``-p pytest_podman_hosts`` and this directory on PYTHONPATH
(the ``verifier`` section of each scenario's molecule.yml does both).

It also holds a scenario's checks until the machine is quiet when bin/test asks
for it (MOLECULE_VERIFY_WAITS_FOR names a lock file): a scenario that measures
how long users wait through faults deploys while lint and unit tests run, but
checks only after they end.
"""

import fcntl
import os
import sys
import time

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

PODMAN_CONNECTIONS = {"podman", "containers.podman.podman", "podman_pipelined"}


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
