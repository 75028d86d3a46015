"""A user's whole visit in a real browser: hashed-password login to logout.

Playwright drives Debian's Chromium on the test host. Chromium reaches the hub
by its name (mapped to the container's address with --host-resolver-rules)
and accepts exactly the hub's self-signed certificate, pinned by public key
(--ignore-certificate-errors-spki-list); no other certificate error is
ignored. Screenshots of every step are kept in molecule/default/artifacts/
<platform>/ (git-ignored); the path is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chromium import (
    hub_page,
    put_notebook,
    run_first_cell,
    start_jupyterlab,
    submit_login,
)
from playwright.sync_api import Page

HUB_NAME = "hub.molecule.test"
HUB_URL = f"https://{HUB_NAME}"
HUB_CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"
HUB_APP = "/opt/jupyterhub/venv/bin/hub-app"
# Test-only password of alice and bob: its hash is in molecule.yml's inventory.
PASSWORD = "molecule-alice-password"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def browser_page(host):
    """A page in a fresh Chromium that trusts only this hub's certificate."""
    with hub_page(host, HUB_NAME, HUB_CERTIFICATE, ARTIFACTS) as (page, shot):
        yield page, shot


def log_in(page: Page, username: str) -> None:
    submit_login(page, HUB_URL, username, PASSWORD)


def test_a_user_logs_in_runs_a_cell_in_jupyterlab_and_logs_out(host, browser_page):
    page, shot = browser_page
    put_notebook(host, "/home/alice/browser-test.ipynb", "alice")
    page.goto(f"{HUB_URL}/hub/login")
    shot("1-login-page")
    log_in(page, "alice")
    page.wait_for_url(f"{HUB_URL}/**")
    start_jupyterlab(page, HUB_URL, "alice")
    shot("2-server-started")
    run_first_cell(
        page,
        f"{HUB_URL}/user/alice/lab/tree/browser-test.ipynb",
        "6 * 7",
        "42",
        screenshot=str(ARTIFACTS / host.backend.name / "3-cell-not-run.png"),
    )
    shot("3-cell-result")
    page.goto(f"{HUB_URL}/hub/logout")
    page.wait_for_url(f"{HUB_URL}/hub/login**")
    shot("4-logged-out")
    assert page.locator("input[name=username]").is_visible()
    # Leave the server as the other checks expect to find it: stopped.
    host.run_expect([0], f"{HUB_APP} server stop alice --wait")


def test_an_outsider_gets_the_refusal(browser_page):
    page, shot = browser_page
    # bob has an account and a password hash, but is not in the allow list.
    log_in(page, "bob")
    page.wait_for_load_state()
    shot("5-outsider-refused")
    assert "/hub/login" in page.url
    assert page.get_by_text("Invalid username or password").is_visible()
