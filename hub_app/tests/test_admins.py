"""Admin rights follow the inventory both ways, across hub restarts.

JupyterHub's ``Authenticator.admin_users`` only ever grants: a name taken out of it
stays admin in the hub's database. hub_app lists the admins as the members of
JupyterHub's ``admin`` role instead (:func:`hub_app.settings.hub.admin_role`), which
JupyterHub makes exact at every start. These tests run JupyterHub 5's own start-up
(``JupyterHub.initialize``: database, users, roles; no proxy, no servers) twice on
one database, as two starts of the hub with different settings.
"""

from __future__ import annotations

from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from traitlets.config import Config

from hub_app.settings import apply_settings, parse_settings


async def _start(settings: dict[str, Any]) -> dict[str, bool]:
    """Initialise a hub from the settings; return each stored user's admin flag."""
    c = Config()
    apply_settings(c, parse_settings(settings))
    hub = JupyterHub(config=c)
    await hub.initialize([])
    try:
        admin_role = orm.Role.find(hub.db, "admin")
        admins = {user.name for user in admin_role.users}
        flags = {user.name: user.admin for user in hub.db.query(orm.User)}
        # The admin flag and the admin role agree: both are what the hub checks.
        assert admins == {name for name, admin in flags.items() if admin}
        return flags
    finally:
        hub.db.close()


@pytest.fixture
def hub_settings(settings_data, monkeypatch, tmp_path):
    # JupyterHub writes beside its working directory; keep that in the test's folder.
    monkeypatch.chdir(tmp_path)
    settings_data["admin_users"] = ["hubadmin", "alice"]
    return settings_data


async def test_an_admin_taken_out_of_admin_users_is_admin_no_more(hub_settings):
    assert await _start(hub_settings) == {"alice": True, "hubadmin": True}
    hub_settings["admin_users"] = ["hubadmin"]
    assert await _start(hub_settings) == {"alice": False, "hubadmin": True}


async def test_a_new_admin_is_admin_at_the_next_start(hub_settings):
    hub_settings["admin_users"] = ["hubadmin"]
    assert await _start(hub_settings) == {"alice": False, "hubadmin": True}
    hub_settings["admin_users"] = ["hubadmin", "alice"]
    assert await _start(hub_settings) == {"alice": True, "hubadmin": True}


async def test_no_admins_at_all(hub_settings):
    await _start(hub_settings)
    hub_settings["admin_users"] = []
    assert await _start(hub_settings) == {"alice": False, "hubadmin": False}
