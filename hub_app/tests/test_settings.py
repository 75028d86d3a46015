"""The settings loader: the rules, the JupyterHub config it produces, secret files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from hub_app.settings import (
    API_CLIENT_SCOPES,
    AUTHENTICATOR_KINDS,
    SettingsError,
    apply_settings,
    apply_settings_file,
    load_settings,
    parse_settings,
)
from hub_app.settings.services import IDLE_CULLER_SCOPES

from .conftest import write_private

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return mutate


def _pam(data: dict[str, Any]) -> None:
    data["authenticator"] = {"kind": "pam"}


def _drop_hash(user: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del data["authenticator"]["password_hashes"][user]

    return mutate


# (mutation, setting path that the message must name, further fragment of the message)
BAD_SETTINGS = {
    "not-an-object": (lambda d: [], "settings file", "must be a JSON object"),
    "typo-top": (_set("allowed_user", ["alice"]), "allowed_user", "allowed keys here: version"),
    "typo-nested": (_set("hub.bind_uri", "x"), "hub.bind_uri", "allowed keys here: bind_url"),
    "missing": (_delete("hub.db_url"), "hub.db_url", "required"),
    "version-2": (_set("version", 2), "version", "must be 1"),
    "version-true": (_set("version", True), "version", "must be 1"),
    "public-url-ftp": (_set("public_url", "ftp://hub/"), "public_url", "http:// or https://"),
    "public-url-no-host": (_set("public_url", "https:///x"), "public_url", "naming a host"),
    "public-url-relative": (_set("public_url", "hub.example.org"), "public_url", "absolute"),
    "public-url-query": (_set("public_url", "https://h/?a=1"), "public_url", "query"),
    "bind-url-https": (_set("hub.bind_url", "https://127.0.0.1:8081"), "hub.bind_url", "http://"),
    "bind-url-path": (_set("hub.bind_url", "http://127.0.0.1:8081/x"), "hub.bind_url", "path"),
    "bind-url-port": (_set("hub.bind_url", "http://127.0.0.1:99999"), "hub.bind_url", "port"),
    "api-url-not-url": (_set("proxy.api_url", "127.0.0.1:8001"), "proxy.api_url", "http://"),
    "db-url-empty": (_set("hub.db_url", ""), "hub.db_url", "must not be empty"),
    "log-level": (_set("hub.log_level", "info"), "hub.log_level", "DEBUG, INFO, WARNING"),
    "kind-unknown": (
        _set("authenticator.kind", "gitlab"),
        "authenticator.kind",
        "is 'gitlab'; choose one of: pam, hashed, github, oidc, ldap",
    ),
    "kind-missing": (_delete("authenticator.kind"), "authenticator.kind", "missing"),
    "pam-with-hashes": (
        lambda d: d["authenticator"].update(kind="pam"),
        "authenticator.password_hashes",
        'only used with kind "hashed"',
    ),
    "pam-open-sessions-str": (
        lambda d: d.update(authenticator={"kind": "pam", "open_sessions": "no"}),
        "authenticator.open_sessions",
        "true or false",
    ),
    "hashes-not-object": (
        _set("authenticator.password_hashes", ["x"]),
        "authenticator.password_hashes",
        "object of username to hash",
    ),
    "hash-malformed": (
        _set("authenticator.password_hashes.alice", "hunter2"),
        "authenticator.password_hashes.alice",
        "4 '$'-separated fields",
    ),
    "hash-bad-username": (
        _set("authenticator.password_hashes.Alice", "x"),
        "authenticator.password_hashes.Alice",
        "invalid username",
    ),
    "allowed-user-without-hash": (
        _drop_hash("alice"),
        "authenticator.password_hashes.alice",
        "could never log in",
    ),
    "nobody-allowed": (
        lambda d: d.update(allowed_users=[], admin_users=[]),
        "allowed_users",
        "no user could log in; set allowed_users or allow_all",
    ),
    "admin-not-allowed": (
        _set("admin_users", ["hubadmin", "root_"]),
        "admin_users",
        "'root_' would be admin but not allowed",
    ),
    "allowed-users-not-list": (_set("allowed_users", "alice"), "allowed_users", "list"),
    "username-uppercase": (_set("allowed_users", ["Alice"]), "allowed_users[0]", "invalid"),
    "username-digit-first": (_set("allowed_users", ["1x"]), "allowed_users[0]", "invalid"),
    "username-too-long": (_set("allowed_users", ["a" * 33]), "allowed_users[0]", "at most 32"),
    "username-twice": (
        _set("allowed_users", ["alice", "hubadmin", "alice"]),
        "allowed_users[2]",
        "listed twice",
    ),
    "allow-all-string": (_set("allow_all", "false"), "allow_all", "true or false"),
    "cmd-empty": (_set("spawner.cmd", []), "spawner.cmd", "non-empty list of strings"),
    "cmd-string": (_set("spawner.cmd", "jupyterhub-singleuser"), "spawner.cmd", "non-empty"),
    "cmd-item": (_set("spawner.cmd", ["x", 3]), "spawner.cmd[1]", "must be a string"),
    "default-url": (_set("spawner.default_url", "lab"), "spawner.default_url", "start with '/'"),
    "start-timeout-zero": (_set("spawner.start_timeout", 0), "spawner.start_timeout", "at least 1"),
    "start-timeout-str": (
        _set("spawner.start_timeout", "120"),
        "spawner.start_timeout",
        "whole number",
    ),
    "start-timeout-bool": (
        _set("spawner.start_timeout", True),
        "spawner.start_timeout",
        "whole number",
    ),
    "poll-interval-zero": (_set("spawner.poll_interval", 0), "spawner.poll_interval", "at least 1"),
    "http-timeout-float": (_set("spawner.http_timeout", 1.5), "spawner.http_timeout", "at least 1"),
    "environment-list": (
        _set("spawner.environment", []),
        "spawner.environment",
        "variable name to string",
    ),
    "log-dir-relative": (_set("spawner.log_dir", "logs"), "spawner.log_dir", "absolute path"),
    "log-dir-missing": (_delete("spawner.log_dir"), "spawner.log_dir", "missing"),
    "environment-value": (
        _set("spawner.environment", {"A": 1}),
        "spawner.environment.A",
        "must be a string",
    ),
    "service-name": (
        _set("api_client.service_name", "Hub App"),
        "api_client.service_name",
        "invalid service name",
    ),
    "secret-relative": (
        _set("hub.cookie_secret_file", "cookie_secret"),
        "hub.cookie_secret_file",
        "absolute path",
    ),
    "secret-missing": (
        _set("proxy.auth_token_file", "/nonexistent/token"),
        "proxy.auth_token_file",
        "does not exist",
    ),
    "secret-directory": (
        _set("api_client.token_file", "/"),
        "api_client.token_file",
        "not a regular file",
    ),
    "culler-timeout-short": (_set("idle_culler.timeout", 30), "idle_culler.timeout", "at least 60"),
    "culler-timeout-string": (
        _set("idle_culler.timeout", "3600"),
        "idle_culler.timeout",
        "whole number",
    ),
    "culler-every-longer-than-timeout": (
        _set("idle_culler.every", 7200),
        "idle_culler.every",
        "longer than the idle timeout (3600)",
    ),
    "culler-max-age-negative": (
        _set("idle_culler.max_age", -1),
        "idle_culler.max_age",
        "0 for no maximum age",
    ),
    "culler-remove-users-string": (
        _set("idle_culler.remove_users", "no"),
        "idle_culler.remove_users",
        "true or false",
    ),
    "culler-state-relative": (
        _set("idle_culler.state_file", "idle.json"),
        "idle_culler.state_file",
        "absolute path",
    ),
    "culler-unknown-key": (
        _set("idle_culler.timout", 60),
        "idle_culler.timout",
        "unknown",
    ),
    "metrics-token-missing": (
        _set("metrics.token_file", "/nonexistent/metrics_token"),
        "metrics.token_file",
        "does not exist",
    ),
}


@pytest.mark.parametrize(
    ("mutate", "setting", "fragment"),
    list(BAD_SETTINGS.values()),
    ids=list(BAD_SETTINGS),
)
def test_bad_settings_name_the_setting(settings_data, mutate, setting, fragment):
    data = mutate(settings_data)
    if data is None:
        data = settings_data
    with pytest.raises(SettingsError) as raised:
        parse_settings(data)
    assert raised.value.setting == setting
    message = str(raised.value)
    assert message.startswith(f"{setting}: ")
    assert fragment in message


def test_unknown_key_lists_the_allowed_keys(settings_data):
    settings_data["spawner"]["cmdd"] = []
    with pytest.raises(SettingsError) as raised:
        parse_settings(settings_data)
    for key in ("cmd", "default_url", "notebook_dir", "start_timeout", "environment"):
        assert key in raised.value.problem


def test_hash_error_does_not_echo_the_value(settings_data):
    settings_data["authenticator"]["password_hashes"]["alice"] = "my-plain-password"
    with pytest.raises(SettingsError) as raised:
        parse_settings(settings_data)
    assert "my-plain-password" not in str(raised.value)


def test_valid_settings_parse(settings_data):
    settings = parse_settings(settings_data)
    assert settings.allowed_users == {"alice", "hubadmin"}
    assert settings.admin_users == {"hubadmin"}
    assert settings.authenticator.kind == "hashed"
    assert settings.spawner.cmd == ("/opt/jupyterhub/venv/bin/jupyterhub-singleuser",)
    assert settings.hub_api_url == "http://127.0.0.1:8081/hub/api"


def test_settings_are_frozen(settings_data):
    settings = parse_settings(settings_data)
    with pytest.raises(AttributeError):
        settings.allow_all = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.spawner.environment["X"] = "1"  # type: ignore[index]


def test_hub_api_url_keeps_the_base_url(settings_data):
    settings_data["public_url"] = "https://example.org/jupyter/"
    assert parse_settings(settings_data).hub_api_url == "http://127.0.0.1:8081/jupyter/hub/api"


def test_allow_all_needs_no_allowed_users(settings_data):
    settings_data.update(allowed_users=[], admin_users=["hubadmin"], allow_all=True)
    settings = parse_settings(settings_data)
    assert settings.allow_all
    assert settings.allowed_users == frozenset()


@pytest.mark.parametrize("open_sessions", [None, True])
def test_pam_kind(settings_data, open_sessions):
    settings_data["authenticator"] = {"kind": "pam"}
    if open_sessions is not None:
        settings_data["authenticator"]["open_sessions"] = open_sessions
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert c.JupyterHub.authenticator_class == "pam"
    assert c.PAMAuthenticator.open_sessions is bool(open_sessions)
    assert "HashedPasswordAuthenticator" not in c


def test_kinds_table_is_the_list_of_choices():
    assert list(AUTHENTICATOR_KINDS) == ["pam", "hashed", "github", "oidc", "ldap"]


def test_apply_settings(settings_data, secrets_dir, password_hashes):
    settings_data["spawner"]["environment"] = {"JUPYTER_PREFER_ENV_PATH": "0"}
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    proxy_token = (secrets_dir / "proxy_auth_token").read_text().strip()
    api_token = (secrets_dir / "api_client_token").read_text().strip()

    assert c.JupyterHub.bind_url == "https://hub.example.org/"
    assert c.JupyterHub.public_url == "https://hub.example.org/"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:8081"
    assert c.JupyterHub.db_url == settings_data["hub"]["db_url"]
    assert c.JupyterHub.cookie_secret_file == str(secrets_dir / "cookie_secret")
    assert c.JupyterHub.log_level == "INFO"
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.upgrade_db is True
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert c.ConfigurableHTTPProxy.auth_token == proxy_token
    assert c.JupyterHub.authenticator_class == "hub_app.auth.HashedPasswordAuthenticator"
    assert c.HashedPasswordAuthenticator.password_hashes == {
        "alice": password_hashes["alice"],
        "hubadmin": password_hashes["hubadmin"],
    }
    assert c.Authenticator.allowed_users == {"alice", "hubadmin"}
    # Admins are the admin role's members (test_admins.py), never admin_users.
    assert "admin_users" not in c.Authenticator
    assert c.Authenticator.allow_all is False
    assert c.Authenticator.allow_existing_users is False
    assert c.JupyterHub.spawner_class == "hub_app.spawners.LoggingLocalProcessSpawner"
    assert c.LocalServerMixin.log_dir == settings_data["spawner"]["log_dir"]
    assert c.Spawner.cmd == ["/opt/jupyterhub/venv/bin/jupyterhub-singleuser"]
    assert c.Spawner.default_url == "/lab"
    assert c.Spawner.notebook_dir == "~"
    # JupyterHub's start timeout covers the queue (600 s by default), the start
    # in turn (start_timeout) and the wait until the server answers (http_timeout).
    assert c.StartQueueMixin.turn_timeout == 120
    assert c.Spawner.start_timeout == 600 + 120 + 60
    assert c.Spawner.poll_interval == 30
    assert c.Spawner.http_timeout == 60
    assert c.Spawner.environment["JUPYTER_PREFER_ENV_PATH"] == "0"
    metrics_token = (secrets_dir / "metrics_token").read_text().strip()
    culler, scraper = c.JupyterHub.services[1:]
    assert c.JupyterHub.services[0] == {"name": "hub-app-cli", "api_token": api_token}
    assert culler["name"] == "idle-culler"
    assert culler["command"][1:3] == ["-m", "hub_app.idle_culler"]
    assert "--timeout=3600" in culler["command"]
    # 0: a quarter of the timeout, at most 5 minutes.
    assert "--cull-every=300" in culler["command"]
    assert "--cull-users=false" in culler["command"]
    assert scraper == {"name": "prometheus", "api_token": metrics_token}
    roles = c.JupyterHub.load_roles
    assert {"name": "admin", "users": ["hubadmin"]} in roles
    services = [role for role in roles if role["name"] != "admin"]
    assert [(role["name"], role["scopes"], role["services"]) for role in services] == [
        ("hub-app-cli", list(API_CLIENT_SCOPES), ["hub-app-cli"]),
        ("idle-culler", list(IDLE_CULLER_SCOPES), ["idle-culler"]),
        ("metrics-scraper", ["read:metrics"], ["prometheus"]),
    ]
    assert c.JupyterHub.last_activity_interval == 300
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"


def test_applied_config_loads_into_jupyterhub(settings_data):
    """The traits JupyterHub itself defines accept every value we set."""
    from jupyterhub.app import JupyterHub

    from hub_app.auth import HashedPasswordAuthenticator

    c = Config()
    apply_settings(c, parse_settings(settings_data))
    hub = JupyterHub(config=c)
    assert hub.cleanup_servers is False
    assert hub.hub_bind_url == "http://127.0.0.1:8081"
    assert hub.authenticator_class is HashedPasswordAuthenticator
    authenticator = hub.authenticator_class(config=c)
    assert set(authenticator.password_hashes) == {"alice", "hubadmin"}


# --- secret files -----------------------------------------------------------------

SECRET_SETTINGS = [
    ("hub.cookie_secret_file", "cookie_secret"),
    ("proxy.auth_token_file", "proxy_auth_token"),
    ("api_client.token_file", "api_client_token"),
    ("metrics.token_file", "metrics_token"),
]


@pytest.mark.parametrize(("setting", "filename"), SECRET_SETTINGS)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_secret_readable_by_others_is_refused(settings_data, secrets_dir, setting, filename, mode):
    path = secrets_dir / filename
    path.chmod(mode)
    with pytest.raises(SettingsError) as raised:
        parse_settings(settings_data)
    assert raised.value.setting == setting
    assert f"chmod 0600 {path}" in str(raised.value)
    assert f"{mode:04o}" in str(raised.value)


@pytest.mark.parametrize(("setting", "filename"), SECRET_SETTINGS)
def test_owner_only_modes_are_accepted(settings_data, secrets_dir, setting, filename):
    (secrets_dir / filename).chmod(0o400)
    parse_settings(settings_data)


@pytest.mark.parametrize(("setting", "filename"), SECRET_SETTINGS[1:])
@pytest.mark.parametrize("content", ["", "\n", "short\n"])
def test_token_files_must_hold_a_token(settings_data, secrets_dir, setting, filename, content):
    write_private(secrets_dir / filename, content)
    with pytest.raises(SettingsError, match=re.escape(f"{setting}: ")) as raised:
        parse_settings(settings_data)
    assert "at least 8 characters" in str(raised.value)


def test_secret_symlink_to_private_file_is_followed(settings_data, secrets_dir):
    link = secrets_dir / "link"
    link.symlink_to(secrets_dir / "cookie_secret")
    settings_data["hub"]["cookie_secret_file"] = str(link)
    parse_settings(settings_data)


# --- files and apply_settings_file ------------------------------------------------


def test_load_settings_file(settings_data, write_settings):
    settings = load_settings(write_settings(settings_data))
    assert settings.public_url == "https://hub.example.org/"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{", "not valid JSON: "), ('{"version": 1,}', "line 1 column"), ("", "not valid JSON")],
)
def test_load_settings_bad_json(write_settings, content, fragment):
    with pytest.raises(SettingsError, match=re.escape(fragment)) as raised:
        load_settings(write_settings(content))
    assert raised.value.setting == "settings file"


def test_load_settings_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.json")


def test_apply_settings_file(settings_data, write_settings):
    c = Config()
    apply_settings_file(c, write_settings(settings_data))
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:8081"


def test_apply_settings_file_exits_2_with_one_clear_line(settings_data, write_settings, capsys):
    settings_data["authenticator"]["kind"] = "gitlab"
    path = write_settings(settings_data)
    c = Config()
    with pytest.raises(SystemExit) as raised:
        apply_settings_file(c, path)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"hub_app settings error in {path}: authenticator.kind: "
        "is 'gitlab'; choose one of: pam, hashed, github, oidc, ldap\n"
    )
    assert "JupyterHub" not in c


def test_settings_example_in_readme_is_the_schema(settings_data):
    """The README's example document has exactly the keys the loader accepts."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    documented = json.loads(example)

    def keys(node: Any, prefix: str = "") -> set[str]:
        if not isinstance(node, dict) or prefix.endswith(("password_hashes", "environment")):
            return set()
        found = set()
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            found |= {path} | keys(value, path)
        return found

    assert keys(documented) == keys(settings_data)


def test_services_off_leave_only_the_cli(settings_data, secrets_dir):
    """Culler and metrics off: no culler, no scraper token (its file need not exist)."""
    settings_data["idle_culler"]["enabled"] = False
    settings_data["metrics"] = {"enabled": False, "token_file": "/nonexistent/metrics_token"}
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert [service["name"] for service in c.JupyterHub.services] == ["hub-app-cli"]
    assert [role["name"] for role in c.JupyterHub.load_roles] == ["hub-app-cli", "admin"]
    # JupyterHub's own default activity intervals.
    assert c.JupyterHub.last_activity_interval == 300
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"


@pytest.mark.parametrize(
    ("timeout", "every", "remove_users", "interval", "cull_every", "scopes"),
    [
        # A short timeout: activity reported every quarter of it, checks as often.
        (60, 0, False, 15, 15, IDLE_CULLER_SCOPES),
        (600, 0, False, 150, 150, IDLE_CULLER_SCOPES),
        # Long timeouts: JupyterHub's own 5 minutes.
        (86400, 0, False, 300, 300, IDLE_CULLER_SCOPES),
        # An explicit check interval wins; removing users needs admin:users.
        (3600, 60, True, 300, 60, (*IDLE_CULLER_SCOPES, "admin:users")),
    ],
)
def test_culler_timings_and_scopes(
    settings_data, timeout, every, remove_users, interval, cull_every, scopes
):
    settings_data["idle_culler"].update(timeout=timeout, every=every, remove_users=remove_users)
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler")
    assert c.JupyterHub.last_activity_interval == interval
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == str(interval)
    assert f"--cull-every={cull_every}" in culler["command"]
    assert f"--cull-users={str(remove_users).lower()}" in culler["command"]
    assert "--cull-admin-users=false" in culler["command"]
    assert role["scopes"] == list(scopes)
    assert "admin:users" not in role["scopes"] or remove_users
