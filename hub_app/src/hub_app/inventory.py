"""Check a whole inventory on the Ansible controller, before the play changes the host.

The play's first task (``hub_app_check``, an action plugin in ``playbooks/``)
imports this module from the checkout and hands it every role variable, rendered,
and the settings document the jupyterhub role is about to write. Two kinds of rule
run here, and no rule lives anywhere else:

- the settings rules of :mod:`hub_app.settings` (the same ones ``hub-app
  check-settings`` and the hub's start run), over the settings the play would
  write, with each setting's name turned back into the inventory variable it came
  from (:data:`SETTING_VARIABLES`);
- the rules for the variables that never reach the settings file (ports, TLS,
  accounts, supervisor, kernels, CA certificates) or that the settings template
  transforms (a negative CPU limit, images of another spawner kind). They are
  written against the variables, with the primitives of
  :mod:`hub_app.settings.primitives`.

:func:`check_inventory` returns every problem at once, each naming the variable,
what is allowed, and how to fix it.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from .passwords import hash_password
from .settings import parse_settings, slurm
from .settings import primitives as p
from .settings.primitives import SettingsError

__all__ = ["SETTING_VARIABLES", "check_inventory", "variable_for_setting"]

# Where each key of the settings file comes from (roles/jupyterhub/vars/main.yml,
# __jupyterhub_settings). A key not listed under its own name is found through
# its longest listed prefix: spawner.environment.FOO -> jupyterhub_spawner_environment.FOO.
SETTING_VARIABLES: Mapping[str, str] = {
    "public_url": "jupyterhub_public_url",
    "hub.bind_url": "jupyterhub_hub_bind_url",
    "hub.db_url": "jupyterhub_state_dir",
    "hub.cookie_secret_file": "jupyterhub_secrets_dir",
    "hub.log_level": "jupyterhub_log_level",
    "proxy.api_url": "jupyterhub_proxy_api_url",
    "proxy.auth_token_file": "jupyterhub_proxy_auth_token_file",
    "authenticator.kind": "jupyterhub_authenticator",
    "authenticator.password_hashes": "jupyterhub_password_hashes",
    "authenticator.open_sessions": "jupyterhub_pam_open_sessions",
    "authenticator.client_id": "jupyterhub_oauth_client_id",
    "authenticator.client_secret_file": "jupyterhub_secrets_dir",
    "authenticator.allowed_organizations": "jupyterhub_github_allowed_organizations",
    "authenticator.github_url": "jupyterhub_github_url",
    "authenticator.authorize_url": "jupyterhub_oidc_authorize_url",
    "authenticator.token_url": "jupyterhub_oidc_token_url",
    "authenticator.userdata_url": "jupyterhub_oidc_userdata_url",
    "authenticator.scopes": "jupyterhub_oidc_scopes",
    "authenticator.username_claim": "jupyterhub_oidc_username_claim",
    "authenticator.groups_claim": "jupyterhub_oidc_groups_claim",
    "authenticator.login_service": "jupyterhub_oidc_login_service",
    "authenticator.server_address": "jupyterhub_ldap_server_address",
    "authenticator.server_port": "jupyterhub_ldap_server_port",
    "authenticator.tls_strategy": "jupyterhub_ldap_tls_strategy",
    "authenticator.bind_dn_templates": "jupyterhub_ldap_bind_dn_templates",
    "authenticator.search": "jupyterhub_ldap_user_search_base",
    "authenticator.search.base": "jupyterhub_ldap_user_search_base",
    "authenticator.search.user_attribute": "jupyterhub_ldap_user_attribute",
    "authenticator.search.bind_dn": "jupyterhub_ldap_search_bind_dn",
    "authenticator.search.bind_password_file": "jupyterhub_secrets_dir",
    "allowed_users": "jupyterhub_allowed_users",
    "admin_users": "jupyterhub_admin_users",
    "allow_all": "jupyterhub_allow_all",
    "spawner.cmd": "jupyterhub_venv",
    "spawner.default_url": "jupyterhub_spawner_default_url",
    "spawner.notebook_dir": "jupyterhub_spawner_notebook_dir",
    "spawner.start_timeout": "jupyterhub_spawner_start_timeout",
    "spawner.http_timeout": "jupyterhub_spawner_http_timeout",
    "spawner.poll_interval": "jupyterhub_spawner_poll_interval",
    "spawner.concurrent_spawn_limit": "jupyterhub_spawner_concurrent_limit",
    "spawner.start_slots": "jupyterhub_spawner_start_slots",
    "spawner.queue_timeout": "jupyterhub_spawner_queue_timeout",
    "spawner.nice": "jupyterhub_spawner_nice",
    "spawner.active_server_limit": "jupyterhub_spawner_active_limit",
    "spawner.environment": "jupyterhub_spawner_environment",
    "spawner.log_dir": "jupyterhub_spawner_log_dir",
    "spawner.kind": "jupyterhub_spawner_kind",
    "spawner.mem_limit": "jupyterhub_spawner_mem_limit",
    "spawner.cpu_limit": "jupyterhub_spawner_cpu_limit",
    "spawner.options_form.environment": "jupyterhub_spawner_form_environment",
    "spawner.options_form.environment_overridable": (
        "jupyterhub_spawner_form_environment_overridable"
    ),
    "spawner.options_form.args": "jupyterhub_spawner_form_args",
    "spawner.options_form.git_hosts": "jupyterhub_spawner_form_git_hosts",
    "spawner.options_form.git_python": "jupyterhub_spawner_git_python",
    "spawner.slurm": "jupyterhub_spawner_kind",
    "spawner.slurm.partitions": "jupyterhub_spawner_slurm_partitions",
    "spawner.slurm.walltime": "jupyterhub_spawner_slurm_walltime",
    "spawner.slurm.walltime_max": "jupyterhub_spawner_slurm_walltime_max",
    "spawner.slurm.memory": "jupyterhub_spawner_slurm_memory",
    "spawner.slurm.memory_max": "jupyterhub_spawner_slurm_memory_max",
    "spawner.slurm.cpus": "jupyterhub_spawner_slurm_cpus",
    "spawner.slurm.cpus_max": "jupyterhub_spawner_slurm_cpus_max",
    "spawner.slurm.directives": "jupyterhub_spawner_slurm_directives",
    "spawner.slurm.prologue": "jupyterhub_spawner_slurm_prologue",
    "spawner.slurm.singleuser": "jupyterhub_venv",
    "spawner.slurm.conf_file": "slurm_conf",
    "spawner.docker": "jupyterhub_spawner_docker_images",
    "spawner.docker.api_url": "jupyterhub_spawner_docker_api_url",
    "spawner.docker.images": "jupyterhub_spawner_docker_images",
    "spawner.docker.cmd": "jupyterhub_spawner_docker_cmd",
    "spawner.docker.home": "jupyterhub_spawner_docker_home",
    "spawner.docker.volume_name": "jupyterhub_spawner_docker_volume_name",
    "spawner.docker.pull_policy": "jupyterhub_spawner_docker_pull_policy",
    "spawner.docker.ca_bundle": "jupyterhub_spawner_docker_ca_bundle",
    "spawner.sudospawner": "jupyterhub_hub_user",
    "api_client": "jupyterhub_secrets_dir",
    "api_client.token_file": "jupyterhub_secrets_dir",
    "idle_culler.enabled": "jupyterhub_idle_culler_enabled",
    "idle_culler.timeout": "jupyterhub_idle_culler_timeout",
    "idle_culler.max_age": "jupyterhub_idle_culler_max_age",
    "idle_culler.every": "jupyterhub_idle_culler_every",
    "idle_culler.remove_users": "jupyterhub_idle_culler_remove_users",
    "idle_culler.state_file": "jupyterhub_state_dir",
    "idle_culler.log_file": "jupyterhub_idle_culler_log_file",
    "metrics.enabled": "jupyterhub_metrics_enabled",
    "metrics.token_file": "jupyterhub_secrets_dir",
}
# Keys whose variable depends on the authenticator or spawner kind.
_KIND_VARIABLES: Mapping[tuple[str, str], str] = {
    ("authenticator.allowed_groups", "oidc"): "jupyterhub_oidc_allowed_groups",
    ("authenticator.allowed_groups", "ldap"): "jupyterhub_ldap_allowed_groups",
    ("spawner.options_form.git_python", "docker"): "jupyterhub_spawner_docker_git_python",
}
_SETTING_NAME = re.compile(r"\b(?:[a-z_]+\.)*[a-z_]+\b")
# Login, user and group names as useradd and groupadd accept them portably.
SYSTEM_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
RESERVED_ACCOUNTS = ("root", "daemon", "bin", "sys", "nobody", "jupyterhub-proxy")
CRYPT_HASH_PATTERN = re.compile(r"^\$(y|gy|7|6|5|2b)\$")
CA_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DOMAIN_PATTERN = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
SUPERVISOR_SIZE_PATTERN = re.compile(r"^[0-9]+(KB|MB|GB)?$")
KERNEL_NAME_PATTERN = re.compile(r"^[a-z0-9._-]+$")
KERNEL_KINDS = ("python", "r", "bash")
PIP_REQUIREMENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\[\],<>=!~ -]*$")
R_PACKAGE_PATTERN = re.compile(r"^r-cran-[a-z0-9.-]+$")
IPYKERNEL_PATTERN = re.compile(r"^ipykernel([=<>!~ ]|$)")
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?(\.post[0-9]+)?$")
PROGRAM_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OAUTH_KINDS = ("github", "oidc")
# restic's repository locations: a local path, or one of its backends.
RESTIC_BACKENDS = ("sftp:", "s3:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:")
MIN_BACKUP_PASSWORD = 12
CRON_FIELD_PATTERN = re.compile(r"^[A-Za-z0-9*/,-]+$")
SNAPSHOT_PATTERN = re.compile(r"^(latest|[0-9a-f]{8,64})$")
# The longest certificate life Mozilla's intermediate TLS profile accepts.
MAX_CERTIFICATE_DAYS = 366


def variable_for_setting(setting: str, settings: Mapping[str, Any] | None = None) -> str:
    """The inventory variable a settings key comes from, with the key's own suffix.

    ``spawner.environment.FOO`` -> ``jupyterhub_spawner_environment.FOO``;
    ``authenticator.allowed_groups`` -> the OIDC or LDAP variable, by kind.
    A key that no variable feeds is returned as it is.
    """
    settings = settings or {}
    kinds = (
        (settings.get("authenticator") or {}).get("kind"),
        "docker" if (settings.get("spawner") or {}).get("kind") == "docker" else None,
    )
    key, bracket, index = setting.partition("[")
    index = bracket + index
    parts = key.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        rest = "".join(f".{part}" for part in parts[length:]) + index
        for kind in kinds:
            if (prefix, kind) in _KIND_VARIABLES:
                return _KIND_VARIABLES[prefix, kind] + rest
        if prefix in SETTING_VARIABLES:
            return SETTING_VARIABLES[prefix] + rest
    return setting


def _in_inventory_terms(error: SettingsError, settings: Mapping[str, Any]) -> SettingsError:
    """A settings error restated with inventory variables, in its name and its text."""

    def rename(match: re.Match[str]) -> str:
        name = match.group(0)
        known = name in SETTING_VARIABLES or any(name == key for key, _ in _KIND_VARIABLES)
        return variable_for_setting(name, settings) if known else name

    return SettingsError(
        variable_for_setting(error.setting, settings), _SETTING_NAME.sub(rename, error.problem)
    )


class Inventory:
    """The variables of every role, as the play renders them."""

    def __init__(
        self,
        variables: Mapping[str, Any],
        service_manager: str = "",
        types: Mapping[str, str] | None = None,
        groups: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.variables = variables
        self.service_manager = service_manager
        # name -> the argument specs' type (str, int, path, ...), where known.
        self.types = types or {}
        # The inventory's groups: group name -> its hosts' inventory names.
        self.groups = groups or {}

    def __getitem__(self, name: str) -> Any:
        return self.variables[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.variables.get(name, default)


Rule = Callable[[Inventory], Iterator[SettingsError]]
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    """Register a rule: a generator of the problems it finds."""
    RULES.append(function)
    return function


def _check(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[SettingsError]:
    """The problem a primitive check raises, as one item (or none)."""
    try:
        check(*args, **kwargs)
    except SettingsError as e:
        yield e


def _entries(v: Inventory, name: str) -> Iterator[tuple[str, dict]]:
    """The mappings of a list variable, with their names (``name[i]``)."""
    for index, entry in enumerate(v[name] or []):
        yield f"{name}[{index}]", entry if isinstance(entry, dict) else {"": entry}


# --- every role: paths, versions, names ---------------------------------------------


@rule
def paths_versions_names(v: Inventory) -> Iterator[SettingsError]:
    for name, kind in v.types.items():
        value = v.get(name)
        # The argument specs' type path: where the roles create or read files.
        if kind == "path" and value not in (None, "") and not str(value).startswith("/"):
            yield SettingsError(name, f"must be an absolute path, starting with /, not {value!r}")
    for name in sorted(v.variables):
        value = v[name]
        if name.endswith("_version") and not VERSION_PATTERN.match(str(value)):
            yield SettingsError(
                name, f"is {value!r}; give a release number such as 5.5.4 (it is pinned as ==)"
            )
    for name in (
        "proxy_user",
        "tls_private_key_group",
        "users_admin_group",
        "users_group",
        "jupyterhub_hub_user",
    ):
        value = v.get(name)
        if not isinstance(value, str) or not SYSTEM_NAME_PATTERN.match(value):
            yield SettingsError(
                name,
                f"{value!r} is not a user or group name: lowercase letters, digits, '_', '-', "
                "at most 32, starting with a letter or '_'",
            )
    program = v.get("jupyterhub_proxy_program")
    if not isinstance(program, str) or not PROGRAM_NAME_PATTERN.match(program):
        yield SettingsError(
            "jupyterhub_proxy_program",
            f"{program!r} is not a supervisor program name: letters, digits, '_', '.', '-'",
        )
    for index, requirement in enumerate(v.get("jupyterhub_extra_packages") or []):
        if not isinstance(requirement, str) or not PIP_REQUIREMENT_PATTERN.match(requirement):
            yield SettingsError(
                f"jupyterhub_extra_packages[{index}]",
                f"{requirement!r} is not a pip requirement such as jupyter-resource-usage==1.1.1",
            )
    for index, address in enumerate(v.get("tls_letsencrypt_host_addresses") or []):
        yield from _check(p.ip_address, address, f"tls_letsencrypt_host_addresses[{index}]")


# --- supervisor ----------------------------------------------------------------------


@rule
def supervisor_logs(v: Inventory) -> Iterator[SettingsError]:
    size = v["supervisor_log_max_bytes"]
    if not SUPERVISOR_SIZE_PATTERN.match(str(size)):
        yield SettingsError(
            "supervisor_log_max_bytes",
            f"is {size!r}; supervisord wants a byte count with an optional KB, MB or GB "
            "suffix, such as 50MB",
        )
    yield from _check(
        p.count, v["supervisor_log_backups"], "supervisor_log_backups", "0 to keep no old logs"
    )
    yield from _check(
        p.at_least_one, v["supervisor_watchdog_first_delay"], "supervisor_watchdog_first_delay"
    )
    yield from _check(
        p.at_least_one, v["supervisor_watchdog_max_delay"], "supervisor_watchdog_max_delay"
    )
    first, most = v["supervisor_watchdog_first_delay"], v["supervisor_watchdog_max_delay"]
    if type(first) is int and type(most) is int and 1 <= most < first:
        yield SettingsError(
            "supervisor_watchdog_max_delay",
            f"is {most}, less than supervisor_watchdog_first_delay ({first}); the back-off "
            "starts at the first delay and doubles up to the most, so raise it",
        )


# --- users ---------------------------------------------------------------------------


@rule
def user_accounts(v: Inventory) -> Iterator[SettingsError]:
    seen: set[str] = set()
    uids: dict[int, str] = {}
    for name, account in _entries(v, "users_accounts"):
        login = account.get("name")
        if not isinstance(login, str) or not SYSTEM_NAME_PATTERN.match(login):
            yield SettingsError(
                f"{name}.name",
                f"{login!r} is not a login name: use lowercase letters, digits, '_' or '-' "
                "(at most 32, starting with a letter or '_')",
            )
        elif login in RESERVED_ACCOUNTS:
            yield SettingsError(
                f"{name}.name",
                f"{login!r} is a system account; none of {', '.join(RESERVED_ACCOUNTS)} "
                "may be managed here",
            )
        elif login in seen:
            yield SettingsError(f"{name}.name", f"{login!r} is listed twice; merge the entries")
        seen.add(str(login))
        uid = account.get("uid")
        if uid is not None and (type(uid) is not int or not 1000 <= uid <= 60000):
            yield SettingsError(
                f"{name}.uid",
                f"(account {login}) is {uid!r}; a user's id is a whole number from 1000 to "
                "60000 (below are system accounts), the same on every host that shares homes",
            )
        elif uid is not None and uid in uids:
            yield SettingsError(
                f"{name}.uid",
                f"(account {login}) is {uid}, already {uids[uid]}'s; give each its own",
            )
        elif uid is not None:
            uids[uid] = str(login)
        password_hash = account.get("password_hash")
        # Never shown: it may be a clear-text password typed by mistake.
        if password_hash is not None and not (
            isinstance(password_hash, str) and CRYPT_HASH_PATTERN.match(password_hash)
        ):
            yield SettingsError(
                f"{name}.password_hash",
                f"(account {login}) is not a crypt(3) hash; make one with "
                "`mkpasswd -m yescrypt` or `openssl passwd -6` and keep it in Ansible Vault, "
                "never a clear-text password",
            )
    yield from _check(
        p.file_mode, v["users_home_mode"], "users_home_mode", guards="home directories"
    )


# The hub's lists that would let a removed user back in: the hub adds allowed
# users and admins to its database at every start, and a password hash (or the
# initial admin's) lets them log in again.
_HUB_LOGIN_VARIABLES = (
    "jupyterhub_allowed_users",
    "jupyterhub_admin_users",
    "jupyterhub_password_hashes",
    "jupyterhub_initial_admin",
)


@rule
def users_absent(v: Inventory) -> Iterator[SettingsError]:
    """Removals are explicit: a name is either kept or removed, and the hub forgets it too."""
    kept = {account.get("name") for _, account in _entries(v, "users_accounts")}
    seen: set[str] = set()
    for index, login in enumerate(v.get("users_absent") or []):
        name = f"users_absent[{index}]"
        if not isinstance(login, str) or not SYSTEM_NAME_PATTERN.match(login):
            yield SettingsError(
                name,
                f"{login!r} is not a login name: use lowercase letters, digits, '_' or '-' "
                "(at most 32, starting with a letter or '_')",
            )
            continue
        if login in RESERVED_ACCOUNTS:
            yield SettingsError(
                name,
                f"{login!r} is a system account; none of {', '.join(RESERVED_ACCOUNTS)} "
                "may be removed here",
            )
        elif login in seen:
            yield SettingsError(name, f"{login!r} is listed twice; keep one")
        elif login in kept:
            yield SettingsError(
                name,
                f"{login!r} is in users_accounts too; a user is either kept or removed: "
                "take the name out of users_accounts to remove the account, or out of "
                "users_absent to keep it",
            )
        seen.add(login)
        yield from _still_let_in(v, login, "users_absent")
    # The jupyterhub role's own input, when it is set apart from users_absent.
    extra = [
        login
        for login in v.get("jupyterhub_absent_users") or []
        if login not in (v.get("users_absent") or [])
    ]
    for login in extra:
        index = v["jupyterhub_absent_users"].index(login)
        problems = list(_check(p.check_username, login, f"jupyterhub_absent_users[{index}]"))
        yield from problems
        if not problems:
            yield from _still_let_in(v, login, "jupyterhub_absent_users")


def _still_let_in(v: Inventory, login: str, listed_in: str) -> Iterator[SettingsError]:
    """A problem for each of the hub's lists that still names a user being removed."""
    for variable in _HUB_LOGIN_VARIABLES:
        value = v.get(variable)
        if isinstance(value, str):
            where = variable if value == login else None
        elif isinstance(value, dict):
            where = f"{variable}.{login}" if login in value else None
        else:
            names = list(value or [])
            where = f"{variable}[{names.index(login)}]" if login in names else None
        if where:
            yield SettingsError(
                where,
                f"names {login!r}, who is in {listed_in} (to be removed); the hub would let "
                f"them log in again, so take {login!r} out of {variable} as well",
            )


# --- TLS -----------------------------------------------------------------------------


@rule
def tls(v: Inventory) -> Iterator[SettingsError]:
    mode = v["tls_mode"]
    if mode == "none" and not v["tls_allow_plain_http"]:
        yield SettingsError(
            "tls_mode",
            "is 'none', which serves passwords and tokens in clear text; use 'self-signed' "
            "or 'letsencrypt', or set tls_allow_plain_http: true if a proxy in front of the "
            "hub terminates TLS",
        )
    domains = v["tls_domains"] or []
    if not domains:
        yield SettingsError(
            "tls_domains", "is empty; list the hub's host names, like hub.example.org"
        )
    for index, domain in enumerate(domains):
        if not isinstance(domain, str) or not DOMAIN_PATTERN.match(domain):
            yield SettingsError(
                f"tls_domains[{index}]",
                f"{domain!r} is not a DNS name such as hub.example.org (no scheme, port or path)",
            )
    for index, address in enumerate(v["tls_self_signed_ip_addresses"] or []):
        yield from _check(
            p.ip_address,
            address,
            f"tls_self_signed_ip_addresses[{index}]",
            "host names go in tls_domains",
        )
    valid, renew = v["tls_self_signed_valid_days"], v["tls_self_signed_renew_days"]
    yield from _check(p.at_least_one, valid, "tls_self_signed_valid_days", "days")
    yield from _check(p.at_least_one, renew, "tls_self_signed_renew_days", "days")
    if type(valid) is int and valid > MAX_CERTIFICATE_DAYS:
        yield SettingsError(
            "tls_self_signed_valid_days",
            f"is {valid}; use at most {MAX_CERTIFICATE_DAYS} (Mozilla's TLS profiles, and "
            "browsers, refuse certificates that live longer); the play renews it before expiry",
        )
    if type(valid) is int and type(renew) is int and renew >= valid >= 1:
        yield SettingsError(
            "tls_self_signed_renew_days",
            f"({renew}) must be smaller than tls_self_signed_valid_days ({valid}), or every "
            "run would make a new certificate",
        )
    if mode == "letsencrypt":
        yield from _letsencrypt(v, domains)


def _letsencrypt(v: Inventory, domains: list) -> Iterator[SettingsError]:
    email = v["tls_letsencrypt_email"]
    if not isinstance(email, str) or not EMAIL_PATTERN.match(email):
        yield SettingsError(
            "tls_letsencrypt_email",
            f"is {email!r}; tls_mode letsencrypt needs a contact address such as admin@example.org",
        )
    for index, domain in enumerate(domains):
        if isinstance(domain, str) and (domain.startswith("*") or "." not in domain):
            yield SettingsError(
                f"tls_domains[{index}]",
                f"{domain!r}: tls_mode letsencrypt needs public DNS names, with no wildcard "
                "(the HTTP-01 challenge cannot prove a wildcard)",
            )
    directory = v["tls_letsencrypt_acme_directory_url"]
    if directory:
        yield from _check(
            p.url, directory, "tls_letsencrypt_acme_directory_url", ("https",), allow_path=True
        )
        if v["tls_letsencrypt_staging"]:
            yield SettingsError(
                "tls_letsencrypt_staging",
                "is true, and tls_letsencrypt_acme_directory_url is set too; staging is "
                "Let's Encrypt's own directory, so give one or the other",
            )
    bundle = v["tls_letsencrypt_acme_ca_bundle"]
    if bundle and PEM_CERTIFICATE not in bundle:
        yield SettingsError(
            "tls_letsencrypt_acme_ca_bundle",
            f"must hold PEM certificates ({PEM_CERTIFICATE}), or be empty",
        )
    if v["proxy_http_port"] != 80:
        yield SettingsError(
            "proxy_http_port",
            f"is {v['proxy_http_port']!r}, but ACME HTTP-01 challenges always arrive on port 80; "
            "set proxy_http_port: 80 for tls_mode letsencrypt",
        )


# --- CA certificates ----------------------------------------------------------------


@rule
def ca_certificates(v: Inventory) -> Iterator[SettingsError]:
    seen: set[str] = set()
    for name, entry in _entries(v, "ca_trust_certificates"):
        ca_name = entry.get("name")
        if not isinstance(ca_name, str) or not CA_NAME_PATTERN.match(ca_name):
            yield SettingsError(
                f"{name}.name",
                f"{ca_name!r} is not usable as a file name; use letters, digits, '_', '.', '-'",
            )
        elif ca_name in seen:
            yield SettingsError(f"{name}.name", f"{ca_name!r} is listed twice")
        seen.add(str(ca_name))
        state = entry.get("state", "present")
        if state not in ("present", "absent"):
            yield SettingsError(f"{name}.state", f"is {state!r}; choose present or absent")
        elif state == "present" and PEM_CERTIFICATE not in str(entry.get("certificate", "")):
            yield SettingsError(
                f"{name}.certificate",
                f"(CA {ca_name}) must hold a PEM certificate ({PEM_CERTIFICATE}), "
                "unless state is absent",
            )


# --- proxy and the hub's addresses ---------------------------------------------------


@rule
def proxy_addresses(v: Inventory) -> Iterator[SettingsError]:
    if v["proxy_api_ip"] not in ("127.0.0.1", "::1"):
        yield SettingsError(
            "proxy_api_ip",
            f"is {v['proxy_api_ip']!r}; whoever reaches the proxy's API can send any user's "
            "traffic anywhere, so keep it on 127.0.0.1 (or ::1)",
        )
    if v["proxy_public_ip"]:
        yield from _check(
            p.ip_address, v["proxy_public_ip"], "proxy_public_ip", "or '' for all of this host's"
        )
    # npm and configurable-http-proxy come from there (a site's mirror may
    # serve plain HTTP inside its network, as npm allows).
    yield from _check(
        p.url, v["proxy_npm_registry"], "proxy_npm_registry", ("https", "http"), allow_path=True
    )
    ports: dict[str, int] = {}
    target = v["proxy_default_target"]
    problems = list(_check(p.url, target, "proxy_default_target", ("http",), allow_path=False))
    yield from problems
    if not problems:
        # The hub listens there: none of the proxy's own ports may be the hub's.
        ports["proxy_default_target"] = p.url_port(target)
    for name in ("proxy_https_port", "proxy_http_port", "proxy_api_port"):
        problems = list(_check(p.port, v[name], name))
        yield from problems
        if not problems:
            ports[name] = v[name]
    taken: dict[int, str] = {}
    for name, number in ports.items():
        if number in taken:
            yield SettingsError(
                name,
                f"uses port {number}, which {taken[number]} uses too: two programs cannot "
                "listen on one port; give each of proxy_https_port, proxy_http_port, "
                "proxy_api_port and the hub (proxy_default_target) its own",
            )
        taken.setdefault(number, name)
    yield from _check(
        p.count, v["proxy_hsts_max_age"], "proxy_hsts_max_age", "in seconds, 0 to send no HSTS"
    )


@rule
def hub_addresses(v: Inventory) -> Iterator[SettingsError]:
    public_url = v["jupyterhub_public_url"]
    if not isinstance(public_url, str) or not re.match(r"^https?://[^/]+/$", public_url):
        yield SettingsError(
            "jupyterhub_public_url",
            f"is {public_url!r}; it must be https://HOST[:PORT]/ (ending in '/')",
        )
    elif public_url.startswith("http://") and not v["tls_allow_plain_http"]:
        yield SettingsError(
            "jupyterhub_public_url",
            f"is {public_url!r}, plain HTTP; use https://, or set tls_allow_plain_http: true "
            "if a proxy in front of the hub terminates TLS",
        )
    # A malformed URL is the settings rule's to name (proxy.api_url).
    api_url = v["jupyterhub_proxy_api_url"]
    listens = str(v["proxy_api_ip"]).strip("[]"), v["proxy_api_port"]
    if not list(_check(p.url, api_url, "", ("http",), allow_path=False)) and (
        p.url_address(api_url) != listens
    ):
        yield SettingsError(
            "jupyterhub_proxy_api_url",
            f"is {api_url}, but the proxy's API listens on proxy_api_ip:proxy_api_port "
            f"({v['proxy_api_ip']}:{v['proxy_api_port']}); leave it unset to follow them",
        )


# --- kernels -------------------------------------------------------------------------


@rule
def kernel_catalogue(v: Inventory) -> Iterator[SettingsError]:
    seen: set[str] = set()
    for name, kernel in _entries(v, "kernels_catalogue"):
        kernel_name = kernel.get("name")
        if not isinstance(kernel_name, str) or not KERNEL_NAME_PATTERN.match(kernel_name):
            yield SettingsError(
                f"{name}.name",
                f"{kernel_name!r} is not a kernel name: lowercase letters, digits, '.', '_', '-'",
            )
        elif kernel_name in seen:
            yield SettingsError(
                f"{name}.name", f"{kernel_name!r} is listed twice; each kernel needs its own name"
            )
        seen.add(str(kernel_name))
        if not isinstance(kernel.get("display_name"), str) or not kernel.get("display_name"):
            yield SettingsError(
                f"{name}.display_name", "is required: the name users see in the launcher"
            )
        kind = kernel.get("kind")
        if kind not in KERNEL_KINDS:
            yield SettingsError(
                f"{name}.kind", f"is {kind!r}; choose one of: {', '.join(KERNEL_KINDS)}"
            )
        packages = kernel.get("packages", [])
        if not isinstance(packages, list) or not all(isinstance(x, str) for x in packages):
            yield SettingsError(f"{name}.packages", "must be a list of package strings")
            continue
        if kind == "r":
            bad = [x for x in packages if not R_PACKAGE_PATTERN.match(x)]
            allowed = "Debian r-cran-* package names"
        else:
            bad = [x for x in packages if not PIP_REQUIREMENT_PATTERN.match(x)]
            allowed = "pip requirements such as numpy==2.3.1"
        if bad:
            yield SettingsError(f"{name}.packages", f"{bad[0]!r} is not one of the {allowed}")
        if kind == "python" and sum(bool(IPYKERNEL_PATTERN.match(x)) for x in packages) != 1:
            yield SettingsError(
                f"{name}.packages",
                "must name ipykernel exactly once (pinned, like ipykernel==7.4.0): it is what "
                "runs the notebook's code",
            )


# --- backups ---------------------------------------------------------------------


@rule
def backups(v: Inventory) -> Iterator[SettingsError]:
    if "backup_repository" not in v.variables:
        return  # the backup role is not part of this play
    repository = v["backup_repository"]
    configured = isinstance(repository, str) and repository != ""
    if not isinstance(repository, str) or (
        configured and not repository.startswith(("/", *RESTIC_BACKENDS))
    ):
        yield SettingsError(
            "backup_repository",
            f"is {repository!r}; give an absolute local path (a disk or a network mount) or a "
            f"restic location starting with one of {', '.join(RESTIC_BACKENDS)}, or '' for no "
            "backups",
        )
    elif repository.startswith("/"):
        # A repository inside what it backs up would back itself up.
        inside = [
            name
            for name in ("jupyterhub_config_dir", "jupyterhub_state_dir", "proxy_config_dir")
            if isinstance(v.get(name), str)
            and (repository.rstrip("/") + "/").startswith(v[name].rstrip("/") + "/")
        ]
        inside += [
            f"users_accounts ({account.get('name')}'s home)"
            for _, account in _entries(v, "users_accounts")
            if v.get("backup_include_homes")
            and repository.startswith(f"/home/{account.get('name')}/")
        ]
        for name in inside:
            yield SettingsError(
                "backup_repository",
                f"{repository} is inside {name}, which is backed up: put the repository "
                "elsewhere (another disk, a network mount, /var/backups/...)",
            )
    password = v.get("backup_password")
    if configured and (not isinstance(password, str) or len(password) < MIN_BACKUP_PASSWORD):
        yield SettingsError(
            "backup_password",
            f"must be at least {MIN_BACKUP_PASSWORD} characters with backup_repository set; "
            "generate one (openssl rand -base64 24), keep it in Ansible Vault as "
            "vault_backup_password, and a copy outside the hub host: nothing can be restored "
            "without it",
        )
    for name, value in (v.get("backup_environment") or {}).items():
        yield from _check(p.env_name, name, f"backup_environment.{name}")
        if name in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE"):
            yield SettingsError(
                f"backup_environment.{name}",
                "is set by the role from backup_repository and backup_password: remove it",
            )
        if not isinstance(value, str) or "\n" in value:
            yield SettingsError(f"backup_environment.{name}", "must be a one-line string")
    for name in ("backup_keep_daily", "backup_keep_weekly", "backup_keep_monthly"):
        yield from _check(p.count, v[name], name, "0 to keep none of that period")
    yield from _check(
        p.at_least_one, v["backup_local_copies_keep"], "backup_local_copies_keep", "copies"
    )
    for index, path in enumerate(v.get("backup_extra_paths") or []):
        yield from _check(p.absolute_path, path, f"backup_extra_paths[{index}]")
    schedule = v["backup_schedule"]
    fields = schedule.split() if isinstance(schedule, str) else []
    if schedule != "" and (
        len(fields) != 5 or not all(CRON_FIELD_PATTERN.match(f) for f in fields)
    ):
        yield SettingsError(
            "backup_schedule",
            f"is {schedule!r}; give cron's five fields (minute hour day month weekday), "
            "like '15 3 * * *' for 03:15 every day, or '' for no schedule",
        )
    elif schedule != "" and not configured:
        yield SettingsError(
            "backup_schedule",
            "is set but backup_repository is empty: set the repository (and backup_password) "
            "too, or leave the schedule empty",
        )
    snapshot = v["backup_restore_snapshot"]
    if not isinstance(snapshot, str) or not SNAPSHOT_PATTERN.match(snapshot):
        yield SettingsError(
            "backup_restore_snapshot",
            f"is {snapshot!r}; give latest or a snapshot ID that `restic snapshots` lists "
            "(8 to 64 hexadecimal digits)",
        )


# --- the hub: what the settings file cannot show -----------------------------------


@rule
def hub_login(v: Inventory) -> Iterator[SettingsError]:
    kind = v["jupyterhub_authenticator"]
    if kind in OAUTH_KINDS:
        if not v["jupyterhub_oauth_client_id"]:
            yield SettingsError(
                "jupyterhub_oauth_client_id",
                f"is empty; jupyterhub_authenticator {kind} needs the client registered at "
                f"the provider, with {v['jupyterhub_public_url']}hub/oauth_callback as its "
                "callback URL",
            )
        if len(v["jupyterhub_oauth_client_secret"] or "") < p.TOKEN_MIN_LENGTH:
            yield SettingsError(
                "jupyterhub_oauth_client_secret",
                f"is missing or shorter than {p.TOKEN_MIN_LENGTH} characters; put it in vault.yml "
                "as vault_jupyterhub_oauth_client_secret and set jupyterhub_oauth_client_secret: "
                '"{{ vault_jupyterhub_oauth_client_secret }}"',
            )
    if kind == "oidc" and not v["jupyterhub_oidc_issuer"]:
        missing = [
            name
            for name in (
                "jupyterhub_oidc_authorize_url",
                "jupyterhub_oidc_token_url",
                "jupyterhub_oidc_userdata_url",
            )
            if not v[name]
        ]
        if missing:
            yield SettingsError(
                "jupyterhub_oidc_issuer",
                "is empty, and so is " + ", ".join(missing) + "; give the issuer (an https:// URL "
                "whose .well-known/openid-configuration names the endpoints), or all three URLs",
            )
    elif kind == "oidc":
        yield from _check(
            p.url,
            v["jupyterhub_oidc_issuer"],
            "jupyterhub_oidc_issuer",
            ("https",),
            allow_path=True,
        )
    if kind == "ldap":
        templates = v["jupyterhub_ldap_bind_dn_templates"] or []
        if bool(templates) == bool(v["jupyterhub_ldap_user_search_base"]):
            yield SettingsError(
                "jupyterhub_ldap_bind_dn_templates",
                "and jupyterhub_ldap_user_search_base: give exactly one (templates with "
                "{username}, like uid={username},ou=people,dc=example,dc=org, or the search base)",
            )
        if v["jupyterhub_ldap_search_bind_dn"] and (
            len(v["jupyterhub_ldap_search_bind_password"] or "") < p.TOKEN_MIN_LENGTH
        ):
            yield SettingsError(
                "jupyterhub_ldap_search_bind_password",
                f"is missing or shorter than {p.TOKEN_MIN_LENGTH} characters, and "
                "jupyterhub_ldap_search_bind_dn is set; put it in vault.yml as "
                "vault_jupyterhub_ldap_search_bind_password",
            )
        port = v["jupyterhub_ldap_server_port"]
        if port != 0:
            yield from _check(p.port, port, "jupyterhub_ldap_server_port")
    if v["jupyterhub_password_hashes"] and kind != "hashed":
        yield SettingsError(
            "jupyterhub_password_hashes",
            f"is set, but jupyterhub_authenticator is {kind!r}, which ignores it; remove the "
            "hashes or use jupyterhub_authenticator: hashed",
        )
    initial_admin = v["jupyterhub_initial_admin"]
    if initial_admin:
        yield from _check(p.check_username, initial_admin, "jupyterhub_initial_admin")
        if kind != "hashed" or initial_admin not in (v["jupyterhub_admin_users"] or []):
            yield SettingsError(
                "jupyterhub_initial_admin",
                f"{initial_admin!r} needs jupyterhub_authenticator: hashed (it is {kind!r}) and "
                "must be listed in jupyterhub_admin_users",
            )


@rule
def hub_spawner(v: Inventory) -> Iterator[SettingsError]:
    kind = v["jupyterhub_spawner_kind"]
    if kind == "systemd" and v.service_manager and v.service_manager != "systemd":
        yield SettingsError(
            "jupyterhub_spawner_kind",
            f"is 'systemd', but this host runs {v.service_manager!r}, not systemd, as its "
            "service manager; use jupyterhub_spawner_kind: local (or docker) here",
        )
    cpu_limit = v["jupyterhub_spawner_cpu_limit"]
    if type(cpu_limit) not in (int, float) or cpu_limit < 0:
        yield SettingsError(
            "jupyterhub_spawner_cpu_limit",
            f"must be a number of CPUs such as 1.5, or 0 for no limit, not {cpu_limit!r}",
        )
    yield from _check(
        p.count,
        v["jupyterhub_spawner_log_rotations"],
        "jupyterhub_spawner_log_rotations",
        "0 to keep no old logs",
    )
    images = v["jupyterhub_spawner_docker_images"] or []
    if kind != "docker" and images:
        yield SettingsError(
            "jupyterhub_spawner_docker_images",
            f"is set, but jupyterhub_spawner_kind is {kind!r}, which runs no containers; remove "
            "the images or use jupyterhub_spawner_kind: docker",
        )
    if kind != "docker":
        return
    offered = 0
    for name, image in _entries(v, "jupyterhub_spawner_docker_images"):
        yield from _check(p.image_reference, image.get("name"), f"{name}.name")
        offer = image.get("offer", True)
        if not isinstance(offer, bool):
            yield SettingsError(f"{name}.offer", f"must be true or false, not {offer!r}")
        offered += offer is True
        if not isinstance(image.get("containerfile", ""), str):
            yield SettingsError(f"{name}.containerfile", "must be the Containerfile's text")
    if offered == 0:
        yield SettingsError(
            "jupyterhub_spawner_docker_images",
            "offers no image; jupyterhub_spawner_kind docker needs at least one (each with a "
            "name, and a containerfile where nothing can be pulled); the first offered is the "
            "default",
        )


@rule
def hub_account(v: Inventory) -> Iterator[SettingsError]:
    """A hub that is not root: its own account, and only what it can do safely.

    The spawner kind and the form's git field are the settings rules'
    (``spawner.sudospawner``), which name these variables too.
    """
    account = v["jupyterhub_hub_user"]
    if account == "root" or not isinstance(account, str) or not SYSTEM_NAME_PATTERN.match(account):
        return  # root: today's hub; a malformed name: paths_versions_names says so
    others = {
        "proxy_user": v.get("proxy_user"),
        "users_group": v.get("users_group"),
        "users_admin_group": v.get("users_admin_group"),
    }
    logins = {entry.get("name") for _, entry in _entries(v, "users_accounts")}
    if account in RESERVED_ACCOUNTS or account in others.values():
        named = [name for name, value in others.items() if value == account]
        yield SettingsError(
            "jupyterhub_hub_user",
            f"{account!r} is "
            + (f"already {' and '.join(named)}" if named else "a system account of its own")
            + "; give the hub an account of its own, such as jupyterhub",
        )
    elif account in logins:
        yield SettingsError(
            "jupyterhub_hub_user",
            f"{account!r} is also an account in users_accounts; the hub's account must not "
            "be a user's (the hub would read that user's home, and sudo would run servers as "
            "it); give the hub an account of its own, such as jupyterhub",
        )
    if v["jupyterhub_authenticator"] == "pam":
        yield SettingsError(
            "jupyterhub_authenticator",
            f"is pam, and jupyterhub_hub_user is {account!r}, not root: PAM checks passwords "
            "in /etc/shadow and opens sessions as root, which the hub's account must not do "
            "(read access to every password hash is not least privilege); use hashed, ldap, "
            "github or oidc, or jupyterhub_hub_user: root",
        )
    culler_log = v.get("jupyterhub_idle_culler_log_file")
    if (
        v.get("jupyterhub_idle_culler_enabled")
        and isinstance(culler_log, str)
        and len(PurePosixPath(culler_log).parent.parts) < 4  # /, var, log and its own
    ):
        yield SettingsError(
            "jupyterhub_idle_culler_log_file",
            f"is {culler_log!r}; the directory of the idle culler's log becomes the account "
            f"{account!r}'s (jupyterhub_hub_user), as the culler rotates its log there, so it "
            "must be a directory of its own, like /var/log/jupyterhub/idle-culler.log",
        )


# --- slurm: the cluster the hub's jobs run on -----------------------------------------

SLURM_GROUPS = ("slurm_controllers", "slurm_nodes")
CLUSTER_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _slurm_partitions(v: Inventory) -> Iterator[SettingsError | tuple[str, int | None]]:
    """The cluster's partitions with their longest walltime (None: no limit known).

    Yields problems of the variables that describe them along the way.
    """
    if v.get("slurm_cluster") == "existing":
        yield from slurm.conf_partition_limits(v.get("slurm_conf") or "").items()
        return
    nodes = v.groups.get("slurm_nodes", [])
    seen: set[str] = set()
    for name, partition in _entries(v, "slurm_partitions"):
        label = partition.get("name")
        if not isinstance(label, str) or not slurm.PARTITION_PATTERN.match(label):
            yield SettingsError(
                f"{name}.name", f"{label!r} is not a partition name (letters, digits, _ . -)"
            )
            continue
        if label in seen:
            yield SettingsError(f"{name}.name", f"{label!r} is listed twice; merge the entries")
        seen.add(label)
        members = partition.get("nodes", nodes)
        strangers = sorted(set(members or []) - set(nodes)) if isinstance(members, list) else []
        # With no node at all, the cluster's own rule says so once.
        if nodes and (not isinstance(members, list) or not members or strangers):
            yield SettingsError(
                f"{name}.nodes",
                f"must list hosts of the slurm_nodes group ({', '.join(nodes) or 'none'}), not "
                f"{', '.join(strangers) if strangers else repr(members)}; leave it out for all",
            )
        seconds = None
        if partition.get("max_time") is not None:
            try:
                seconds = slurm.walltime_seconds(partition["max_time"], f"{name}.max_time")
            except SettingsError as e:
                yield e
        yield label, seconds


@rule
def slurm_cluster(v: Inventory) -> Iterator[SettingsError]:
    """The slurm kind's cluster: its hosts, its configuration, the partitions offered."""
    kind = v["jupyterhub_spawner_kind"]
    hosts = {group: v.groups.get(group, []) for group in SLURM_GROUPS}
    if kind != "slurm":
        for group, members in hosts.items():
            if members:
                yield SettingsError(
                    "jupyterhub_spawner_kind",
                    f"is {kind!r}, but the inventory's group {group} has hosts "
                    f"({', '.join(members)}) for a Slurm cluster the hub would not use; use "
                    "jupyterhub_spawner_kind: slurm, or empty the group",
                )
                return
        return
    cluster = v.get("slurm_cluster", "bundled")
    if cluster == "existing":
        if not (v.get("slurm_conf") or "").strip():
            yield SettingsError(
                "slurm_conf",
                "is empty, and jupyterhub_spawner_kind is slurm with slurm_cluster: existing; "
                "the hub needs the cluster's slurm.conf (its text, like "
                "\"{{ lookup('ansible.builtin.file', 'slurm.conf') }}\"), or use "
                "slurm_cluster: bundled with hosts in slurm_controllers and slurm_nodes",
            )
        key = v.get("slurm_munge_key") or ""
        try:
            decoded = base64.b64decode(key, validate=True) if key else b""
        except (ValueError, TypeError):
            decoded = b""
        if len(decoded) < 32:  # munged refuses shorter keys
            yield SettingsError(
                "slurm_munge_key",
                "must be the cluster's munge key, base64-encoded (`base64 -w0 "
                "/etc/munge/munge.key` on a cluster host; at least 32 bytes), kept in "
                "Ansible Vault",
            )
        if hosts["slurm_controllers"]:
            yield SettingsError(
                "slurm_controllers",
                f"has hosts ({', '.join(hosts['slurm_controllers'])}), but slurm_cluster is "
                "existing: the site's controller is not this bundle's to set up; empty the "
                "group, or use slurm_cluster: bundled",
            )
    elif cluster == "bundled":
        name = v.get("slurm_cluster_name")
        if not isinstance(name, str) or not CLUSTER_NAME_PATTERN.match(name):
            yield SettingsError(
                "slurm_cluster_name",
                f"is {name!r}; Slurm takes a cluster name of lowercase letters, digits, '_' "
                "and '-' (at most 40, starting with a letter or digit)",
            )
        yield from _check(
            p.count,
            v.get("slurm_node_reserved_memory_mb"),
            "slurm_node_reserved_memory_mb",
            "0 to let jobs ask for all of a node's memory",
        )
        if len(hosts["slurm_controllers"]) != 1 or not hosts["slurm_nodes"]:
            yield SettingsError(
                "jupyterhub_spawner_kind",
                "is slurm with slurm_cluster: bundled, which needs one host in the group "
                f"slurm_controllers (it has {len(hosts['slurm_controllers'])}) and at least one "
                f"in slurm_nodes (it has {len(hosts['slurm_nodes'])}); add them to the "
                "inventory, or use slurm_cluster: existing with slurm_conf and slurm_munge_key",
            )
    else:
        return  # the argument specs name the choices
    known: dict[str, int | None] = {}
    for item in _slurm_partitions(v):
        if isinstance(item, SettingsError):
            yield item
        else:
            known[item[0]] = item[1]
    where = "slurm_conf" if cluster == "existing" else "slurm_partitions"
    offered = v["jupyterhub_spawner_slurm_partitions"] or []
    try:
        longest = slurm.walltime_seconds(
            v["jupyterhub_spawner_slurm_walltime_max"], "jupyterhub_spawner_slurm_walltime_max"
        )
    except SettingsError:
        longest = None  # the settings rules name it
    for index, partition in enumerate(offered if isinstance(offered, list) else []):
        if partition not in known:
            yield SettingsError(
                f"jupyterhub_spawner_slurm_partitions[{index}]",
                f"{partition!r} is not a partition of the cluster ({where} has "
                f"{', '.join(known) or 'none'}); offer one of those, or add it to {where}",
            )
        elif longest is not None and known[partition] is not None and longest > known[partition]:
            yield SettingsError(
                "jupyterhub_spawner_slurm_walltime_max",
                f"is {slurm.format_walltime(longest)}, longer than partition {partition!r} "
                f"lets a job run ({slurm.format_walltime(known[partition])}, its max_time in "
                f"{where}): such a job would wait forever; lower it",
            )


def _settings_for_controller(settings: Mapping[str, Any], v: Inventory) -> dict[str, Any]:
    """The settings as the host will have them once the play's own steps have run."""
    document = copy.deepcopy(dict(settings))
    authenticator = document.get("authenticator")
    if not isinstance(authenticator, dict):
        return document
    initial_admin = v.get("jupyterhub_initial_admin")
    hashes = authenticator.get("password_hashes")
    if initial_admin and isinstance(hashes, dict) and initial_admin not in hashes:
        # The play makes the initial admin's password and hash on the host; a
        # hash of a random password nobody keeps stands in for it here.
        hashes[initial_admin] = hash_password(secrets.token_hex(16))
    if authenticator.get("kind") == "oidc" and v.get("jupyterhub_oidc_issuer"):
        # The play reads the endpoints from the issuer's discovery document (and
        # checks it names the issuer); until then the issuer stands in.
        for key in ("authorize_url", "token_url", "userdata_url"):
            if not authenticator.get(key):
                authenticator[key] = v["jupyterhub_oidc_issuer"]
    return document


def check_inventory(
    variables: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    *,
    service_manager: str = "",
    types: Mapping[str, str] | None = None,
    groups: Mapping[str, list[str]] | None = None,
) -> list[SettingsError]:
    """Every problem of an inventory, one per variable, in the order found.

    Args:
        variables: Every role variable, rendered (name -> value).
        settings: The hub settings document the jupyterhub role would write, or
            None to skip the settings rules.
        service_manager: The host's service manager (Ansible's
            ``ansible_facts.service_mgr``), for the rules that depend on it.
        types: Each variable's type in the roles' argument specs (``path``
            variables must be absolute).
        groups: The inventory's groups (name -> hosts), for the rules on which
            hosts play which part (Slurm's controllers and nodes).

    Returns:
        The problems, each a :class:`SettingsError` whose ``setting`` is the
        inventory variable (``name[index].key`` inside lists); empty when the
        inventory is usable.
    """
    inventory = Inventory(variables, service_manager, types, groups)
    problems: list[SettingsError] = []
    for check in RULES:
        try:
            problems.extend(check(inventory))
        except (KeyError, TypeError, AttributeError) as e:
            problems.append(
                SettingsError(check.__name__, f"could not be checked ({type(e).__name__}: {e})")
            )
    if settings is not None:
        try:
            parse_settings(_settings_for_controller(settings, inventory), on_host=False)
        except SettingsError as e:
            problems.append(_in_inventory_terms(e, settings))
    # One message per variable: the first rule that found it says the most.
    first: dict[str, SettingsError] = {}
    for problem in problems:
        first.setdefault(problem.setting, problem)
    return list(first.values())


def format_problem(problem: SettingsError) -> str:
    """One line for the operator: the variable, what is wrong and allowed, the fix."""
    return (
        f"{problem.setting}: {problem.problem}. Fix {problem.setting.split('[')[0].split('.')[0]} "
        "in the inventory (group_vars, host_vars or -e) and run again."
    )
