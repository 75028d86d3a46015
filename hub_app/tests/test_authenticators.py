"""The github, oidc and ldap kinds: their settings, the config they produce, and logins.

Each kind's rules are one table of (kind, mutation, setting named, message
fragment). The applied config is loaded into the real authenticator class
(oauthenticator, ldapauthenticator), never a reimplementation. GitHub logins are
driven against a STAND-IN for GitHub's OAuth and REST endpoints (a small tornado
app on loopback written for these tests): GitHub itself cannot be reached from
the test machines, so what is checked is that GitHubOAuthenticator, configured
by hub_app, makes the requests GitHub documents and honours their answers.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from hub_app.settings import SettingsError, apply_settings, parse_settings

from .conftest import write_private

# Test-only secrets, written to 0600 files like the role writes the vault's.
CLIENT_SECRET = "client-secret-from-the-vault-0123456789"  # noqa: S105
BIND_PASSWORD = "bind-password-from-the-vault"  # noqa: S105


@pytest.fixture
def client_secret_file(secrets_dir: Path) -> Path:
    return write_private(secrets_dir / "oauth_client_secret", CLIENT_SECRET + "\n")


@pytest.fixture
def bind_password_file(secrets_dir: Path) -> Path:
    return write_private(secrets_dir / "ldap_bind_password", BIND_PASSWORD + "\n")


def sections(client_secret_file: Path, bind_password_file: Path) -> dict[str, dict[str, Any]]:
    """A valid authenticator section of each new kind."""
    return {
        "github": {
            "kind": "github",
            "client_id": "Iv1.0123456789abcdef",
            "client_secret_file": str(client_secret_file),
            "allowed_organizations": ["jupyter-lab", "jupyter-lab:ops"],
        },
        "oidc": {
            "kind": "oidc",
            "client_id": "jupyterhub",
            "client_secret_file": str(client_secret_file),
            "authorize_url": "https://idp.example.org/auth",
            "token_url": "https://idp.example.org/token",
            "userdata_url": "https://idp.example.org/me",
            "scopes": ["openid", "profile", "groups"],
            "username_claim": "preferred_username",
            "groups_claim": "groups",
            "allowed_groups": ["jupyter-users"],
            "login_service": "Keycloak",
        },
        "ldap": {
            "kind": "ldap",
            "server_address": "ldap.example.org",
            "tls_strategy": "before_bind",
            "bind_dn_templates": ["uid={username},ou=people,dc=example,dc=org"],
            "allowed_groups": ["cn=jupyter,ou=groups,dc=example,dc=org"],
        },
        "ldap-search": {
            "kind": "ldap",
            "server_address": "ldap.example.org",
            "server_port": 636,
            "tls_strategy": "on_connect",
            "search": {
                "base": "ou=people,dc=example,dc=org",
                "bind_dn": "cn=hub,dc=example,dc=org",
                "bind_password_file": str(bind_password_file),
            },
            "allowed_groups": ["cn=jupyter,ou=groups,dc=example,dc=org"],
        },
    }


@pytest.fixture
def kind_settings(settings_data, client_secret_file, bind_password_file):
    """Settings whose authenticator is the named kind (no allowed_users: groups decide)."""

    def make(kind: str) -> dict[str, Any]:
        data = dict(settings_data)
        data["authenticator"] = sections(client_secret_file, bind_password_file)[kind]
        data["allowed_users"] = ["hubadmin"]
        data["admin_users"] = ["hubadmin"]
        return data

    return make


Mutation = Callable[[dict[str, Any]], Any]


def _auth(key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["authenticator"][key] = value

    return mutate


def _drop(key: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del data["authenticator"][key]

    return mutate


def _no_allow_rule(group_key: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["authenticator"][group_key] = []
        data["allowed_users"] = []
        data["admin_users"] = []

    return mutate


# (kind, mutation, setting the message names, fragment of the message)
BAD_KIND_SETTINGS = {
    "github-no-allow-rule": (
        "github",
        _no_allow_rule("allowed_organizations"),
        "allowed_users",
        "authenticator.allowed_organizations is empty, and allow_all is false, so no user "
        "could log in; set allowed_users, authenticator.allowed_organizations or allow_all",
    ),
    "oidc-no-allow-rule": (
        "oidc",
        _no_allow_rule("allowed_groups"),
        "allowed_users",
        "set allowed_users, authenticator.allowed_groups or allow_all",
    ),
    "ldap-no-allow-rule": (
        "ldap",
        _no_allow_rule("allowed_groups"),
        "allowed_users",
        "set allowed_users, authenticator.allowed_groups or allow_all",
    ),
    "github-http-public-url": (
        "github",
        lambda d: d.update(public_url="http://hub.example.org/"),
        "public_url",
        "use an https:// public URL",
    ),
    "oidc-http-public-url": (
        "oidc",
        lambda d: d.update(public_url="http://hub.example.org/"),
        "public_url",
        "must not travel in clear text",
    ),
    "github-missing-secret-file": (
        "github",
        _auth("client_secret_file", "/nonexistent/oauth_client_secret"),
        "authenticator.client_secret_file",
        "does not exist",
    ),
    "github-no-client-id": (
        "github",
        _drop("client_id"),
        "authenticator.client_id",
        "required",
    ),
    "github-inline-secret": (
        "github",
        _auth("client_secret", CLIENT_SECRET),
        "authenticator.client_secret",
        "unknown key",
    ),
    "github-bad-organization": (
        "github",
        _auth("allowed_organizations", ["https://github.com/acme"]),
        "authenticator.allowed_organizations[0]",
        "not an organisation ('my-org') or a team ('my-org:my-team')",
    ),
    "github-url-http": (
        "github",
        _auth("github_url", "http://github.example.org"),
        "authenticator.github_url",
        "https://",
    ),
    "oidc-endpoint-http": (
        "oidc",
        _auth("token_url", "http://idp.example.org/token"),
        "authenticator.token_url",
        "https://",
    ),
    "oidc-no-openid-scope": (
        "oidc",
        _auth("scopes", ["profile"]),
        "authenticator.scopes",
        "must include 'openid'",
    ),
    "oidc-groups-string": (
        "oidc",
        _auth("allowed_groups", "jupyter-users"),
        "authenticator.allowed_groups",
        "list of strings",
    ),
    "oidc-missing-endpoint": (
        "oidc",
        _drop("userdata_url"),
        "authenticator.userdata_url",
        "required",
    ),
    "ldap-insecure": (
        "ldap",
        _auth("tls_strategy", "insecure"),
        "authenticator.tls_strategy",
        "choose one of: before_bind, on_connect",
    ),
    "ldap-template-without-username": (
        "ldap",
        _auth("bind_dn_templates", ["uid=alice,ou=people,dc=example,dc=org"]),
        "authenticator.bind_dn_templates[0]",
        "no {username} placeholder",
    ),
    "ldap-templates-and-search": (
        "ldap",
        _auth("search", {"base": "ou=people,dc=example,dc=org"}),
        "authenticator.bind_dn_templates",
        "exactly one of bind_dn_templates",
    ),
    "ldap-neither-templates-nor-search": (
        "ldap",
        _drop("bind_dn_templates"),
        "authenticator.bind_dn_templates",
        "exactly one of bind_dn_templates",
    ),
    "ldap-search-password-without-dn": (
        "ldap-search",
        lambda d: d["authenticator"]["search"].pop("bind_dn"),
        "authenticator.search.bind_password_file",
        "go together",
    ),
    "ldap-search-password-world-readable": (
        "ldap-search",
        lambda d: Path(d["authenticator"]["search"]["bind_password_file"]).chmod(0o644),
        "authenticator.search.bind_password_file",
        "chmod 0600",
    ),
    "ldap-port": ("ldap", _auth("server_port", 0), "authenticator.server_port", "TCP port"),
}


@pytest.mark.parametrize(
    ("kind", "mutate", "setting", "fragment"),
    list(BAD_KIND_SETTINGS.values()),
    ids=list(BAD_KIND_SETTINGS),
)
def test_bad_kind_settings_name_the_setting(kind_settings, kind, mutate, setting, fragment):
    data = kind_settings(kind)
    mutate(data)
    with pytest.raises(SettingsError) as raised:
        parse_settings(data)
    assert raised.value.setting == setting
    assert fragment in str(raised.value)
    # A secret never appears in a message.
    assert CLIENT_SECRET not in str(raised.value)


@pytest.mark.parametrize("kind", ["github", "oidc", "ldap"])
def test_allow_all_replaces_every_allow_rule(kind_settings, kind):
    data = kind_settings(kind)
    group_key = "allowed_organizations" if kind == "github" else "allowed_groups"
    _no_allow_rule(group_key)(data)
    data["allow_all"] = True
    assert parse_settings(data).allow_all is True


@pytest.mark.parametrize("kind", ["github", "oidc", "ldap"])
def test_allowed_users_alone_is_an_allow_rule(kind_settings, kind):
    data = kind_settings(kind)
    group_key = "allowed_organizations" if kind == "github" else "allowed_groups"
    data["authenticator"][group_key] = []
    assert parse_settings(data).allowed_users == {"hubadmin"}


def test_missing_package_is_named(kind_settings, monkeypatch):
    import hub_app.settings.primitives

    monkeypatch.setattr(hub_app.settings.primitives.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SettingsError) as raised:
        parse_settings(kind_settings("ldap"))
    assert raised.value.setting == "authenticator.kind"
    assert "jupyterhub-ldapauthenticator" in str(raised.value)


def _load(kind_settings, kind: str, public_url: str = "https://hub.example.org/") -> Config:
    data = kind_settings(kind)
    data["public_url"] = public_url
    c = Config()
    apply_settings(c, parse_settings(data))
    return c


# (kind, class path, {config section: {trait: expected value}})
APPLIED = [
    pytest.param(
        "github",
        "oauthenticator.github.GitHubOAuthenticator",
        {
            "GitHubOAuthenticator": {
                "github_url": "https://github.com",
                "allowed_organizations": {"jupyter-lab", "jupyter-lab:ops"},
                "scope": ["read:org"],
            },
        },
        id="github",
    ),
    pytest.param(
        "oidc",
        "oauthenticator.generic.GenericOAuthenticator",
        {
            "GenericOAuthenticator": {
                "authorize_url": "https://idp.example.org/auth",
                "token_url": "https://idp.example.org/token",
                "userdata_url": "https://idp.example.org/me",
                "scope": ["openid", "profile", "groups"],
                "username_claim": "preferred_username",
                "manage_groups": True,
                "auth_state_groups_key": "oauth_user.groups",
                "allowed_groups": {"jupyter-users"},
                "login_service": "Keycloak",
            },
        },
        id="oidc",
    ),
    pytest.param(
        "ldap",
        "ldapauthenticator.LDAPAuthenticator",
        {
            "LDAPAuthenticator": {
                "server_address": "ldap.example.org",
                "tls_strategy": "before_bind",
                "tls_kwargs": {"validate": ssl.CERT_REQUIRED, "sni": "ldap.example.org"},
                "bind_dn_template": ["uid={username},ou=people,dc=example,dc=org"],
                "allowed_groups": ["cn=jupyter,ou=groups,dc=example,dc=org"],
            },
        },
        id="ldap",
    ),
    pytest.param(
        "ldap-search",
        "ldapauthenticator.LDAPAuthenticator",
        {
            "LDAPAuthenticator": {
                "server_port": 636,
                "tls_strategy": "on_connect",
                "lookup_dn": True,
                "user_search_base": "ou=people,dc=example,dc=org",
                "user_attribute": "uid",
                "lookup_dn_user_dn_attribute": "uid",
                "lookup_dn_search_user": "cn=hub,dc=example,dc=org",
                "lookup_dn_search_password": BIND_PASSWORD,
            },
        },
        id="ldap-search",
    ),
]


@pytest.mark.parametrize(("kind", "class_path", "expected"), APPLIED)
def test_apply_sets_the_authenticators_own_traits(kind_settings, kind, class_path, expected):
    c = _load(kind_settings, kind)
    assert c.JupyterHub.authenticator_class == class_path
    for section, traits in expected.items():
        for trait, value in traits.items():
            assert c[section][trait] == value, f"{section}.{trait}"
    if kind in ("github", "oidc"):
        # The secret comes from its root-only file; the callback from the public URL.
        assert c.OAuthenticator.client_secret == CLIENT_SECRET
        assert c.OAuthenticator.oauth_callback_url == "https://hub.example.org/hub/oauth_callback"


def test_callback_url_keeps_the_base_path(kind_settings):
    c = _load(kind_settings, "oidc", public_url="https://www.example.org/jupyter/")
    assert c.OAuthenticator.oauth_callback_url == (
        "https://www.example.org/jupyter/hub/oauth_callback"
    )


def _authenticator(c: Config):
    """The authenticator JupyterHub would make from this config."""
    from jupyterhub.app import JupyterHub

    cls = JupyterHub(config=c).authenticator_class
    return cls(config=c)


@pytest.mark.parametrize("kind", ["github", "oidc", "ldap", "ldap-search"])
def test_applied_config_loads_into_the_real_authenticator(kind_settings, kind):
    authenticator = _authenticator(_load(kind_settings, kind))
    assert authenticator.allowed_users == {"hubadmin"}
    # Admins are the admin role's members (test_admins.py): admin_users can only grant.
    assert authenticator.admin_users == set()
    assert authenticator.allow_all is False
    assert authenticator.allow_existing_users is False


# --- OIDC: allow rules as GenericOAuthenticator applies them -----------------------------


@pytest.mark.parametrize(
    ("username", "groups", "allowed"),
    [
        pytest.param("alice", ["jupyter-users"], True, id="in-allowed-group"),
        pytest.param("carol", ["staff"], False, id="outside-the-groups"),
        pytest.param("dave", [], False, id="no-groups"),
        pytest.param("hubadmin", [], True, id="listed-in-allowed-users"),
    ],
)
async def test_oidc_allow_rules(kind_settings, username, groups, allowed):
    authenticator = _authenticator(_load(kind_settings, "oidc"))
    auth_model = await authenticator.update_auth_model(
        {
            "name": username,
            "admin": username in authenticator.admin_users or None,
            "auth_state": {"oauth_user": {"preferred_username": username, "groups": groups}},
        }
    )
    auth_model = await authenticator._apply_managed_groups(auth_model)
    assert await authenticator.check_allowed(username, auth_model) is allowed


# --- GitHub: the OAuth flow against a stand-in for GitHub ------------------------------


class _StandInState:
    """What the stand-in knows: which code belongs to whom, and who is in which org."""

    users: ClassVar = {"code-alice": "alice", "code-mallory": "mallory", "code-opsbob": "opsbob"}
    org_members: ClassVar = {("jupyter-lab", "alice")}
    team_members: ClassVar = {("jupyter-lab", "ops", "opsbob")}


class _AccessToken(tornado.web.RequestHandler):
    def post(self):
        code = self.get_body_argument("code")
        assert self.get_body_argument("client_secret") == CLIENT_SECRET
        if code not in _StandInState.users:
            self.write({"error": "bad_verification_code"})
            return
        self.write({"access_token": f"token-{code}", "token_type": "bearer", "scope": "read:org"})


def _user_of(handler: tornado.web.RequestHandler) -> str:
    token = handler.request.headers.get("Authorization", "").split()[-1]
    return _StandInState.users[token.removeprefix("token-")]


class _User(tornado.web.RequestHandler):
    def get(self):
        login = _user_of(self)
        # GitHub always sends "email", null when the address is private.
        self.write({"login": login, "id": len(login), "name": login.title(), "email": None})


class _OrgMember(tornado.web.RequestHandler):
    def get(self, org: str, username: str):
        assert _user_of(self)
        self.set_status(204 if (org, username) in _StandInState.org_members else 404)


class _TeamMember(tornado.web.RequestHandler):
    def get(self, org: str, team: str, username: str):
        assert _user_of(self)
        member = (org, team, username) in _StandInState.team_members
        self.set_status(204 if member else 404)


@pytest.fixture
async def github_stand_in():
    """A stand-in for GitHub Enterprise's OAuth and REST endpoints on loopback."""
    app = tornado.web.Application(
        [
            (r"/login/oauth/access_token", _AccessToken),
            (r"/api/v3/user", _User),
            (r"/api/v3/orgs/([^/]+)/members/([^/]+)", _OrgMember),
            (r"/api/v3/orgs/([^/]+)/teams/([^/]+)/members/([^/]+)", _TeamMember),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = HTTPServer(app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()


class _CallbackHandler:
    """What GitHubOAuthenticator reads from the hub's OAuth callback request."""

    def __init__(self, code: str) -> None:
        self._code = code

    def get_argument(self, name: str, default: Any = None) -> Any:
        return self._code if name == "code" else default


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("code-alice", "alice", id="organisation-member"),
        pytest.param("code-opsbob", "opsbob", id="team-member"),
        pytest.param("code-mallory", None, id="outside-the-organisations"),
    ],
)
async def test_github_flow_against_a_stand_in(kind_settings, github_stand_in, code, expected):
    c = _load(kind_settings, "github")
    # The stand-in speaks plain HTTP on loopback; hub_app itself only accepts an
    # https:// github_url, so this is set on the config, for the test alone.
    c.GitHubOAuthenticator.github_url = github_stand_in
    c.GitHubOAuthenticator.enable_pkce = False
    authenticator = _authenticator(c)
    assert authenticator.github_api == github_stand_in + "/api/v3"
    result = await authenticator.get_authenticated_user(_CallbackHandler(code), None)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert result["name"] == expected
        assert json.dumps(result["auth_state"]["github_user"])
