"""A hub's life, checked from outside the containers, step by step in file order.

lifecycle-old runs the hub deployed with the previous pins (molecule.yml). Users
work on it; it is backed up (playbooks/backup.yml) and upgraded to the role's
pins (site.yml); it is backed up again and destroyed. lifecycle-new, a fresh
host, gets the hub back (playbooks/restore.yml) and is then uninstalled
(playbooks/uninstall.yml) and deployed again. After each step, what users made
is checked as they would see it: the same password logs in, the same token
works, the notebook file is there, a browser session from before is still
logged in. Everything is real: restic from Debian, JupyterHub's own upgrade-db,
the project's playbooks run by ansible-playbook against the containers.
Each step prints its time, and the backup its size (pytest runs with -s).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
import yaml
from hub_client import (
    CERTIFICATE,
    PROJECT,
    browser,
    hub_app,
    hub_url,
    log_in,
    recap_changed,
    run_playbook,
    save_certificate,
    server_pid,
    session_page,
    user_token,
)
from uninstall_checks import leftovers, missing_kept

OLD = "lifecycle-old"
NEW = "lifecycle-new"
# Test-only password of every user: its hash is in molecule.yml's inventory.
PASSWORD = "molecule-alice-password"
PREVIOUS_JUPYTERHUB = "5.5.4"
ROLE_DEFAULTS = yaml.safe_load((PROJECT / "roles/jupyterhub/defaults/main.yml").read_text())
# The upgrade: the role's own pins in place of molecule.yml's previous ones.
NEW_PINS = {
    "jupyterhub_version": ROLE_DEFAULTS["jupyterhub_version"],
    "jupyterhub_jupyterlab_version": ROLE_DEFAULTS["jupyterhub_jupyterlab_version"],
}
REPOSITORY = "/srv/backups/restic"
REPOSITORY_ON_TEST_HOST = Path("/var/cache/jupyterhub-bundle-tests/lifecycle-repository/restic")
RESTIC = f"restic -r {REPOSITORY} --password-file /etc/jupyterhub/backup/password"
NOTEBOOK = "lifecycle.ipynb"
NOTEBOOK_CONTENT = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": "print('kept through a whole life')",
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}
COOKIE_SECRET = "/etc/jupyterhub/secrets/cookie_secret"

# What the steps hand each other (they run in file order).
shared: dict = {}


# Two containers, one story: each step names the host it acts on (not
# testinfra's `host` fixture, which would run every step on both).
def old_host():
    return testinfra.get_host(f"podman://{OLD}")


def new_host():
    return testinfra.get_host(f"podman://{NEW}")


def timed(step: str, started: float) -> None:
    seconds = time.monotonic() - started
    shared.setdefault("times", {})[step] = round(seconds, 1)
    print(f"\nlifecycle step '{step}': {seconds:.1f} s")


def restore_inventory() -> str:
    """An inventory file that makes lifecycle-new a hub host (with the scenario's group_vars)."""
    path = Path(shared["ephemeral"]) / "lifecycle-new-hub.yml"
    path.write_text(yaml.safe_dump({"jupyterhub_hosts": {"hosts": {NEW: None}}}))
    return str(path)


def playbook(host, name: str, extra: dict | None = None, *options: str) -> str:
    result = run_playbook(host, name, extra, *options)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result.stdout


def api_version(host, certificate: str) -> str:
    response = browser(certificate).get(hub_url(host, "/hub/api/"), timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response.json()["version"]


def as_alice(host, certificate: str, method: str, path: str, **kwargs):
    return browser(certificate).request(
        method,
        hub_url(host, path),
        headers={"Authorization": f"token {shared['token']}"},
        timeout=60,
        **kwargs,
    )


def check_users_work(host, certificate: str, *, server_running: bool) -> None:
    """What users made is there, as they see it."""
    response = log_in(host, certificate, "alice", PASSWORD)
    assert response.status_code == 302, "alice's password no longer logs her in"
    who = as_alice(host, certificate, "GET", "/hub/api/user")
    assert who.status_code == 200, "alice's API token no longer works"
    assert who.json()["name"] == "alice"
    # The browser session from before the step: same cookie secret, same
    # session in the database. Sent by hand (the host's address may differ).
    page = session_page(host, certificate, shared["session_cookies"])
    assert page.status_code == 200, f"the browser session was logged out ({page.status_code})"
    if server_running:
        status = as_alice(host, certificate, "GET", "/user/alice/api/status")
        assert status.status_code == 200, status.text[:300]
        notebook = as_alice(host, certificate, "GET", f"/user/alice/api/contents/{NOTEBOOK}")
        assert notebook.status_code == 200, notebook.text[:300]
        assert (
            notebook.json()["content"]["cells"][0]["source"]
            == (NOTEBOOK_CONTENT["cells"][0]["source"])
        )
    home_file = host.file(f"/home/alice/{NOTEBOOK}")
    assert home_file.exists, "alice's notebook is gone"
    assert home_file.user == "alice", f"alice's notebook belongs to {home_file.user}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> str:
    """The old hub's certificate (the restore brings the same one to the new host)."""
    return save_certificate(old_host(), tmp_path_factory.mktemp("certificate"))


def test_deployed_with_the_previous_pins(certificate):
    host = old_host()
    shared["ephemeral"] = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
    assert api_version(host, certificate) == PREVIOUS_JUPYTERHUB
    assert NEW_PINS["jupyterhub_version"] != PREVIOUS_JUPYTERHUB
    # The schedule from the inventory.
    assert (
        "jupyterhub-backup run --reason scheduled"
        in host.file("/etc/cron.d/jupyterhub-backup").content_string
    )


def test_users_work_on_the_hub(certificate):
    host = old_host()
    started = time.monotonic()
    response = log_in(host, certificate, "alice", PASSWORD)
    assert response.status_code == 302
    shared["session_cookies"] = "; ".join(
        f"{c.name}={c.value}"
        for c in response.session.cookies  # type: ignore[attr-defined]
    )
    shared["token"] = user_token(host, "alice")
    hub_app(host, "server", "start", "alice", "--wait")
    saved = as_alice(
        host,
        certificate,
        "PUT",
        f"/user/alice/api/contents/{NOTEBOOK}",
        json={"type": "notebook", "content": NOTEBOOK_CONTENT},
    )
    assert saved.status_code in (200, 201), saved.text[:300]
    shared["server_pid"] = server_pid(host, "alice")
    shared["cookie_secret"] = host.check_output(f"sha256sum {COOKIE_SECRET}").split()[0]
    check_users_work(host, certificate, server_running=True)
    timed("users' work", started)


def test_backup():
    host = old_host()
    started = time.monotonic()
    output = playbook(host, "playbooks/backup.yml")
    assert "Snapshot " in output and "Homes: " in output, output[-3000:]
    timed("backup", started)
    size = int(subprocess.check_output(["du", "-sb", str(REPOSITORY_ON_TEST_HOST)]).split()[0])
    shared["backup_bytes"] = size
    print(f"lifecycle backup repository after the first backup: {size / 1048576:.1f} MiB")
    snapshots = json.loads(host.check_output(f"{RESTIC} snapshots --json --tag manual"))
    assert len(snapshots) == 1


def test_upgrade_keeps_everything(certificate):
    host = old_host()
    started = time.monotonic()
    output = playbook(host, "site.yml", NEW_PINS)
    timed("upgrade", started)
    # Backed up before anything was installed, and said so.
    assert "Before the upgrade: the hub's database was copied to" in output, output[-4000:]
    assert "tag pre-upgrade" in output
    assert "Servers kept running: alice" in output
    assert api_version(host, certificate) == NEW_PINS["jupyterhub_version"]
    assert server_pid(host, "alice") == shared["server_pid"], "alice's server was restarted"
    check_users_work(host, certificate, server_running=True)
    # The pre-upgrade snapshot holds the database as the old version left it.
    (snapshot,) = json.loads(host.check_output(f"{RESTIC} snapshots --json --tag pre-upgrade"))
    manifest = json.loads(
        host.check_output(
            f"{RESTIC} dump {snapshot['id']} /var/lib/jupyterhub-backup/manifest.json"
        )
    )
    assert manifest["versions"]["jupyterhub"] == PREVIOUS_JUPYTERHUB
    assert manifest["reason"] == "pre-upgrade"
    host.run_expect(
        [0],
        f"{RESTIC} dump {snapshot['id']} /var/lib/jupyterhub-backup/database/jupyterhub.sqlite"
        " > /tmp/pre-upgrade.sqlite",
    )
    read_users = (
        "import sqlite3; db = sqlite3.connect('/tmp/pre-upgrade.sqlite'); "
        "print(sorted(row[0] for row in db.execute('SELECT name FROM users')))"
    )
    users = host.check_output(f"python3 -c {shlex.quote(read_users)}")
    assert "'alice'" in users
    copies = host.check_output("ls /var/backups/jupyterhub/pre-upgrade")
    assert f"jupyterhub-{PREVIOUS_JUPYTERHUB}" in copies


def test_nightly_backup_after_the_upgrade():
    host = old_host()
    started = time.monotonic()
    host.run_expect([0], "/usr/local/sbin/jupyterhub-backup run --reason scheduled")
    timed("backup after the upgrade", started)
    size = int(subprocess.check_output(["du", "-sb", str(REPOSITORY_ON_TEST_HOST)]).split()[0])
    print(
        f"lifecycle backup repository after three snapshots: {size / 1048576:.1f} MiB "
        f"(first snapshot {shared['backup_bytes'] / 1048576:.1f} MiB)"
    )


def test_restore_onto_a_fresh_host(certificate):
    host = old_host()
    old_uid = host.user("alice").uid
    # The machine is lost.
    subprocess.run(["podman", "rm", "--force", "--time", "5", OLD], check=True)
    fresh = new_host()
    assert not fresh.file("/etc/jupyterhub").exists
    started = time.monotonic()
    output = playbook(
        fresh,
        "playbooks/restore.yml",
        NEW_PINS | {"backup_restore_host": OLD},
        "-i",
        restore_inventory(),
    )
    timed("restore onto a fresh host", started)
    assert "Restored snapshot" in output and f"of {OLD}" in output, output[-4000:]
    assert "Homes restored:" in output
    # The users' uids differ here (prepare.yml): their files were given to them.
    assert fresh.user("alice").uid != old_uid
    assert "Files given to the accounts here" in output
    assert fresh.check_output(f"sha256sum {COOKIE_SECRET}").split()[0] == shared["cookie_secret"]
    # The same certificate is served: clients that pinned it still trust it.
    assert fresh.file(CERTIFICATE).content_string == Path(certificate).read_text()
    assert api_version(fresh, certificate) == NEW_PINS["jupyterhub_version"]
    check_users_work(fresh, certificate, server_running=False)
    # Her server did not come with the machine; she starts it again.
    hub_app(fresh, "server", "start", "alice", "--wait")
    check_users_work(fresh, certificate, server_running=True)


def test_a_restore_over_a_hub_with_users_is_refused(certificate):
    """Without backup_restore_replace, restore.yml stops before any change."""
    fresh = new_host()
    result = run_playbook(
        fresh,
        "playbooks/restore.yml",
        NEW_PINS | {"backup_restore_host": OLD},
        "-i",
        restore_inventory(),
    )
    output = result.stdout + result.stderr  # (the failed task's message is on stderr)
    assert result.returncode != 0, output[-4000:]
    assert re.search(r"already holds [1-9]\d* hub users", output), output[-4000:]
    assert "backup_restore_replace=true" in output
    assert recap_changed(output) == 0
    assert api_version(fresh, certificate) == NEW_PINS["jupyterhub_version"]


def test_uninstall_leaves_a_clean_host():
    fresh = new_host()
    started = time.monotonic()
    playbook(
        fresh, "playbooks/uninstall.yml", {"uninstall_confirm": NEW}, "-i", restore_inventory()
    )
    timed("uninstall", started)
    users = ["hubadmin", "alice", "bob"]
    assert leftovers(fresh, purged=False, accounts=users) == []
    # Kept without uninstall_purge: the database, the accounts and their homes,
    # the backups.
    assert missing_kept(fresh, users) == []
    assert fresh.file(f"/home/alice/{NOTEBOOK}").exists
    assert fresh.file(f"{REPOSITORY}/config").exists
    again = run_playbook(
        fresh, "playbooks/uninstall.yml", {"uninstall_confirm": NEW}, "-i", restore_inventory()
    )
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap_changed(again.stdout) == 0, again.stdout[-3000:]


def test_a_new_deploy_after_the_uninstall_works():
    fresh = new_host()
    started = time.monotonic()
    playbook(fresh, "site.yml", NEW_PINS, "-i", restore_inventory())
    timed("deploy after the uninstall", started)
    certificate = save_certificate(fresh, Path(shared["ephemeral"]))
    response = log_in(fresh, certificate, "alice", PASSWORD)
    assert response.status_code == 302
    assert fresh.file(f"/home/alice/{NOTEBOOK}").exists
    print(f"\nlifecycle times (s): {json.dumps(shared['times'])}")
