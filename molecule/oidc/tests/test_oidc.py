"""The OIDC login flow in a real browser, against a real OpenID Connect provider.

Playwright drives Debian's Chromium on the test host. Chromium reaches the hub
and the provider by their names (mapped to the containers' addresses with
--host-resolver-rules) and accepts exactly their two certificates, pinned by
public key (--ignore-certificate-errors-spki-list): nothing else is trusted
and no certificate error is ignored wholesale. Screenshots of every step are
kept in molecule/oidc/artifacts/ (git-ignored); the path is printed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from chromium import chromium, new_page, put_notebook, run_first_cell, start_jupyterlab
from playwright.sync_api import Browser, Page

testinfra_hosts = ["podman://oidc-hub"]


@pytest.fixture(autouse=True)
def _only_on_the_hub(host):
    # The verifier hands every platform of the scenario to each test; these
    # checks are about the hub (the server container is only its counterpart).
    if host.backend.name != "oidc-hub":
        pytest.skip("a check of the hub container")


HUB_NAME = "hub.oidc.test"
IDP_NAME = "idp.oidc.test"
HUB_URL = f"https://{HUB_NAME}"
HUB_CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"
FILES = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "oidc"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Test-only, from molecule.yml.
CLIENT_SECRET = "molecule-oidc-client-secret"


@pytest.fixture(scope="module")
def browser(host) -> Browser:
    if host.backend.name != "oidc-hub":  # module-scoped: set up before _only_on_the_hub
        pytest.skip("a check of the hub container")
    addresses = json.loads((FILES / "addresses.json").read_text())
    hub_pem = host.file(HUB_CERTIFICATE).content_string.encode()
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\n[oidc] screenshots: {ARTIFACTS}", file=sys.__stdout__, flush=True)
    with chromium(
        {HUB_NAME: addresses["oidc-hub"], IDP_NAME: addresses["oidc-provider"]},
        [hub_pem, (FILES / "server.pem").read_bytes()],
    ) as browser:
        yield browser


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in_at_the_provider(page: Page, username: str, prefix: str) -> None:
    """From the hub's login page through the provider's login and consent pages."""
    page.goto(f"{HUB_URL}/hub/login")
    shot(page, f"{prefix}-1-hub-login")
    page.get_by_text("Sign in with Molecule IdP").click()
    page.wait_for_url(f"https://{IDP_NAME}:8443/interaction/**")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", "unused-by-the-dev-login-form")
    shot(page, f"{prefix}-2-provider-login")
    page.click("button[type=submit]")
    # The provider asks the user to authorize the hub (consent) once.
    page.wait_for_selector("button[type=submit]")
    shot(page, f"{prefix}-3-provider-consent")
    page.click("button[type=submit]")


def test_oauth_client_secret_stays_in_its_root_only_file(host):
    settings_file = host.file("/etc/jupyterhub/hub_app.json")
    settings = json.loads(settings_file.content_string)
    secret_file = host.file(settings["authenticator"]["client_secret_file"])
    assert (secret_file.user, secret_file.mode) == ("root", 0o600)
    assert secret_file.content_string.strip() == CLIENT_SECRET
    assert CLIENT_SECRET not in settings_file.content_string
    assert CLIENT_SECRET not in host.check_output("ps -eo args")
    assert CLIENT_SECRET not in host.file("/var/log/supervisor/jupyterhub.log").content_string
    # The endpoints came from the issuer's discovery document.
    assert settings["authenticator"]["token_url"].startswith(f"https://{IDP_NAME}:8443/")


def test_a_group_member_logs_in_runs_a_cell_and_logs_out(host, browser):
    put_notebook(host, "/home/alice/browser-test.ipynb", "alice")
    page = new_page(browser)
    sign_in_at_the_provider(page, "alice", "alice")
    page.wait_for_url(f"{HUB_URL}/**")
    start_jupyterlab(page, HUB_URL, "alice")
    shot(page, "alice-4-server-started")
    run_first_cell(
        page,
        f"{HUB_URL}/user/alice/lab/tree/browser-test.ipynb",
        "6 * 7",
        "42",
        screenshot=str(ARTIFACTS / "alice-5-cell-not-run.png"),
    )
    shot(page, "alice-5-cell-result")
    page.goto(f"{HUB_URL}/hub/logout")
    page.wait_for_url(f"{HUB_URL}/hub/login**")
    shot(page, "alice-6-logged-out")
    assert page.get_by_text("Sign in with Molecule IdP").is_visible()
    page.context.close()


def test_a_user_outside_the_allowed_groups_is_refused(browser):
    page = new_page(browser)
    refused = []
    page.on(
        "response",
        lambda response: (
            refused.append(response.status) if "/hub/oauth_callback" in response.url else None
        ),
    )
    sign_in_at_the_provider(page, "carol", "carol")
    page.wait_for_url(f"{HUB_URL}/hub/oauth_callback**")
    page.wait_for_load_state()
    shot(page, "carol-4-refused")
    assert refused == [403]
    assert "403" in page.content()
    page.context.close()
