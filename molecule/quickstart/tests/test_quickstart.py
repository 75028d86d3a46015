"""The README's first command on a fresh host: what its operator sees and can do.

converge.yml ran ``./bin/deploy`` twice on the host (the second time as
Molecule's idempotence step); /root/bin-deploy.log holds the last run's output.
"""

from __future__ import annotations

import re

import pytest
from hub_client import (
    CERTIFICATE,
    INITIAL_ADMIN_CREDENTIALS,
    container_address,
    hub_app,
    initial_admin_password,
    log_in,
    recap_changed,
    run_code,
    save_certificate,
    user_token,
)

DEPLOY_LOG = "/root/bin-deploy.log"
INITIAL_ADMIN = "hubadmin"


def deploy_in_check_mode(host, arguments: str) -> str:
    """Run ``./bin/deploy ARGUMENTS`` (check mode) on the host; it must pass and
    find nothing to change. Returns its output."""
    run = host.run(f"cd /root/jupyterhub-bundle && ANSIBLE_NOCOLOR=1 ./bin/deploy {arguments}")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert recap_changed(run.stdout) == 0, run.stdout[run.stdout.rindex("PLAY RECAP") :]
    return run.stdout


@pytest.fixture
def deploy_output(host) -> str:
    return host.file(DEPLOY_LOG).content_string


@pytest.fixture
def certificate(host, tmp_path) -> str:
    return save_certificate(host, tmp_path)


def test_bin_deploy_runs_mitogens_strategy(deploy_output):
    assert "Running site.yml with the mitogen_linear strategy" in deploy_output


def test_the_second_run_changed_nothing(deploy_output):
    recap = deploy_output[deploy_output.rindex("PLAY RECAP") :]
    assert re.search(r"failed=0", recap), recap
    assert recap_changed(deploy_output) == 0, recap


def test_the_deploy_says_where_the_hub_is_and_how_to_log_in(deploy_output):
    text = " ".join(deploy_output.split())
    assert "JupyterHub is up at https://localhost/" in text
    assert f"Log in as '{INITIAL_ADMIN}'; its password is in {INITIAL_ADMIN_CREDENTIALS}" in text


def test_only_root_reads_the_initial_password(host):
    credentials = host.file(INITIAL_ADMIN_CREDENTIALS)
    assert credentials.user == "root"
    assert credentials.mode == 0o600


def test_the_certificate_names_localhost_and_the_hosts_address(host):
    text = host.check_output(f"openssl x509 -in {CERTIFICATE} -noout -ext subjectAltName")
    assert "DNS:localhost" in text
    assert f"IP Address:{container_address(host)}" in text


def test_the_initial_admin_logs_in_starts_a_server_and_runs_code(host, certificate):
    # From another machine, by the host's address, which the certificate names.
    address = container_address(host)
    response = log_in(host, certificate, INITIAL_ADMIN, initial_admin_password(host), name=address)
    assert response.status_code == 302
    # Logged in: on to the hub (its spawn page, for a user with no server yet).
    assert "/hub/" in response.headers["Location"], response.headers["Location"]

    started = hub_app(host, "server", "start", INITIAL_ADMIN, "--wait", "--timeout", "180")
    assert started.endswith("ready")
    token = user_token(host, INITIAL_ADMIN)
    result = run_code(host, certificate, INITIAL_ADMIN, token, "6 * 7", name=address)
    assert result == "42"


def test_check_mode_finds_nothing_to_change(host):
    # The README's way to see what a run would change, through the same strategy.
    deploy_in_check_mode(host, "--check --diff")


def test_another_inventory_runs_ansibles_own_strategy(host):
    # With -i, bin/deploy keeps Ansible's own strategy (its hosts may lack
    # python3-apt, which Mitogen's needs): the same inventory, named, in check mode.
    output = deploy_in_check_mode(host, "-i inventories/local/hosts.yml --check")
    assert "Running site.yml with the linear strategy" in output
