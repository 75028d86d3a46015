"""Logins against a real OpenLDAP server, checked from outside the containers.

Requests go from the test host to the hub container's address, through the
real proxy, to the hub, whose LDAPAuthenticator binds to slapd in the
ldap-server container over StartTLS (certificate verified). The directory is
files/directory.ldif: alice is in the allowed group, carol is not.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from hub_client import browser, podman_address, save_certificate

testinfra_hosts = ["podman://ldap-hub"]


@pytest.fixture(autouse=True)
def _only_on_the_hub(host):
    # The verifier hands every platform of the scenario to each test; these
    # checks are about the hub (the server container is only its counterpart).
    if host.backend.name != HUB_CONTAINER:
        pytest.skip("a check of the hub container")


HUB_CONTAINER = "ldap-hub"
HUB_NAME = "hub.ldap.test"
# Test-only passwords, as in files/directory.ldif.
PASSWORDS = {"alice": "alice-ldap-password", "carol": "carol-ldap-password"}


def hub_address() -> str:
    return podman_address(HUB_CONTAINER)


@pytest.fixture
def client(host, tmp_path) -> requests.Session:
    """A session that trusts only the hub's self-signed certificate, for HUB_NAME."""
    return browser(save_certificate(host, tmp_path), name=HUB_NAME)


def log_in(client: requests.Session, username: str, password: str) -> requests.Response:
    url = f"https://{hub_address()}/hub/login"
    form = client.get(url, timeout=30)
    assert form.status_code == 200, form.text[:300]
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', form.text).group(1)
    return client.post(
        url,
        data={"username": username, "password": password, "_xsrf": xsrf},
        timeout=60,
        allow_redirects=False,
    )


def test_the_settings_select_ldap_over_starttls(host):
    settings = json.loads(host.file("/etc/jupyterhub/hub_app.json").content_string)
    assert settings["authenticator"]["kind"] == "ldap"
    assert settings["authenticator"]["tls_strategy"] == "before_bind"
    assert settings["allowed_users"] == []
    assert host.file("/etc/jupyterhub/hub_app.json").mode == 0o600


def test_a_member_of_the_allowed_group_logs_in(host, client):
    response = log_in(client, "alice", PASSWORDS["alice"])
    assert response.status_code == 302, response.text[:500]
    home = client.get(f"https://{hub_address()}/hub/home", timeout=30)
    assert home.status_code == 200
    assert "alice" in home.text


def test_a_wrong_password_is_refused(client):
    response = log_in(client, "alice", "not-the-password")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text


def test_a_user_outside_the_group_is_refused(host, client):
    # carol's directory password is right and she has a local account: only
    # the group rule keeps her out.
    assert host.user("carol").exists
    response = log_in(client, "carol", PASSWORDS["carol"])
    assert response.status_code == 403
    log = host.file("/var/log/supervisor/jupyterhub.log").content_string
    assert "carol" in log


def test_an_unknown_user_is_refused(client):
    assert log_in(client, "mallory", "anything").status_code == 403
