"""Pytest plugin: run Molecule's testinfra checks over ``podman exec``.

Molecule hands testinfra ``--connection=ansible`` and its inventory. The
podman driver's ``ansible_connection: podman`` is not one testinfra can map to
its own backends, so every ``host.run()`` would start an ``ansible`` process
(about a second each). This plugin reads the same inventory and points
testinfra at its ``podman://`` backend instead: one ``podman exec`` per call.

Load it with ``-p pytest_podman_hosts`` and this directory on PYTHONPATH
(the ``verifier`` section of each scenario's molecule.yml does both).
"""

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
