"""HashedPasswordAuthenticator, driven the way the hub's login handler drives it."""

from __future__ import annotations

import pytest
from traitlets.config import Config

import hub_app.auth
from hub_app.auth import HashedPasswordAuthenticator

from .conftest import PASSWORDS


@pytest.fixture
def authenticator(password_hashes):
    c = Config()
    c.HashedPasswordAuthenticator.password_hashes = {
        "alice": password_hashes["alice"],
        "hubadmin": password_hashes["hubadmin"],
        # bob has a hash but is not allowed: only allowed_users decides who logs in.
        "bob": password_hashes["bob"],
    }
    c.Authenticator.allowed_users = {"alice", "hubadmin"}
    c.Authenticator.admin_users = {"hubadmin"}
    return HashedPasswordAuthenticator(config=c)


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        pytest.param("alice", PASSWORDS["alice"], ("alice", False), id="right"),
        pytest.param("alice", "wrong", None, id="wrong-password"),
        pytest.param("alice", PASSWORDS["hubadmin"], None, id="someone-elses-password"),
        pytest.param("mallory", "anything", None, id="unknown-user"),
        pytest.param("bob", PASSWORDS["bob"], None, id="not-in-allowed-users"),
        pytest.param("hubadmin", PASSWORDS["hubadmin"], ("hubadmin", True), id="admin"),
        pytest.param("alice", "", None, id="empty-password"),
        pytest.param("", PASSWORDS["alice"], None, id="empty-username"),
        pytest.param("Alice", PASSWORDS["alice"], ("alice", False), id="case"),
    ],
)
async def test_login_table(authenticator, username, password, expected):
    result = await authenticator.get_authenticated_user(
        None, {"username": username, "password": password}
    )
    if expected is None:
        assert result is None
    else:
        # JupyterHub reports a non-admin as admin None ("leave the stored flag alone").
        assert result is not None
        assert (result["name"], bool(result["admin"])) == expected


async def test_allow_all_lets_any_user_with_a_hash_in(password_hashes):
    c = Config()
    c.HashedPasswordAuthenticator.password_hashes = {"bob": password_hashes["bob"]}
    c.Authenticator.allow_all = True
    authenticator = HashedPasswordAuthenticator(config=c)
    ok = await authenticator.get_authenticated_user(
        None, {"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert ok["name"] == "bob"
    nobody = await authenticator.get_authenticated_user(
        None, {"username": "carol", "password": "x"}
    )
    assert nobody is None


async def test_unknown_user_still_runs_the_kdf(authenticator, monkeypatch):
    checked = []
    real_verify = hub_app.auth.verify_password

    def spy(password, encoded):
        checked.append(encoded)
        return real_verify(password, encoded)

    monkeypatch.setattr(hub_app.auth, "verify_password", spy)
    await authenticator.get_authenticated_user(None, {"username": "mallory", "password": "x"})
    assert len(checked) == 1
    assert checked[0].startswith("scrypt$ln=15,r=8,p=1$")
    assert checked[0] not in authenticator.password_hashes.values()


async def test_unknown_user_never_matches_the_dummy_hash(authenticator, monkeypatch):
    # Even if the dummy's password were guessed, an unknown user stays out.
    monkeypatch.setattr(hub_app.auth, "verify_password", lambda password, encoded: True)
    result = await authenticator.authenticate(None, {"username": "mallory", "password": "x"})
    assert result is None


async def test_missing_form_fields(authenticator):
    assert await authenticator.authenticate(None, {}) is None


def test_malformed_hash_is_rejected_naming_the_trait_and_user():
    with pytest.raises(ValueError, match=r"HashedPasswordAuthenticator\.password_hashes\[eve\]"):
        HashedPasswordAuthenticator(password_hashes={"eve": "plaintext-by-mistake"})


def test_malformed_hash_message_does_not_echo_it():
    with pytest.raises(ValueError) as raised:
        HashedPasswordAuthenticator(password_hashes={"eve": "plaintext-by-mistake"})
    assert "plaintext-by-mistake" not in str(raised.value)


def test_entry_point_name_resolves():
    from jupyterhub.app import JupyterHub

    hub = JupyterHub(authenticator_class="hashed")
    assert hub.authenticator_class is HashedPasswordAuthenticator
