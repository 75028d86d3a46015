"""The settings file's ``spawner`` section: which spawner, its limits and the options form.

Each spawner kind is one entry in :data:`SPAWNER_KINDS`. Errors are
:class:`SettingsError` naming the dotted setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import primitives as p
from .primitives import SettingsError
from .slurm import SlurmSettings, parse_slurm

__all__ = ["SPAWNER_KINDS", "FormOptions", "SpawnerSettings", "apply_spawner", "parse_spawner"]

# kind -> the spawner class JupyterHub loads.
SPAWNER_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "local": "hub_app.spawners.LoggingLocalProcessSpawner",
        "systemd": "hub_app.spawners.HubSystemdSpawner",
        "docker": "hub_app.spawners.HubDockerSpawner",
        "slurm": "hub_app.spawners.HubSlurmSpawner",
    }
)
# The local kind of a hub that is not root (spawner.sudospawner set).
SUDO_SPAWNER_CLASS = "hub_app.spawners.LoggingSudoSpawner"
MEM_LIMIT_PATTERN = re.compile(r"^[1-9][0-9]*[KMGT]?$")
ARG_NAME_PATTERN = re.compile(r"^--[A-Za-z][A-Za-z0-9_.-]*$")
HOST_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
VOLUME_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.{}-]*$")
PULL_POLICIES = ("ifnotpresent", "always", "never", "skip")
# Where a container finds the hub host's CA bundle (spawner.docker.ca_bundle).
CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class FormOptions:
    """``spawner.options_form``: which fields the spawn page offers."""

    environment: bool = False
    environment_overridable: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    git_hosts: tuple[str, ...] = ()
    git_python: str = "python3"


@dataclass(frozen=True)
class DockerSettings:
    """``spawner.docker``: the Docker API, the images and the users' volumes."""

    api_url: str
    images: tuple[str, ...]
    cmd: tuple[str, ...]
    home: str
    volume_name: str
    pull_policy: str
    ca_bundle: str = ""


@dataclass(frozen=True)
class SpawnerSettings:
    """The validated ``spawner`` section."""

    cmd: tuple[str, ...]
    default_url: str
    notebook_dir: str
    start_timeout: int
    http_timeout: int
    environment: Mapping[str, str]
    log_dir: str
    kind: str = "local"
    mem_limit: str | None = None
    cpu_limit: float | None = None
    concurrent_spawn_limit: int = 0
    active_server_limit: int = 0
    poll_interval: int = 30
    start_slots: int = 0
    queue_timeout: int = 600
    nice: int = 10
    options_form: FormOptions = field(default_factory=FormOptions)
    docker: DockerSettings | None = None
    slurm: SlurmSettings | None = None
    # sudospawner's mediator, for a hub that is not root; "": the hub is root.
    sudospawner: str = ""


def _parse_form(data: Any) -> FormOptions:
    path = "spawner.options_form"
    section = p.section(
        data,
        path,
        (),
        ("environment", "environment_overridable", "args", "git_hosts", "git_python"),
    )
    overridable = p.string_list(
        section.get("environment_overridable", []), f"{path}.environment_overridable"
    )
    for index, name in enumerate(overridable):
        p.env_name(name, f"{path}.environment_overridable[{index}]")
    return FormOptions(
        environment=p.boolean(section.get("environment", False), f"{path}.environment"),
        environment_overridable=overridable,
        args=p.pattern_list(
            section.get("args", []), f"{path}.args", ARG_NAME_PATTERN, "argument name"
        ),
        git_hosts=p.pattern_list(
            section.get("git_hosts", []), f"{path}.git_hosts", HOST_PATTERN, "host name"
        ),
        git_python=p.string(section.get("git_python", "python3"), f"{path}.git_python"),
    )


def _command(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SettingsError(path, "must be a non-empty list of strings")
    return tuple(p.string(arg, f"{path}[{index}]") for index, arg in enumerate(value))


def _parse_docker(data: Any) -> DockerSettings:
    path = "spawner.docker"
    section = p.section(
        data,
        path,
        ("api_url", "images"),
        ("cmd", "home", "volume_name", "pull_policy", "ca_bundle"),
    )
    api_url = p.string(section["api_url"], f"{path}.api_url")
    if not api_url.startswith(("unix:///", "tcp://", "http://", "https://")):
        raise SettingsError(
            f"{path}.api_url",
            f"must be unix:///path/to.sock or tcp://host:port, not {api_url!r}",
        )
    images = p.string_list(section["images"], f"{path}.images")
    for index, image in enumerate(images):
        p.image_reference(image, f"{path}.images[{index}]")
    if not images:
        raise SettingsError(f"{path}.images", "must name at least one image (the default)")
    volume_name = p.string(
        section.get("volume_name", "jupyterhub-user-{username}"), f"{path}.volume_name"
    )
    if not VOLUME_NAME_PATTERN.match(volume_name) or "{username}" not in volume_name:
        raise SettingsError(
            f"{path}.volume_name",
            f"must be a volume name containing {{username}}, like jupyterhub-user-{{username}}, "
            f"not {volume_name!r}",
        )
    ca_bundle = p.string(section.get("ca_bundle", ""), f"{path}.ca_bundle", allow_empty=True)
    return DockerSettings(
        api_url=api_url,
        images=images,
        cmd=_command(section.get("cmd", ["jupyterhub-singleuser"]), f"{path}.cmd"),
        home=p.absolute_path(section.get("home", "/home/jovyan"), f"{path}.home"),
        volume_name=volume_name,
        pull_policy=p.choice(
            section.get("pull_policy", "ifnotpresent"), f"{path}.pull_policy", PULL_POLICIES
        ),
        ca_bundle=p.absolute_path(ca_bundle, f"{path}.ca_bundle") if ca_bundle else "",
    )


def _environment(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SettingsError(
            path, f"must be an object of variable name to string, not {p.type_name(value)}"
        )
    for name, text in value.items():
        p.env_name(name, f"{path}.{name}")
        if not isinstance(text, str):
            raise SettingsError(
                f"{path}.{name}",
                f"must be a string (put the value in quotes), not {p.type_name(text)}",
            )
    return dict(value)


def _kind_section(spawner: Mapping[str, Any], kind: str, own: str, parse: Any) -> Any:
    """The section of kind ``own`` (``spawner.docker``...): required with it, else absent."""
    if kind == own:
        if spawner.get(own) is None:
            raise SettingsError(f"spawner.{own}", f'is required with kind "{own}"')
        return parse(spawner[own])
    if spawner.get(own) is not None:
        raise SettingsError(f"spawner.{own}", f'is only used with kind "{own}", not {kind!r}')
    return None


def parse_spawner(data: Any) -> SpawnerSettings:
    """Validate the ``spawner`` section.

    Raises:
        SettingsError: For the first rule broken, naming its setting.
    """
    spawner = p.section(
        data,
        "spawner",
        (
            "cmd",
            "default_url",
            "notebook_dir",
            "start_timeout",
            "http_timeout",
            "environment",
            "log_dir",
        ),
        (
            "kind",
            "mem_limit",
            "cpu_limit",
            "concurrent_spawn_limit",
            "active_server_limit",
            "poll_interval",
            "start_slots",
            "queue_timeout",
            "nice",
            "options_form",
            "docker",
            "slurm",
            "sudospawner",
        ),
    )
    kind = p.choice(spawner.get("kind", "local"), "spawner.kind", tuple(SPAWNER_KINDS))
    default_url = p.string(spawner["default_url"], "spawner.default_url")
    if not default_url.startswith("/"):
        raise SettingsError(
            "spawner.default_url", f"must start with '/', like /lab, not {default_url!r}"
        )
    mem_limit = spawner.get("mem_limit")
    if mem_limit is not None and (
        not isinstance(mem_limit, str) or not MEM_LIMIT_PATTERN.match(mem_limit)
    ):
        raise SettingsError(
            "spawner.mem_limit",
            f"must be bytes with an optional K, M, G or T suffix, like 2G, not {mem_limit!r}",
        )
    cpu_limit = spawner.get("cpu_limit")
    if cpu_limit is not None and (type(cpu_limit) not in (int, float) or not 0 < cpu_limit <= 1024):
        raise SettingsError(
            "spawner.cpu_limit", f"must be a positive number of CPUs, like 1.5, not {cpu_limit!r}"
        )
    if kind == "local" and (mem_limit is not None or cpu_limit is not None):
        raise SettingsError(
            "spawner.mem_limit" if mem_limit is not None else "spawner.cpu_limit",
            "the local spawner cannot enforce limits; use kind systemd or docker, or remove it",
        )
    if kind == "slurm" and (mem_limit is not None or cpu_limit is not None):
        raise SettingsError(
            "spawner.mem_limit" if mem_limit is not None else "spawner.cpu_limit",
            "does not apply to kind slurm, whose jobs get the memory and CPUs asked for on "
            "the spawn form (spawner.slurm.memory_max and cpus_max bound them); remove it",
        )
    nice = spawner.get("nice", 10)
    if type(nice) is not int or not 0 <= nice <= 19:
        raise SettingsError(
            "spawner.nice",
            f"must be a niceness from 0 (the hub's own priority) to 19 (the lowest), not {nice!r}",
        )
    docker = _kind_section(spawner, kind, "docker", _parse_docker)
    slurm = _kind_section(spawner, kind, "slurm", parse_slurm)
    options_form = _parse_form(spawner.get("options_form", {}))
    sudospawner = p.string(spawner.get("sudospawner", ""), "spawner.sudospawner", allow_empty=True)
    if sudospawner:
        p.existing_file(sudospawner, "spawner.sudospawner")
        if kind != "local":
            why = {
                "systemd": "systemd starts each server as a transient unit run as its user, "
                "and a polkit rule letting the hub's account do that lets it run anything as "
                "anyone",
                "docker": "the container engine's socket lets whoever holds it run anything "
                "as root",
                "slurm": "jobs are submitted, watched and cancelled with sbatch, squeue and "
                "scancel run as each user through sudo, and a sudo rule for those lets the "
                "hub's account run any job as anyone",
            }[kind]
            raise SettingsError(
                "spawner.sudospawner",
                "means a hub that is not root (servers start through sudospawner's "
                f"mediator), and spawner.kind {kind!r} needs a root hub: {why}; use "
                "spawner.kind local, or a root hub",
            )
        if options_form.git_hosts:
            raise SettingsError(
                "spawner.options_form.git_hosts",
                "offers cloning a repository as the user, which a hub that is not root "
                "(spawner.sudospawner) cannot do: its sudo rule runs sudospawner's mediator "
                "only; leave it empty, or run the hub as root",
            )
    return SpawnerSettings(
        kind=kind,
        cmd=_command(spawner["cmd"], "spawner.cmd"),
        default_url=default_url,
        notebook_dir=p.string(spawner["notebook_dir"], "spawner.notebook_dir"),
        start_timeout=p.at_least_one(spawner["start_timeout"], "spawner.start_timeout"),
        http_timeout=p.at_least_one(spawner["http_timeout"], "spawner.http_timeout"),
        environment=MappingProxyType(_environment(spawner["environment"], "spawner.environment")),
        log_dir=p.absolute_path(spawner["log_dir"], "spawner.log_dir"),
        mem_limit=mem_limit,
        cpu_limit=None if cpu_limit is None else float(cpu_limit),
        # The start queue (start_slots) paces a burst of spawns; JupyterHub's own
        # limit would refuse the 101st user of a class instead of queueing them.
        concurrent_spawn_limit=p.count(
            spawner.get("concurrent_spawn_limit", 0), "spawner.concurrent_spawn_limit"
        ),
        active_server_limit=p.count(
            spawner.get("active_server_limit", 0), "spawner.active_server_limit"
        ),
        poll_interval=p.at_least_one(spawner.get("poll_interval", 30), "spawner.poll_interval"),
        start_slots=p.count(
            spawner.get("start_slots", 0),
            "spawner.start_slots",
            "0 for one per core of the hub host",
        ),
        queue_timeout=p.at_least_one(spawner.get("queue_timeout", 600), "spawner.queue_timeout"),
        nice=nice,
        options_form=options_form,
        docker=docker,
        slurm=slurm,
        sudospawner=sudospawner,
    )


def apply_spawner(
    c: Any, spawner: SpawnerSettings, hub_environment: Mapping[str, str] | None = None
) -> None:
    """Set the spawner class, the common traits, the limits and the form's fields.

    ``hub_environment``: variables the hub's own settings give every server (the
    activity interval), beside the inventory's ``spawner.environment``.
    """
    environment = {**dict(spawner.environment), **(hub_environment or {})}
    c.JupyterHub.spawner_class = SPAWNER_KINDS[spawner.kind]
    if spawner.sudospawner:
        c.JupyterHub.spawner_class = SUDO_SPAWNER_CLASS
        c.SudoSpawner.sudospawner_path = spawner.sudospawner
        # The sudo rule allows the mediator with exactly these arguments.
        c.SudoSpawner.sudo_args = ["-nH"]
        c.SudoSpawner.mediator_log_level = "INFO"
    # Every kind's servers log outside the hub's output (local: a file each;
    # systemd: the journal; docker: the engine), so they outlive hub restarts.
    c.LocalServerMixin.log_dir = spawner.log_dir
    c.Spawner.cmd = list(spawner.cmd)
    c.Spawner.default_url = spawner.default_url
    c.Spawner.notebook_dir = spawner.notebook_dir
    # Servers start in turn (hub_app.start_queue): start_timeout counts from the
    # turn, and the server is waited for (http_timeout) before the next one's
    # turn. JupyterHub's own start timeout covers the whole: queue, start, answer.
    c.StartQueueMixin.start_slots = spawner.start_slots
    c.StartQueueMixin.queue_timeout = spawner.queue_timeout
    c.StartQueueMixin.turn_timeout = spawner.start_timeout
    c.StartQueueMixin.nice = spawner.nice
    c.Spawner.start_timeout = spawner.queue_timeout + spawner.start_timeout + spawner.http_timeout
    c.Spawner.http_timeout = spawner.http_timeout
    # A start request answers at once (202) and the spawn page shows the
    # progress from the first second: where the server stands in the queue.
    # (JupyterHub would hold each request up to 10 s first, the page blank.)
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
    # How soon a server that died (killed, out of memory) shows as stopped and
    # loses its route.
    c.Spawner.poll_interval = spawner.poll_interval
    c.Spawner.environment = environment
    if spawner.mem_limit is not None:
        c.Spawner.mem_limit = spawner.mem_limit
    if spawner.cpu_limit is not None:
        c.Spawner.cpu_limit = spawner.cpu_limit
    c.JupyterHub.concurrent_spawn_limit = spawner.concurrent_spawn_limit
    c.JupyterHub.active_server_limit = spawner.active_server_limit

    form = spawner.options_form
    c.OptionsFormMixin.form_environment = form.environment
    c.OptionsFormMixin.form_environment_overridable = list(form.environment_overridable)
    c.OptionsFormMixin.form_args = list(form.args)
    c.OptionsFormMixin.form_git_hosts = list(form.git_hosts)
    c.OptionsFormMixin.git_python = form.git_python

    if spawner.slurm is not None:
        slurm, job = spawner.slurm, spawner.slurm.job
        c.HubSlurmSpawner.form_partitions = list(job.partitions)
        c.HubSlurmSpawner.form_walltime = job.walltime
        c.HubSlurmSpawner.form_walltime_max = job.walltime_max
        c.HubSlurmSpawner.form_memory = job.memory
        c.HubSlurmSpawner.form_memory_max = job.memory_max
        c.HubSlurmSpawner.form_cpus = job.cpus
        c.HubSlurmSpawner.form_cpus_max = job.cpus_max
        c.HubSlurmSpawner.job_directives = list(slurm.directives)
        c.HubSlurmSpawner.req_prologue = slurm.prologue
        c.HubSlurmSpawner.batchspawner_singleuser_cmd = slurm.singleuser
        # Pending in the queue counts as starting: a job may wait for a free
        # node as long as a server may wait for its turn on the hub host.
        c.HubSlurmSpawner.start_timeout = c.Spawner.start_timeout

    if spawner.docker is not None:
        docker = spawner.docker
        c.HubDockerSpawner.client_kwargs = {"base_url": docker.api_url}
        c.HubDockerSpawner.image = docker.images[0]
        c.HubDockerSpawner.allowed_images = list(docker.images)
        c.OptionsFormMixin.form_images = list(docker.images)
        c.HubDockerSpawner.cmd = list(docker.cmd)
        c.HubDockerSpawner.pull_policy = docker.pull_policy
        c.HubDockerSpawner.container_home = docker.home
        volumes: dict[str, Any] = {docker.volume_name: docker.home}
        if docker.ca_bundle:
            # The hub host's trust store (with the site's own CAs, see the
            # ca_trust role) replaces the image's, read-only, where Debian-like
            # images and git look; pip and requests are pointed at it too.
            volumes[docker.ca_bundle] = {"bind": CONTAINER_CA_BUNDLE, "mode": "ro"}
            c.HubDockerSpawner.environment = {
                **environment,
                "PIP_CERT": CONTAINER_CA_BUNDLE,
                "REQUESTS_CA_BUNDLE": CONTAINER_CA_BUNDLE,
                "SSL_CERT_FILE": CONTAINER_CA_BUNDLE,
            }
        c.HubDockerSpawner.volumes = volumes
        # The container goes with the server; the volume keeps the user's files.
        c.HubDockerSpawner.remove = True
