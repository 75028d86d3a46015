"""The spawn page's options form: what users may ask of their server, and its checks.

The form offers only what the settings enable (:class:`FormSettings`):

- ``env``: environment variables, one ``KEY=VALUE`` a line;
- ``args``: extra server arguments, one ``--Name=value`` (or ``--flag``) a line,
  each name from an allow list;
- ``image``: a container image from a list (docker spawner only);
- ``git_url``: an https git repository, from an allowed host, cloned into the
  user's home with its ``requirements.txt`` installed into a per-user environment.
- ``partition``, ``walltime``, ``memory``, ``cpus``: the Slurm job a server runs
  in (slurm spawner only), each within the bounds of :class:`JobBounds`.

Every value is checked here, on the hub side, by :func:`parse_form` (form posts)
and :func:`check_user_options` (the same rules for ``user_options`` that arrive
through the REST API). A bad value raises :class:`FormError`, whose message the
spawn page shows; nothing is started.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# One rule for variable names, shared with the settings (and the inventory check):
# JUPYTERHUB_* and JPY_* are never overridable, whatever the settings say.
from .settings.primitives import ENV_NAME_PATTERN, RESERVED_ENV_PREFIXES, SettingsError
from .settings.slurm import (
    MEMORY_HINT,
    WALLTIME_HINT,
    JobBounds,
    format_walltime,
    memory_mib,
    walltime_seconds,
)

__all__ = [
    "ENV_NAME_PATTERN",
    "FormError",
    "FormSettings",
    "JobBounds",
    "check_user_options",
    "parse_form",
    "render_form",
    "repo_name",
]

# Names the spawners or this bundle set; overridable only when the settings list them.
PROTECTED_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PYTHONPATH",
        "JUPYTER_IMAGE",
        "JUPYTER_IMAGE_SPEC",
        "MEM_LIMIT",
        "MEM_GUARANTEE",
        "CPU_LIMIT",
        "CPU_GUARANTEE",
    }
)
ARG_NAME_PATTERN = re.compile(r"^--[A-Za-z][A-Za-z0-9_.-]*$")
REPO_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~/-]+$")
REPO_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_LINES = 50
MAX_VALUE_LENGTH = 4096
MAX_URL_LENGTH = 2048


class FormError(ValueError):
    """A form value the hub refuses; ``str()`` is the message the spawn page shows.

    Attributes:
        field: The form field at fault (``env``, ``args``, ``image``, ``git_url``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FormSettings:
    """What the options form offers, from the settings file.

    Attributes:
        environment: Offer the environment variables field.
        environment_overridable: Protected names (PATH...) users may still set.
        fixed_environment: Names the operator set for every server; not overridable.
        args: Allowed argument names (``--ServerApp.terminals_enabled``); empty: no field.
        images: Images users choose from (docker only); fewer than two: no field.
        default_image: The image preselected (and used when none is chosen).
        git_hosts: Hosts repositories may come from; empty: no field.
        job: The Slurm job's fields and their bounds (slurm spawner); None: no fields.
    """

    environment: bool = False
    environment_overridable: frozenset[str] = frozenset()
    fixed_environment: frozenset[str] = frozenset()
    args: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    default_image: str = ""
    git_hosts: tuple[str, ...] = ()
    job: JobBounds | None = None

    @property
    def enabled(self) -> bool:
        """Whether the form has any field at all (no form: JupyterHub spawns at once)."""
        return bool(
            self.environment
            or self.args
            or len(self.images) > 1
            or self.git_hosts
            or self.job is not None
        )


# --- checks -----------------------------------------------------------------------


def _lines(text: str, field: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) > MAX_LINES:
        raise FormError(field, f"at most {MAX_LINES} lines are accepted, not {len(lines)}")
    return lines


def _check_value(value: str, field: str, what: str) -> str:
    if "\x00" in value or "\n" in value or "\r" in value:
        raise FormError(field, f"{what}: the value must be one line of text")
    if len(value) > MAX_VALUE_LENGTH:
        raise FormError(field, f"{what}: the value is longer than {MAX_VALUE_LENGTH} characters")
    return value


def check_env_name(name: str, settings: FormSettings) -> str:
    """Check that users may set the environment variable ``name``.

    Raises:
        FormError: If the name is invalid, owned by JupyterHub or the spawner, or
            set by the operator.
    """
    if not ENV_NAME_PATTERN.match(name):
        raise FormError(
            "env",
            f"{name!r} is not a valid variable name; use letters, digits and '_', "
            "not starting with a digit",
        )
    if name.startswith(RESERVED_ENV_PREFIXES):
        raise FormError(
            "env", f"{name} belongs to JupyterHub (JUPYTERHUB_* and JPY_* cannot be set)"
        )
    if name in settings.fixed_environment:
        raise FormError("env", f"{name} is set by the hub's administrator and cannot be changed")
    if name in PROTECTED_ENV_NAMES and name not in settings.environment_overridable:
        raise FormError("env", f"{name} is set by the spawner and cannot be overridden here")
    return name


def _check_environment(value: Any, settings: FormSettings) -> dict[str, str]:
    if not settings.environment:
        raise FormError("env", "setting environment variables is not enabled on this hub")
    if not isinstance(value, Mapping):
        raise FormError("env", "must be an object of variable name to value")
    if len(value) > MAX_LINES:
        raise FormError("env", f"at most {MAX_LINES} variables are accepted")
    checked = {}
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise FormError("env", "names and values must be strings")
        checked[check_env_name(name, settings)] = _check_value(text, "env", name)
    return checked


def parse_env_lines(text: str, settings: FormSettings) -> dict[str, str]:
    """Turn ``KEY=VALUE`` lines into variables (blank lines and ``#`` comments skipped).

    Raises:
        FormError: For a line without ``=``, a name given twice, or any name or
            value :func:`check_env_name` refuses.
    """
    env: dict[str, str] = {}
    for number, line in enumerate(_lines(text, "env"), start=1):
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise FormError("env", f"line {number} ({line!r}) is not KEY=VALUE")
        if name in env:
            raise FormError("env", f"{name} is given twice")
        env[name] = value
    return _check_environment(env, settings)


def check_arg(arg: str, settings: FormSettings) -> str:
    """Check one server argument against the allow list.

    Raises:
        FormError: If it is not ``--Name`` or ``--Name=value``, or Name is not allowed.
    """
    if not isinstance(arg, str):
        raise FormError("args", "arguments must be strings")
    name, _, _ = arg.partition("=")
    if not ARG_NAME_PATTERN.match(name):
        raise FormError("args", f"{arg!r} is not an argument of the form --Name=value")
    if name not in settings.args:
        allowed = ", ".join(settings.args) or "none"
        raise FormError("args", f"{name} is not an allowed argument; allowed: {allowed}")
    return _check_value(arg, "args", name)


def _check_args(value: Any, settings: FormSettings) -> list[str]:
    if not settings.args:
        raise FormError("args", "extra server arguments are not enabled on this hub")
    if not isinstance(value, list):
        raise FormError("args", "must be a list of arguments")
    if len(value) > MAX_LINES:
        raise FormError("args", f"at most {MAX_LINES} arguments are accepted")
    return [check_arg(arg, settings) for arg in value]


def _check_image(value: Any, settings: FormSettings) -> str:
    if len(settings.images) < 2:
        raise FormError("image", "choosing an image is not enabled on this hub")
    if value not in settings.images:
        raise FormError(
            "image", f"{value!r} is not one of the offered images: {', '.join(settings.images)}"
        )
    return value


def repo_name(url: str) -> str:
    """The directory a repository is cloned into: its URL's last segment, without .git."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".git")


def check_git_url(value: Any, settings: FormSettings) -> str:
    """Check a repository URL: https, an allowed host, no credentials, a plain path.

    Raises:
        FormError: Saying which rule the URL breaks.
    """
    if not settings.git_hosts:
        raise FormError("git_url", "cloning a repository is not enabled on this hub")
    if not isinstance(value, str) or not value:
        raise FormError("git_url", "must be a repository URL")
    if len(value) > MAX_URL_LENGTH or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise FormError("git_url", "must be one URL without spaces")
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise FormError("git_url", f"must start with https:// (got {value!r})")
    if parts.username is not None or parts.password is not None:
        raise FormError("git_url", "must not contain a user name or password")
    try:
        parts.port  # noqa: B018 -- the property raises ValueError on a bad port
    except ValueError:
        raise FormError("git_url", "has an invalid port number") from None
    host = (parts.hostname or "").lower()
    if host not in settings.git_hosts:
        raise FormError(
            "git_url",
            f"host {host or '(none)'!r} is not allowed; allowed hosts: "
            f"{', '.join(settings.git_hosts)}",
        )
    if parts.query or parts.fragment:
        raise FormError("git_url", "must not have a query string or fragment")
    if not REPO_PATH_PATTERN.match(parts.path) or "/../" in f"{parts.path}/":
        raise FormError("git_url", "must name a repository path, like https://host/owner/repo")
    name = repo_name(value)
    if not REPO_NAME_PATTERN.match(name):
        raise FormError("git_url", f"cannot make a directory name of {name!r}")
    return value


def _job(field: str, settings: FormSettings) -> JobBounds:
    if settings.job is None:
        raise FormError(field, "this hub does not run servers as batch jobs")
    return settings.job


def _check_partition(value: Any, settings: FormSettings) -> str:
    job = _job("partition", settings)
    if value not in job.partitions:
        raise FormError(
            "partition",
            f"{value!r} is not one of the offered partitions: {', '.join(job.partitions)}",
        )
    return value


def _check_walltime(value: Any, settings: FormSettings) -> str:
    job = _job("walltime", settings)
    try:
        seconds = walltime_seconds(value, "walltime")
    except SettingsError:
        raise FormError("walltime", f"{value!r} is not a walltime; use {WALLTIME_HINT}") from None
    if seconds > job.walltime_max:
        raise FormError(
            "walltime",
            f"{value} is longer than this hub allows ({format_walltime(job.walltime_max)})",
        )
    return format_walltime(seconds)


def _check_memory(value: Any, settings: FormSettings) -> str:
    job = _job("memory", settings)
    try:
        mib = memory_mib(value, "memory")
    except SettingsError:
        raise FormError("memory", f"{value!r} is not a memory size; use {MEMORY_HINT}") from None
    if mib > job.memory_max:
        raise FormError("memory", f"{value} is more than this hub allows ({job.memory_max}M)")
    return f"{mib}M"


def _check_cpus(value: Any, settings: FormSettings) -> int:
    job = _job("cpus", settings)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 1 <= value <= job.cpus_max:
        raise FormError(
            "cpus", f"must be a whole number of CPUs from 1 to {job.cpus_max}, not {value!r}"
        )
    return value


_CHECKS = {
    "env": _check_environment,
    "args": _check_args,
    "image": _check_image,
    "git_url": check_git_url,
    "partition": _check_partition,
    "walltime": _check_walltime,
    "memory": _check_memory,
    "cpus": _check_cpus,
}


def check_user_options(options: Any, settings: FormSettings) -> dict[str, Any]:
    """Check ``user_options`` however they arrived (form, REST API, a previous spawn).

    Args:
        options: The options, a dict with any of ``env``, ``args``, ``image``, ``git_url``.
        settings: What the form offers.

    Returns:
        The options, checked; empty values dropped.

    Raises:
        FormError: For an unknown key or any value the rules refuse.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise FormError("options", "user options must be an object")
    unknown = sorted(set(options) - set(_CHECKS))
    if unknown:
        raise FormError(unknown[0], f"unknown option {unknown[0]!r}; known: {', '.join(_CHECKS)}")
    return {
        key: _CHECKS[key](value, settings)
        for key, value in options.items()
        if value not in (None, "", [], {})
    }


def _first(formdata: Mapping[str, list[str]], key: str) -> str:
    values = formdata.get(key) or [""]
    return values[0] if isinstance(values, list) else str(values)


def parse_form(formdata: Mapping[str, list[str]], settings: FormSettings) -> dict[str, Any]:
    """Turn the spawn form's fields into checked ``user_options``.

    Args:
        formdata: What JupyterHub passes to ``options_from_form``: name -> list of values.
        settings: What the form offers.

    Returns:
        ``user_options`` with only the fields the user filled in.

    Raises:
        FormError: With the message the spawn page shows.
    """
    options: dict[str, Any] = {}
    env_text = _first(formdata, "env")
    if env_text.strip():
        options["env"] = parse_env_lines(env_text, settings)
    args_text = _first(formdata, "args")
    if args_text.strip():
        options["args"] = _lines(args_text, "args")
    image = _first(formdata, "image").strip()
    if image and image != settings.default_image:
        options["image"] = image
    git_url = _first(formdata, "git_url").strip()
    if git_url:
        options["git_url"] = git_url
    for field in ("partition", "walltime", "memory", "cpus"):
        value = _first(formdata, field).strip()
        if value:
            options[field] = value
    return check_user_options(options, settings)


# --- the form -----------------------------------------------------------------


def _options(values: Iterable[str], selected: str) -> str:
    return "".join(
        f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>'
        f"{html.escape(v)}</option>"
        for v in values
    )


def render_form(settings: FormSettings) -> str:
    """The form's HTML: one field per enabled option, empty when none is enabled."""
    parts = []
    if len(settings.images) > 1:
        parts.append(
            '<div class="form-group mb-3"><label for="hub-app-image" class="form-label">'
            "Image</label>"
            '<select id="hub-app-image" class="form-select form-control" name="image">'
            f"{_options(settings.images, settings.default_image)}</select></div>"
        )
    if settings.job is not None:
        parts.append(_job_fields(settings.job))
    if settings.environment:
        parts.append(
            '<div class="form-group mb-3"><label for="hub-app-env" class="form-label">'
            "Environment variables, one <code>KEY=VALUE</code> a line</label>"
            '<textarea id="hub-app-env" class="form-control" name="env" rows="3" '
            'placeholder="MY_SETTING=value"></textarea></div>'
        )
    if settings.args:
        allowed = ", ".join(f"<code>{html.escape(a)}</code>" for a in settings.args)
        parts.append(
            '<div class="form-group mb-3"><label for="hub-app-args" class="form-label">'
            f"Extra server arguments, one a line (allowed: {allowed})</label>"
            '<textarea id="hub-app-args" class="form-control" name="args" rows="2" '
            'placeholder="--Name=value"></textarea></div>'
        )
    if settings.git_hosts:
        hosts = ", ".join(html.escape(h) for h in settings.git_hosts)
        parts.append(
            '<div class="form-group mb-3"><label for="hub-app-git" class="form-label">'
            f"Git repository to clone into your home (https, from {hosts}); "
            "its requirements.txt is installed for your kernels</label>"
            '<input id="hub-app-git" class="form-control" type="url" name="git_url" '
            'placeholder="https://host/owner/repo.git"></div>'
        )
    return "\n".join(parts)


def _job_fields(job: JobBounds) -> str:
    """The Slurm job's fields, prefilled with the defaults, the bounds in the labels."""
    walltime_max = format_walltime(job.walltime_max)
    return (
        '<div class="form-group mb-3"><label for="hub-app-partition" class="form-label">'
        "Partition</label>"
        '<select id="hub-app-partition" class="form-select form-control" name="partition">'
        f"{_options(job.partitions, job.partitions[0])}</select></div>"
        '<div class="form-group mb-3"><label for="hub-app-walltime" class="form-label">'
        f"Walltime, HH:MM:SS (at most {walltime_max}); the server stops when it is up</label>"
        '<input id="hub-app-walltime" class="form-control" type="text" name="walltime" '
        f'value="{format_walltime(job.walltime)}" required></div>'
        '<div class="form-group mb-3"><label for="hub-app-memory" class="form-label">'
        f"Memory, like 2G or 512M (at most {job.memory_max}M)</label>"
        '<input id="hub-app-memory" class="form-control" type="text" name="memory" '
        f'value="{job.memory}M" required></div>'
        '<div class="form-group mb-3"><label for="hub-app-cpus" class="form-label">'
        f"CPUs (1 to {job.cpus_max})</label>"
        '<input id="hub-app-cpus" class="form-control" type="number" name="cpus" '
        f'min="1" max="{job.cpus_max}" value="{job.cpus}" required></div>'
    )
