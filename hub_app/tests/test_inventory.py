"""The inventory check the play runs on the controller (hub_app.inventory).

``data/default_inventory.json`` is what the play's ``hub_app_check`` task hands
hub_app for the embedded default inventory (inventories/local): every role
variable rendered, the settings document the jupyterhub role would write, and
the host's service manager. Each case below breaks it the way an operator
might, and checks the refusal names the variable the operator wrote.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub_app.inventory import (
    SETTING_VARIABLES,
    check_inventory,
    format_problem,
    variable_for_setting,
)

DATA = json.loads((Path(__file__).parent / "data" / "default_inventory.json").read_text())
PROJECT = Path(__file__).resolve().parents[2]
# Each variable's type, from the roles' argument specs (as the play's plugin reads them).
TYPES = {
    name: str(option.get("type", "str"))
    for spec_file in sorted(PROJECT.glob("roles/*/meta/argument_specs.yml"))
    for name, option in yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]
    .get("options", {})
    .items()
}
SCRYPT = "scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43

Case = tuple[dict[str, Any], dict[str, Any], str, str]


def case(
    variables: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    *,
    blames: str,
    says: str,
) -> Case:
    """Variables to set, settings keys (dotted) to set, the variable blamed, a fragment."""
    return (variables or {}, settings or {}, blames, says)


def _set(document: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        document = document.setdefault(key, {})
    document[keys[-1]] = value


def run(
    variables: dict[str, Any],
    settings: dict[str, Any],
    manager: str = DATA["service_manager"],
    groups: dict[str, list[str]] | None = None,
):
    data = copy.deepcopy(DATA)
    data["variables"].update(copy.deepcopy(variables))
    for key, value in settings.items():
        _set(data["settings"], key, copy.deepcopy(value))
    return check_inventory(
        data["variables"], data["settings"], service_manager=manager, types=TYPES, groups=groups
    )


BACKUP = {"backup_repository": "/srv/backups/hub", "backup_password": "a-long-vault-password"}
LDAP = {
    "jupyterhub_authenticator": "ldap",
    "jupyterhub_initial_admin": "",
    "jupyterhub_ldap_server_address": "ldap.example.org",
    "jupyterhub_ldap_bind_dn_templates": ["uid={username},ou=people,dc=example,dc=org"],
}
LDAP_SETTINGS = {
    "authenticator": {
        "kind": "ldap",
        "server_address": "ldap.example.org",
        "tls_strategy": "before_bind",
        "allowed_groups": [],
        "bind_dn_templates": ["uid={username},ou=people,dc=example,dc=org"],
    }
}
GITHUB = {
    "jupyterhub_authenticator": "github",
    "jupyterhub_initial_admin": "",
    "jupyterhub_oauth_client_id": "client",
    "jupyterhub_oauth_client_secret": "s3cret-s3cret",
}
GITHUB_SETTINGS = {
    "authenticator": {
        "kind": "github",
        "client_id": "client",
        "client_secret_file": "/etc/jupyterhub/secrets/oauth_client_secret",
        "allowed_organizations": ["my-org"],
        "github_url": "https://github.com",
    }
}
OIDC = {
    "jupyterhub_authenticator": "oidc",
    "jupyterhub_initial_admin": "",
    "jupyterhub_oauth_client_id": "client",
    "jupyterhub_oauth_client_secret": "s3cret-s3cret",
    "jupyterhub_oidc_issuer": "https://id.example.org/realms/hub",
}
OIDC_SETTINGS = {
    "authenticator": {
        "kind": "oidc",
        "client_id": "client",
        "client_secret_file": "/etc/jupyterhub/secrets/oauth_client_secret",
        "authorize_url": "",
        "token_url": "",
        "userdata_url": "",
        "scopes": ["openid", "profile"],
        "username_claim": "preferred_username",
        "groups_claim": "groups",
        "allowed_groups": ["hub-users"],
        "login_service": "Sign in",
    }
}
DOCKER = {
    "jupyterhub_spawner_kind": "docker",
    "jupyterhub_spawner_docker_images": [{"name": "localhost/lab"}],
}
DOCKER_SETTINGS = {
    "spawner.kind": "docker",
    "spawner.docker": {"api_url": "unix:///run/podman.sock", "images": ["localhost/lab"]},
}
LETSENCRYPT = {
    "tls_mode": "letsencrypt",
    "tls_domains": ["hub.example.org"],
    "tls_letsencrypt_email": "admin@example.org",
}


def kernel(**entry: Any) -> dict[str, Any]:
    return {
        "kernels_catalogue": [
            {"name": "py", "display_name": "Python", "kind": "python"}
            | {"packages": ["ipykernel==7.4.0"]}
            | entry
        ]
    }


# A hub that is not root: the role renders the mediator's path into the settings.
UNPRIVILEGED = {"jupyterhub_hub_user": "jupyterhub"}
UNPRIVILEGED_SETTINGS = {"spawner.sudospawner": "/opt/jupyterhub/venv/bin/sudospawner"}

BAD: dict[str, Case] = {
    "hub account not a name": case(
        {"jupyterhub_hub_user": "Hub User"}, blames="jupyterhub_hub_user", says="not a user"
    ),
    "hub account is the proxy's": case(
        {"jupyterhub_hub_user": "jupyterhub-proxy"},
        blames="jupyterhub_hub_user",
        says="is already proxy_user",
    ),
    "hub account is a system account": case(
        {"jupyterhub_hub_user": "daemon"},
        blames="jupyterhub_hub_user",
        says="system account of its own",
    ),
    "hub account is the users' group": case(
        {"jupyterhub_hub_user": "jupyterhub-users"},
        blames="jupyterhub_hub_user",
        says="already users_group",
    ),
    "hub account is a user's": case(
        UNPRIVILEGED | {"users_accounts": [{"name": "jupyterhub"}]},
        UNPRIVILEGED_SETTINGS,
        blames="jupyterhub_hub_user",
        says="also an account in users_accounts",
    ),
    "unprivileged hub with systemd": case(
        UNPRIVILEGED | {"jupyterhub_spawner_kind": "systemd"},
        UNPRIVILEGED_SETTINGS | {"spawner.kind": "systemd"},
        blames="jupyterhub_hub_user",
        says="jupyterhub_spawner_kind 'systemd' needs a root hub",
    ),
    "unprivileged hub with docker": case(
        UNPRIVILEGED | DOCKER,
        UNPRIVILEGED_SETTINGS | DOCKER_SETTINGS,
        blames="jupyterhub_hub_user",
        says="the container engine's socket",
    ),
    "unprivileged hub with pam": case(
        UNPRIVILEGED | {"jupyterhub_authenticator": "pam"},
        UNPRIVILEGED_SETTINGS,
        blames="jupyterhub_authenticator",
        says="jupyterhub_hub_user is 'jupyterhub', not root",
    ),
    "unprivileged hub cloning repositories": case(
        UNPRIVILEGED | {"jupyterhub_spawner_form_git_hosts": ["github.com"]},
        UNPRIVILEGED_SETTINGS | {"spawner.options_form.git_hosts": ["github.com"]},
        blames="jupyterhub_spawner_form_git_hosts",
        says="(jupyterhub_hub_user) cannot do",
    ),
    "unprivileged hub with the culler's log in a shared directory": case(
        UNPRIVILEGED
        | {
            "jupyterhub_idle_culler_enabled": True,
            "jupyterhub_idle_culler_log_file": "/var/log/c.log",
        },
        UNPRIVILEGED_SETTINGS
        | {"idle_culler.enabled": True, "idle_culler.log_file": "/var/log/c.log"},
        blames="jupyterhub_idle_culler_log_file",
        says="must be a directory of its own",
    ),
    "users group not a name": case(
        {"users_group": "hub users"}, blames="users_group", says="not a user or group name"
    ),
    # --- ports and addresses
    "https port out of range": case(
        {"proxy_https_port": 70000}, blames="proxy_https_port", says="1 to 65535"
    ),
    "http port zero": case({"proxy_http_port": 0}, blames="proxy_http_port", says="TCP port"),
    "api port negative": case({"proxy_api_port": -1}, blames="proxy_api_port", says="TCP port"),
    "api port a string": case({"proxy_api_port": "8001"}, blames="proxy_api_port", says="TCP port"),
    "api port is the hub's": case(
        {"proxy_api_port": 8081}, blames="proxy_api_port", says="proxy_default_target"
    ),
    "http port is the https port": case(
        {"proxy_http_port": 443}, blames="proxy_http_port", says="proxy_https_port uses too"
    ),
    "https port is the hub's": case(
        {"proxy_https_port": 8081}, blames="proxy_https_port", says="two programs"
    ),
    "api on every address": case(
        {"proxy_api_ip": "0.0.0.0"},  # noqa: S104 -- the mistake under test
        blames="proxy_api_ip",
        says="127.0.0.1",
    ),
    "public ip a host name": case(
        {"proxy_public_ip": "hub.example.org"}, blames="proxy_public_ip", says="IP address"
    ),
    "npm registry without a scheme": case(
        {"proxy_npm_registry": "registry.npmjs.org"},
        blames="proxy_npm_registry",
        says="https:// or http://",
    ),
    "npm registry with a query": case(
        {"proxy_npm_registry": "https://npm.example.org/?token=x"},
        blames="proxy_npm_registry",
        says="query string",
    ),
    "default target https": case(
        {"proxy_default_target": "https://127.0.0.1:8081"},
        blames="proxy_default_target",
        says="http://",
    ),
    "default target with path": case(
        {"proxy_default_target": "http://127.0.0.1:8081/hub"},
        blames="proxy_default_target",
        says="path",
    ),
    "default target bad port": case(
        {"proxy_default_target": "http://127.0.0.1:99999"},
        blames="proxy_default_target",
        says="port",
    ),
    "hsts negative": case(
        {"proxy_hsts_max_age": -5}, blames="proxy_hsts_max_age", says="0 to send no HSTS"
    ),
    "proxy api url bad port": case(
        {"jupyterhub_proxy_api_url": "http://127.0.0.1:99999"},
        {"proxy.api_url": "http://127.0.0.1:99999"},
        blames="jupyterhub_proxy_api_url",
        says="invalid port",
    ),
    "proxy api url elsewhere": case(
        {"jupyterhub_proxy_api_url": "http://127.0.0.1:9001"},
        blames="jupyterhub_proxy_api_url",
        says="proxy_api_port",
    ),
    "public url without slash": case(
        {"jupyterhub_public_url": "https://hub.example.org"},
        blames="jupyterhub_public_url",
        says="ending in '/'",
    ),
    "public url plain http": case(
        {"jupyterhub_public_url": "http://hub.example.org/"},
        blames="jupyterhub_public_url",
        says="tls_allow_plain_http",
    ),
    "public url ftp": case(
        {"jupyterhub_public_url": "ftp://hub.example.org/"},
        blames="jupyterhub_public_url",
        says="https://",
    ),
    "settings: proxy api on the hub's port": case(
        settings={"proxy.api_url": "http://127.0.0.1:8081"},
        blames="jupyterhub_proxy_api_url",
        says="port of its own",
    ),
    "settings: hub bind with a path": case(
        settings={"hub.bind_url": "http://127.0.0.1:8081/x"},
        blames="jupyterhub_hub_bind_url",
        says="path",
    ),
    # --- paths, versions, names
    "venv relative": case(
        {"jupyterhub_venv": "opt/venv"}, blames="jupyterhub_venv", says="absolute path"
    ),
    "supervisor log dir relative": case(
        {"supervisor_log_dir": "var/log"}, blames="supervisor_log_dir", says="absolute path"
    ),
    "version a range": case(
        {"jupyterhub_version": ">=5"}, blames="jupyterhub_version", says="release number"
    ),
    "proxy version latest": case(
        {"proxy_chp_version": "latest"}, blames="proxy_chp_version", says="release number"
    ),
    "proxy user uppercase": case(
        {"proxy_user": "Proxy"}, blames="proxy_user", says="user or group name"
    ),
    "admin group with space": case(
        {"users_admin_group": "hub admins"}, blames="users_admin_group", says="group name"
    ),
    "proxy program with slash": case(
        {"jupyterhub_proxy_program": "proxy/main"},
        blames="jupyterhub_proxy_program",
        says="program name",
    ),
    "extra package shell": case(
        {"jupyterhub_extra_packages": ["x && curl evil"]},
        blames="jupyterhub_extra_packages[0]",
        says="pip requirement",
    ),
    "acme host address a name": case(
        {"tls_letsencrypt_host_addresses": ["gateway"]},
        blames="tls_letsencrypt_host_addresses[0]",
        says="IP address",
    ),
    # --- timeouts, limits, counts
    "start timeout zero": case(
        settings={"spawner.start_timeout": 0},
        blames="jupyterhub_spawner_start_timeout",
        says="at least 1",
    ),
    "http timeout negative": case(
        settings={"spawner.http_timeout": -3},
        blames="jupyterhub_spawner_http_timeout",
        says="at least 1",
    ),
    "poll interval a float": case(
        settings={"spawner.poll_interval": 2.5},
        blames="jupyterhub_spawner_poll_interval",
        says="whole number",
    ),
    "start timeout true": case(
        settings={"spawner.start_timeout": True},
        blames="jupyterhub_spawner_start_timeout",
        says="whole number",
    ),
    "concurrent limit negative": case(
        settings={"spawner.concurrent_spawn_limit": -1},
        blames="jupyterhub_spawner_concurrent_limit",
        says="0 for no limit",
    ),
    "active limit negative": case(
        settings={"spawner.active_server_limit": -2},
        blames="jupyterhub_spawner_active_limit",
        says="0 for no limit",
    ),
    "cpu limit negative": case(
        {"jupyterhub_spawner_cpu_limit": -1},
        blames="jupyterhub_spawner_cpu_limit",
        says="0 for no limit",
    ),
    "log rotations negative": case(
        {"jupyterhub_spawner_log_rotations": -1},
        blames="jupyterhub_spawner_log_rotations",
        says="whole number",
    ),
    "log backups negative": case(
        {"supervisor_log_backups": -1}, blames="supervisor_log_backups", says="whole number"
    ),
    "log size unit": case(
        {"supervisor_log_max_bytes": "50 MiB"},
        blames="supervisor_log_max_bytes",
        says="KB, MB or GB",
    ),
    "watchdog delay zero": case(
        {"supervisor_watchdog_first_delay": 0},
        blames="supervisor_watchdog_first_delay",
        says="at least 1",
    ),
    "watchdog max below first": case(
        {"supervisor_watchdog_first_delay": 30, "supervisor_watchdog_max_delay": 10},
        blames="supervisor_watchdog_max_delay",
        says="less than supervisor_watchdog_first_delay",
    ),
    "certificate days zero": case(
        {"tls_self_signed_valid_days": 0}, blames="tls_self_signed_valid_days", says="at least 1"
    ),
    "certificate lives too long": case(
        {"tls_self_signed_valid_days": 825},
        blames="tls_self_signed_valid_days",
        says="use at most 366",
    ),
    "renewal after expiry": case(
        {"tls_self_signed_renew_days": 900},
        blames="tls_self_signed_renew_days",
        says="smaller than",
    ),
    "mem limit lowercase": case(
        {"jupyterhub_spawner_kind": "systemd", "jupyterhub_spawner_mem_limit": "2g"},
        {"spawner.kind": "systemd", "spawner.mem_limit": "2g"},
        blames="jupyterhub_spawner_mem_limit",
        says="K, M, G or T",
    ),
    "limits on the local spawner": case(
        {"jupyterhub_spawner_mem_limit": "2G"},
        {"spawner.mem_limit": "2G"},
        blames="jupyterhub_spawner_mem_limit",
        says="cannot enforce",
    ),
    # --- modes, names, environment
    "homes world-writable": case(
        {"users_home_mode": "0777"}, blames="users_home_mode", says="never group- or world-writable"
    ),
    "homes group-writable": case(
        {"users_home_mode": "0770"}, blames="users_home_mode", says="group- or world-writable"
    ),
    "home mode not octal": case({"users_home_mode": "rwx"}, blames="users_home_mode", says="octal"),
    "environment reserved": case(
        settings={"spawner.environment": {"JUPYTERHUB_API_TOKEN": "x"}},
        blames="jupyterhub_spawner_environment.JUPYTERHUB_API_TOKEN",
        says="belongs to JupyterHub",
    ),
    "environment JPY": case(
        settings={"spawner.environment": {"JPY_COOKIE_NAME": "x"}},
        blames="jupyterhub_spawner_environment.JPY_COOKIE_NAME",
        says="can never be set",
    ),
    "environment space": case(
        settings={"spawner.environment": {"MY VAR": "x"}},
        blames="jupyterhub_spawner_environment.MY VAR",
        says="not a variable name",
    ),
    "environment digit first": case(
        settings={"spawner.environment": {"1VAR": "x"}},
        blames="jupyterhub_spawner_environment.1VAR",
        says="not a variable name",
    ),
    "environment number value": case(
        settings={"spawner.environment": {"THREADS": 4}},
        blames="jupyterhub_spawner_environment.THREADS",
        says="quotes",
    ),
    "environment a list": case(
        settings={"spawner.environment": ["A=1"]},
        blames="jupyterhub_spawner_environment",
        says="object",
    ),
    "overridable reserved": case(
        settings={"spawner.options_form.environment_overridable": ["JUPYTERHUB_USER"]},
        blames="jupyterhub_spawner_form_environment_overridable[0]",
        says="belongs to JupyterHub",
    ),
    "form arg with value": case(
        settings={"spawner.options_form.args": ["--ServerApp.ip=0.0.0.0"]},
        blames="jupyterhub_spawner_form_args[0]",
        says="argument name",
    ),
    "git host a URL": case(
        settings={"spawner.options_form.git_hosts": ["https://github.com"]},
        blames="jupyterhub_spawner_form_git_hosts[0]",
        says="host name",
    ),
    "default url relative": case(
        settings={"spawner.default_url": "lab"},
        blames="jupyterhub_spawner_default_url",
        says="start with '/'",
    ),
    "log dir relative": case(
        settings={"spawner.log_dir": "logs"},
        blames="jupyterhub_spawner_log_dir",
        says="absolute path",
    ),
    "log level lowercase": case(
        settings={"hub.log_level": "debug"}, blames="jupyterhub_log_level", says="DEBUG"
    ),
    "account name uppercase": case(
        {"users_accounts": [{"name": "Alice"}]}, blames="users_accounts[0].name", says="lowercase"
    ),
    "account root": case(
        {"users_accounts": [{"name": "root"}]},
        blames="users_accounts[0].name",
        says="system account",
    ),
    "account twice": case(
        {"users_accounts": [{"name": "ann"}, {"name": "ann"}]},
        blames="users_accounts[1].name",
        says="twice",
    ),
    "account clear password": case(
        {"users_accounts": [{"name": "ann", "password_hash": "hunter2hunter2"}]},
        blames="users_accounts[0].password_hash",
        says="crypt(3)",
    ),
    "absent name uppercase": case(
        {"users_absent": ["Bob"]}, blames="users_absent[0]", says="not a login name"
    ),
    "absent root": case({"users_absent": ["root"]}, blames="users_absent[0]", says="system"),
    "absent twice": case({"users_absent": ["bob", "bob"]}, blames="users_absent[1]", says="twice"),
    "absent and kept": case(
        {"users_accounts": [{"name": "hubadmin", "admin": True}, {"name": "bob"}]}
        | {"users_absent": ["bob"]},
        blames="users_absent[0]",
        says="either kept or removed",
    ),
    "absent still allowed": case(
        {"users_absent": ["bob"], "jupyterhub_allowed_users": ["hubadmin", "bob"]},
        blames="jupyterhub_allowed_users[1]",
        says="take 'bob' out of jupyterhub_allowed_users",
    ),
    "absent still admin": case(
        {"users_absent": ["bob"], "jupyterhub_admin_users": ["hubadmin", "bob"]},
        blames="jupyterhub_admin_users[1]",
        says="who is in users_absent",
    ),
    "absent still has a password": case(
        {"users_absent": ["bob"], "jupyterhub_password_hashes": {"bob": SCRYPT}},
        blames="jupyterhub_password_hashes.bob",
        says="log in again",
    ),
    "absent is the initial admin": case(
        {"users_accounts": [], "users_absent": ["hubadmin"]},
        blames="jupyterhub_initial_admin",
        says="take 'hubadmin' out of jupyterhub_initial_admin",
    ),
    "hub-only removal still allowed": case(
        {"jupyterhub_absent_users": ["hubadmin"]},
        blames="jupyterhub_allowed_users[0]",
        says="who is in jupyterhub_absent_users",
    ),
    "hub-only removal bad name": case(
        {"jupyterhub_absent_users": ["Bob Smith"]},
        blames="jupyterhub_absent_users[0]",
        says="invalid username",
    ),
    "archive dir relative": case(
        {"users_absent_archive_dir": "backups"},
        blames="users_absent_archive_dir",
        says="absolute path",
    ),
    "allowed user bad name": case(
        settings={"allowed_users": ["Bob Smith"]},
        blames="jupyterhub_allowed_users[0]",
        says="invalid username",
    ),
    "admin not allowed": case(
        settings={"admin_users": ["hubadmin", "eve"]},
        blames="jupyterhub_admin_users",
        says="jupyterhub_allowed_users",
    ),
    # --- TLS
    "tls none without opt-in": case(
        {"tls_mode": "none"}, blames="tls_mode", says="tls_allow_plain_http"
    ),
    "no domains": case({"tls_domains": []}, blames="tls_domains", says="host names"),
    "domain a URL": case(
        {"tls_domains": ["https://hub.example.org"]}, blames="tls_domains[0]", says="DNS name"
    ),
    "ip address a name": case(
        {"tls_self_signed_ip_addresses": ["hub.local"]},
        blames="tls_self_signed_ip_addresses[0]",
        says="not an IP address",
    ),
    "letsencrypt no email": case(
        {**LETSENCRYPT, "tls_letsencrypt_email": ""},
        blames="tls_letsencrypt_email",
        says="contact address",
    ),
    "letsencrypt wildcard": case(
        {**LETSENCRYPT, "tls_domains": ["*.example.org"]}, blames="tls_domains[0]", says="wildcard"
    ),
    "letsencrypt single label": case(
        {**LETSENCRYPT, "tls_domains": ["hub"]}, blames="tls_domains[0]", says="public DNS names"
    ),
    "letsencrypt on port 8080": case(
        {**LETSENCRYPT, "proxy_http_port": 8080}, blames="proxy_http_port", says="port 80"
    ),
    "acme directory http": case(
        {**LETSENCRYPT, "tls_letsencrypt_acme_directory_url": "http://acme.example.org/dir"},
        blames="tls_letsencrypt_acme_directory_url",
        says="https://",
    ),
    "acme directory and staging": case(
        {
            **LETSENCRYPT,
            "tls_letsencrypt_acme_directory_url": "https://acme.example.org/dir",
            "tls_letsencrypt_staging": True,
        },
        blames="tls_letsencrypt_staging",
        says="one or the other",
    ),
    "acme bundle not PEM": case(
        {**LETSENCRYPT, "tls_letsencrypt_acme_ca_bundle": "/etc/ssl/ca.pem"},
        blames="tls_letsencrypt_acme_ca_bundle",
        says="PEM",
    ),
    # --- CA certificates and kernels
    "ca name with slash": case(
        {
            "ca_trust_certificates": [
                {"name": "corp/ca", "certificate": "-----BEGIN CERTIFICATE-----"}
            ]
        },
        blames="ca_trust_certificates[0].name",
        says="file name",
    ),
    "ca without certificate": case(
        {"ca_trust_certificates": [{"name": "corp"}]},
        blames="ca_trust_certificates[0].certificate",
        says="PEM",
    ),
    "ca state typo": case(
        {"ca_trust_certificates": [{"name": "corp", "state": "gone"}]},
        blames="ca_trust_certificates[0].state",
        says="present or absent",
    ),
    "kernel name uppercase": case(
        kernel(name="Py"), blames="kernels_catalogue[0].name", says="kernel name"
    ),
    "kernel unknown kind": case(
        kernel(kind="julia"), blames="kernels_catalogue[0].kind", says="python, r, bash"
    ),
    "kernel without ipykernel": case(
        kernel(packages=["numpy"]),
        blames="kernels_catalogue[0].packages",
        says="ipykernel exactly once",
    ),
    "kernel package shell": case(
        kernel(packages=["ipykernel==7.4.0", "numpy; rm -rf /"]),
        blames="kernels_catalogue[0].packages",
        says="pip requirements",
    ),
    "r kernel pip package": case(
        kernel(kind="r", packages=["ggplot2"]),
        blames="kernels_catalogue[0].packages",
        says="r-cran-",
    ),
    "kernel no display name": case(
        kernel(display_name=""), blames="kernels_catalogue[0].display_name", says="launcher"
    ),
    "kernel twice": case(
        {"kernels_catalogue": kernel()["kernels_catalogue"] * 2},
        blames="kernels_catalogue[1].name",
        says="twice",
    ),
    # --- logins
    "unknown authenticator": case(
        {"jupyterhub_authenticator": "saml", "jupyterhub_initial_admin": ""},
        {"authenticator": {"kind": "saml"}},
        blames="jupyterhub_authenticator",
        says="choose one of",
    ),
    "nobody can log in": case(
        {"jupyterhub_initial_admin": ""},
        {"allowed_users": [], "admin_users": []},
        blames="jupyterhub_allowed_users",
        says="jupyterhub_allow_all",
    ),
    "hash for pam": case(
        {
            "jupyterhub_authenticator": "pam",
            "jupyterhub_initial_admin": "",
            "jupyterhub_password_hashes": {"hubadmin": SCRYPT},
        },
        {"authenticator": {"kind": "pam"}},
        blames="jupyterhub_password_hashes",
        says="ignores it",
    ),
    "initial admin with pam": case(
        {"jupyterhub_authenticator": "pam"},
        {"authenticator": {"kind": "pam"}},
        blames="jupyterhub_initial_admin",
        says="hashed",
    ),
    "initial admin not admin": case(
        {"jupyterhub_admin_users": []},
        blames="jupyterhub_initial_admin",
        says="jupyterhub_admin_users",
    ),
    "hash clear text": case(
        settings={"authenticator.password_hashes": {"hubadmin": "admin-password"}},
        blames="jupyterhub_password_hashes.hubadmin",
        says="hash",
    ),
    "allowed user without hash": case(
        settings={"allowed_users": ["hubadmin", "ann"]},
        blames="jupyterhub_password_hashes.ann",
        says="hub-app hash-password",
    ),
    "ldap server a URL": case(
        LDAP,
        LDAP_SETTINGS | {"authenticator.server_address": "ldaps://ldap.example.org"},
        blames="jupyterhub_ldap_server_address",
        says="a URL",
    ),
    "ldap port too big": case(
        LDAP | {"jupyterhub_ldap_server_port": 99999},
        LDAP_SETTINGS,
        blames="jupyterhub_ldap_server_port",
        says="1 to 65535",
    ),
    "ldap tls strategy": case(
        LDAP,
        LDAP_SETTINGS | {"authenticator.tls_strategy": "none"},
        blames="jupyterhub_ldap_tls_strategy",
        says="no clear-text choice",
    ),
    "ldap template without username": case(
        LDAP,
        LDAP_SETTINGS | {"authenticator.bind_dn_templates": ["uid=admin,dc=x"]},
        blames="jupyterhub_ldap_bind_dn_templates[0]",
        says="{username}",
    ),
    "ldap both templates and search": case(
        LDAP | {"jupyterhub_ldap_user_search_base": "ou=people,dc=x"},
        LDAP_SETTINGS,
        blames="jupyterhub_ldap_bind_dn_templates",
        says="exactly one",
    ),
    "ldap search without password": case(
        LDAP
        | {
            "jupyterhub_ldap_bind_dn_templates": [],
            "jupyterhub_ldap_user_search_base": "dc=x",
            "jupyterhub_ldap_search_bind_dn": "cn=svc,dc=x",
        },
        LDAP_SETTINGS,
        blames="jupyterhub_ldap_search_bind_password",
        says="vault",
    ),
    "ldap groups without rule": case(
        LDAP | {"jupyterhub_allowed_users": []},
        LDAP_SETTINGS | {"allowed_users": [], "admin_users": []},
        blames="jupyterhub_allowed_users",
        says="jupyterhub_ldap_allowed_groups",
    ),
    "github without secret": case(
        GITHUB | {"jupyterhub_oauth_client_secret": ""},
        GITHUB_SETTINGS,
        blames="jupyterhub_oauth_client_secret",
        says="vault",
    ),
    "github without client id": case(
        GITHUB | {"jupyterhub_oauth_client_id": ""},
        GITHUB_SETTINGS,
        blames="jupyterhub_oauth_client_id",
        says="oauth_callback",
    ),
    "github team typo": case(
        GITHUB,
        GITHUB_SETTINGS | {"authenticator.allowed_organizations": ["my org"]},
        blames="jupyterhub_github_allowed_organizations[0]",
        says="organisation",
    ),
    "github url http": case(
        GITHUB,
        GITHUB_SETTINGS | {"authenticator.github_url": "http://github.example.org"},
        blames="jupyterhub_github_url",
        says="https://",
    ),
    "oauth over http": case(
        GITHUB | {"tls_allow_plain_http": True},
        GITHUB_SETTINGS | {"public_url": "http://hub.example.org/"},
        blames="jupyterhub_public_url",
        says="clear text",
    ),
    "oidc nothing located": case(
        OIDC | {"jupyterhub_oidc_issuer": ""},
        OIDC_SETTINGS,
        blames="jupyterhub_oidc_issuer",
        says="all three",
    ),
    "oidc issuer http": case(
        OIDC | {"jupyterhub_oidc_issuer": "http://id.example.org"},
        OIDC_SETTINGS,
        blames="jupyterhub_oidc_issuer",
        says="https://",
    ),
    "oidc without openid scope": case(
        OIDC,
        OIDC_SETTINGS | {"authenticator.scopes": ["profile"]},
        blames="jupyterhub_oidc_scopes",
        says="openid",
    ),
    "oidc groups of nobody": case(
        OIDC | {"jupyterhub_allowed_users": []},
        OIDC_SETTINGS
        | {"authenticator.allowed_groups": [], "allowed_users": [], "admin_users": []},
        blames="jupyterhub_allowed_users",
        says="jupyterhub_oidc_allowed_groups",
    ),
    # --- spawners
    "unknown spawner": case(
        {"jupyterhub_spawner_kind": "kubernetes"},
        {"spawner.kind": "kubernetes"},
        blames="jupyterhub_spawner_kind",
        says="local, systemd, docker",
    ),
    "systemd without systemd": case(
        {"jupyterhub_spawner_kind": "systemd"},
        {"spawner.kind": "systemd"},
        blames="jupyterhub_spawner_kind",
        says="not systemd",
    ),
    "images without docker": case(
        {"jupyterhub_spawner_docker_images": [{"name": "localhost/lab"}]},
        blames="jupyterhub_spawner_docker_images",
        says="runs no containers",
    ),
    "image with a space": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"name": "Lab Image"}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images[0].name",
        says="image reference",
    ),
    "image uppercase": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"name": "localhost/Lab"}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images[0].name",
        says="lowercase",
    ),
    "image bad digest": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"name": "lab@sha256:xyz"}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images[0].name",
        says="image reference",
    ),
    "image without name": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"containerfile": "FROM x"}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images[0].name",
        says="string",
    ),
    "image offer a string": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"name": "lab", "offer": "yes"}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images[0].offer",
        says="true or false",
    ),
    "no image offered": case(
        DOCKER | {"jupyterhub_spawner_docker_images": [{"name": "lab", "offer": False}]},
        DOCKER_SETTINGS,
        blames="jupyterhub_spawner_docker_images",
        says="offers no image",
    ),
    "docker pull policy": case(
        DOCKER,
        DOCKER_SETTINGS | {"spawner.docker.pull_policy": "sometimes"},
        blames="jupyterhub_spawner_docker_pull_policy",
        says="choose one of",
    ),
    "docker api url": case(
        DOCKER,
        DOCKER_SETTINGS | {"spawner.docker.api_url": "/run/podman.sock"},
        blames="jupyterhub_spawner_docker_api_url",
        says="unix:///",
    ),
    "docker volume without user": case(
        DOCKER,
        DOCKER_SETTINGS | {"spawner.docker.volume_name": "shared"},
        blames="jupyterhub_spawner_docker_volume_name",
        says="{username}",
    ),
    "docker home relative": case(
        DOCKER,
        DOCKER_SETTINGS | {"spawner.docker.home": "jovyan"},
        blames="jupyterhub_spawner_docker_home",
        says="absolute path",
    ),
    "backup repository relative": case(
        BACKUP | {"backup_repository": "backups/hub"},
        blames="backup_repository",
        says="absolute local path",
    ),
    "backup repository unknown scheme": case(
        BACKUP | {"backup_repository": "ftp://host/backups"},
        blames="backup_repository",
        says="sftp:",
    ),
    "backup repository inside what it backs up": case(
        BACKUP | {"backup_repository": "/var/lib/jupyterhub/restic"},
        blames="backup_repository",
        says="inside jupyterhub_state_dir",
    ),
    "backup without a password": case(
        BACKUP | {"backup_password": ""}, blames="backup_password", says="Ansible Vault"
    ),
    "backup password too short": case(
        BACKUP | {"backup_password": "hunter2"}, blames="backup_password", says="12 characters"
    ),
    "backup schedule not cron": case(
        BACKUP | {"backup_schedule": "daily at 3"}, blames="backup_schedule", says="five fields"
    ),
    "backup schedule without a repository": case(
        {"backup_schedule": "15 3 * * *"}, blames="backup_schedule", says="backup_repository"
    ),
    "backup environment sets restic's password": case(
        BACKUP | {"backup_environment": {"RESTIC_PASSWORD": "x" * 20}},
        blames="backup_environment.RESTIC_PASSWORD",
        says="backup_password",
    ),
    "backup retention negative": case(
        BACKUP | {"backup_keep_weekly": -1}, blames="backup_keep_weekly", says="whole number"
    ),
    "backup local copies none": case(
        {"backup_local_copies_keep": 0}, blames="backup_local_copies_keep", says="at least"
    ),
    "backup snapshot not an id": case(
        {"backup_restore_snapshot": "yesterday"}, blames="backup_restore_snapshot", says="latest"
    ),
}


@pytest.mark.parametrize(("variables", "settings", "blames", "says"), BAD.values(), ids=BAD.keys())
def test_a_bad_inventory_is_refused_naming_the_variable(variables, settings, blames, says):
    problems = run(variables, settings)
    assert problems, "accepted"
    blamed = {problem.setting: problem for problem in problems}
    assert blames in blamed, [str(problem) for problem in problems]
    assert says in blamed[blames].problem
    line = format_problem(blamed[blames])
    assert line.startswith(f"{blames}: ")
    variable = re.split(r"[.\[]", blames)[0]
    assert f"Fix {variable} in the inventory" in line


def test_the_default_inventory_passes():
    assert run({}, {}, manager="process_api") == []


GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "a hub that is not root": (UNPRIVILEGED, UNPRIVILEGED_SETTINGS),
    "ldap": (LDAP, LDAP_SETTINGS),
    "github": (GITHUB, GITHUB_SETTINGS),
    "oidc from the issuer": (OIDC, OIDC_SETTINGS),
    "docker": (DOCKER, DOCKER_SETTINGS),
    "letsencrypt": (LETSENCRYPT, {}),
    "plain http behind a proxy": (
        {"tls_mode": "none", "tls_allow_plain_http": True, "jupyterhub_public_url": "http://h/"},
        {"public_url": "http://h/"},
    ),
    "systemd with limits": (
        {"jupyterhub_spawner_kind": "systemd", "jupyterhub_spawner_cpu_limit": 1.5},
        {"spawner.kind": "systemd", "spawner.cpu_limit": 1.5, "spawner.mem_limit": "2G"},
    ),
    "image with registry, port, tag and digest": (
        DOCKER
        | {
            "jupyterhub_spawner_docker_images": [
                {"name": "registry.example.org:5000/team/lab:2025.1@sha256:" + "a" * 64}
            ]
        },
        DOCKER_SETTINGS,
    ),
    "homes readable by the group": ({"users_home_mode": "0750"}, {}),
    # Removed everywhere, and the role's input follows users_absent.
    "a user removed": (
        {
            "users_absent": ["bob", "carol"],
            "jupyterhub_absent_users": ["bob", "carol"],
            "users_absent_home": "archive",
        },
        {},
    ),
    # The hub registers its own route in the proxy; proxy_default_target is
    # only where requests go while that route is missing.
    "hub on a port of its own": (
        {"jupyterhub_hub_bind_url": "http://127.0.0.1:8090"},
        {"hub.bind_url": "http://127.0.0.1:8090"},
    ),
    "ipv6 api": ({"proxy_api_ip": "::1", "jupyterhub_proxy_api_url": "http://[::1]:8001"}, {}),
    "backups to a local disk, nightly, with homes": (
        BACKUP | {"backup_schedule": "15 3 * * *", "backup_include_homes": True},
        {},
    ),
    "backups to s3": (
        BACKUP
        | {
            "backup_repository": "s3:s3.amazonaws.com/bucket/hub",
            "backup_environment": {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"},
        },
        {},
    ),
}


@pytest.mark.parametrize(("variables", "settings"), GOOD.values(), ids=GOOD.keys())
def test_a_good_inventory_passes(variables, settings):
    assert [str(problem) for problem in run(variables, settings, manager="systemd")] == []


def test_every_problem_is_reported_at_once():
    problems = run({"proxy_https_port": 0, "users_home_mode": "0777"}, {"spawner.start_timeout": 0})
    assert {problem.setting for problem in problems} == {
        "proxy_https_port",
        "users_home_mode",
        "jupyterhub_spawner_start_timeout",
    }


def test_a_secret_is_never_in_a_message():
    clear = "my-clear-text-password"
    problems = run(
        {"users_accounts": [{"name": "ann", "password_hash": clear}]},
        {"authenticator.password_hashes": {"hubadmin": clear}},
    )
    assert len(problems) == 2
    assert not [problem for problem in problems if clear in str(problem)]


@pytest.mark.parametrize(
    ("setting", "kind", "variable"),
    [
        ("spawner.environment.FOO", None, "jupyterhub_spawner_environment.FOO"),
        ("spawner.options_form.args[2]", None, "jupyterhub_spawner_form_args[2]"),
        ("authenticator.allowed_groups", "oidc", "jupyterhub_oidc_allowed_groups"),
        ("authenticator.allowed_groups", "ldap", "jupyterhub_ldap_allowed_groups"),
        ("authenticator.password_hashes.ann", "hashed", "jupyterhub_password_hashes.ann"),
        ("version", None, "version"),
    ],
)
def test_settings_keys_become_variables(setting, kind, variable):
    assert variable_for_setting(setting, {"authenticator": {"kind": kind}}) == variable


# --- the table agrees with the role's settings template --------------------------


def _expressions(document: Any, prefix: str = "") -> dict[str, str]:
    """Dotted key -> the Jinja text that fills it, in roles/jupyterhub/vars/main.yml."""
    if isinstance(document, dict):
        found: dict[str, str] = {}
        for key, value in document.items():
            found.update(_expressions(value, f"{prefix}.{key}" if prefix else key))
        return found
    return {prefix: json.dumps(document)}


def test_every_setting_names_the_variable_the_role_renders_it_from():
    role_vars = yaml.safe_load((PROJECT / "roles/jupyterhub/vars/main.yml").read_text())
    template = _expressions(role_vars["__jupyterhub_settings"])
    for kind, section in role_vars["__jupyterhub_authenticator_settings"].items():
        if isinstance(section, dict):
            for key, text in _expressions(section).items():
                template[f"authenticator.{key}"] = template.get(f"authenticator.{key}", "") + text
        else:
            template.setdefault(f"authenticator[{kind}]", section)
    # Each kind's section states its own kind; which section is used is the choice.
    template["authenticator.kind"] = template["authenticator"]
    template.update(
        {
            f"spawner.docker.{k}": v
            for k, v in _expressions(role_vars["__jupyterhub_spawner_docker_settings"]).items()
        }
    )
    template.update(
        {
            f"spawner.slurm.{k}": v
            for k, v in _expressions(role_vars["__jupyterhub_spawner_slurm_settings"]).items()
        }
    )
    everything = json.dumps(role_vars)

    def source(text: str) -> str:
        # One level of the role's own helper variables (__jupyterhub_*).
        helpers = re.findall(r"__jupyterhub_[a-z_]+", text)
        return text + "".join(json.dumps(role_vars.get(h, "")) for h in helpers)

    checked = 0
    for setting, variable in SETTING_VARIABLES.items():
        text = template.get(setting)
        if text is None:
            # A section (spawner.docker) or a key only the ldap expression fills.
            assert variable in everything, (setting, variable)
            continue
        assert variable in source(text), f"{setting} is not rendered from {variable}: {text}"
        checked += 1
    assert checked >= 40
