"""Check the whole inventory with hub_app's rules, on the controller, before any change.

Every rule lives in hub_app (hub_app/src/hub_app/inventory.py and the settings
package under it); this plugin only feeds it. It imports hub_app from this
checkout, so the rules the play applies are exactly the ones its unit tests
cover, and the controller needs nothing installed for them (hub_app's rules use
the standard library only).

Options:
  roles: the roles whose variables are checked; each one's
    meta/argument_specs.yml lists them (their values are rendered here, as the
    roles would render them).
  settings_variable: the variable holding the hub settings document the
    jupyterhub role writes (its rules name the variable each setting came from).

It never changes anything and runs in check mode too. On a bad inventory it
fails with one line per problem: the variable, what is allowed, how to fix it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

PROJECT = Path(__file__).resolve().parents[2]
HUB_APP_SOURCE = PROJECT / "hub_app" / "src"


def _hub_app_inventory():
    if str(HUB_APP_SOURCE) not in sys.path:
        sys.path.insert(0, str(HUB_APP_SOURCE))
    # Imported here, after the path: only from this checkout.
    from hub_app import inventory

    return inventory


def _plain(value):
    """Plain JSON types: Ansible's tagged ints and strings are subclasses, not ``int``."""
    return json.loads(json.dumps(value, default=str))


def _role_variables(role: str) -> dict[str, str]:
    """The role's variables and their types, from its argument specs."""
    spec_file = PROJECT / "roles" / role / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))["argument_specs"]
    options = specs["main"].get("options", {})
    return {name: str(option.get("type", "str")) for name, option in options.items()}


class ActionModule(ActionBase):
    """hub_app_check: refuse a bad inventory, naming each variable at fault."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("roles", "settings_variable"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        result["changed"] = False
        roles = self._task.args.get("roles") or []
        settings_variable = self._task.args.get("settings_variable")

        types = {name: kind for role in roles for name, kind in _role_variables(role).items()}
        raw = {name: task_vars[name] for name in types if name in task_vars}
        try:
            variables = _plain(self._templar.template(raw))
        except AnsibleError as e:
            result["failed"] = True
            result["msg"] = f"A variable of {', '.join(roles)} cannot be rendered: {e}"
            return result
        settings = None
        if settings_variable:
            try:
                settings = _plain(self._templar.template(task_vars[settings_variable]))
            except (AnsibleError, KeyError, TypeError, ValueError) as e:
                result["failed"] = True
                result["msg"] = (
                    f"The hub settings ({settings_variable}) cannot be rendered from the "
                    f"inventory: {e}. Check the jupyterhub_* variable the error names."
                )
                return result
        service_manager = (task_vars.get("ansible_facts") or {}).get("service_mgr", "")
        # The inventory's groups (which hosts are Slurm's controllers and nodes).
        groups = {
            str(name): [str(host) for host in hosts]
            for name, hosts in (task_vars.get("groups") or {}).items()
        }

        inventory = _hub_app_inventory()
        problems = inventory.check_inventory(
            variables, settings, service_manager=str(service_manager), types=types, groups=groups
        )
        result["checked_variables"] = len(variables)
        if problems:
            result["failed"] = True
            lines = [inventory.format_problem(problem) for problem in problems]
            result["problems"] = lines
            result["msg"] = (
                f"The inventory is refused ({len(lines)} problem"
                f"{'s' if len(lines) > 1 else ''}); nothing on the host was changed. "
                + " | ".join(lines)
            )
        else:
            result["msg"] = f"{len(variables)} variables of {len(roles)} roles pass hub_app's rules"
        return result
