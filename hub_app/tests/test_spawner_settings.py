"""The settings file's spawner section: kinds, limits, the form, docker."""

from __future__ import annotations

import copy
import sys

import pytest
from traitlets.config import Config

from hub_app.settings import SettingsError, apply_settings, parse_settings

DOCKER = {"api_url": "unix:///run/podman/podman.sock", "images": ["localhost/lab:1"]}
# Any file that exists stands in for sudospawner's mediator (the settings check
# only that it is there).
MEDIATOR = sys.executable


def _with(**spawner):
    def mutate(data):
        data["spawner"].update(spawner)

    return mutate


BAD = {
    "kind": (_with(kind="kubernetes"), "spawner.kind", "choose one of: local, systemd, docker"),
    "local-limit": (_with(mem_limit="1G"), "spawner.mem_limit", "cannot enforce limits"),
    "mem-format": (_with(kind="systemd", mem_limit="1 GB"), "spawner.mem_limit", "like 2G"),
    "cpu-zero": (_with(kind="systemd", cpu_limit=0), "spawner.cpu_limit", "positive"),
    "cpu-bool": (_with(kind="systemd", cpu_limit=True), "spawner.cpu_limit", "positive"),
    "docker-missing": (_with(kind="docker"), "spawner.docker", "required"),
    "docker-elsewhere": (_with(docker=DOCKER), "spawner.docker", "only used with"),
    "docker-no-image": (
        _with(kind="docker", docker={**DOCKER, "images": []}),
        "spawner.docker.images",
        "at least one",
    ),
    "docker-api": (
        _with(kind="docker", docker={**DOCKER, "api_url": "/run/docker.sock"}),
        "spawner.docker.api_url",
        "unix:///",
    ),
    "docker-volume": (
        _with(kind="docker", docker={**DOCKER, "volume_name": "shared"}),
        "spawner.docker.volume_name",
        "{username}",
    ),
    "spawn-limit": (
        _with(concurrent_spawn_limit=-1),
        "spawner.concurrent_spawn_limit",
        "0 for no limit",
    ),
    "start-slots-negative": (
        _with(start_slots=-2),
        "spawner.start_slots",
        "0 for one per core of the hub host",
    ),
    "queue-timeout-zero": (_with(queue_timeout=0), "spawner.queue_timeout", "at least 1"),
    "nice-too-high": (_with(nice=20), "spawner.nice", "to 19 \\(the lowest\\), not 20"),
    "nice-negative": (_with(nice=-5), "spawner.nice", "from 0"),
    "nice-a-word": (_with(nice="low"), "spawner.nice", "not 'low'"),
    "server-limit": (
        _with(active_server_limit=True),
        "spawner.active_server_limit",
        "whole number",
    ),
    "docker-ca-bundle": (
        _with(kind="docker", docker={**DOCKER, "ca_bundle": "certs/ca.crt"}),
        "spawner.docker.ca_bundle",
        "absolute path",
    ),
    "docker-pull": (
        _with(kind="docker", docker={**DOCKER, "pull_policy": "sometimes"}),
        "spawner.docker.pull_policy",
        "choose one of",
    ),
    "form-key": (_with(options_form={"envs": True}), "spawner.options_form.envs", "unknown key"),
    "form-arg": (
        _with(options_form={"args": ["ServerApp.ip"]}),
        "spawner.options_form.args[0]",
        "not a valid argument name",
    ),
    "form-host": (
        _with(options_form={"git_hosts": ["https://github.com"]}),
        "spawner.options_form.git_hosts[0]",
        "not a valid host name",
    ),
    "sudo-relative": (
        _with(sudospawner="bin/sudospawner"),
        "spawner.sudospawner",
        "absolute path",
    ),
    "sudo-not-text": (_with(sudospawner=True), "spawner.sudospawner", "must be a string"),
    "sudo-systemd": (
        _with(kind="systemd", sudospawner=MEDIATOR),
        "spawner.sudospawner",
        "spawner.kind 'systemd' needs a root hub",
    ),
    "sudo-docker": (
        _with(kind="docker", docker=DOCKER, sudospawner=MEDIATOR),
        "spawner.sudospawner",
        "spawner.kind 'docker' needs a root hub",
    ),
    "sudo-git": (
        _with(sudospawner=MEDIATOR, options_form={"git_hosts": ["github.com"]}),
        "spawner.options_form.git_hosts",
        "cannot do: its sudo rule runs sudospawner's mediator only",
    ),
    "form-reserved": (
        _with(options_form={"environment_overridable": ["JUPYTERHUB_API_TOKEN"]}),
        "spawner.options_form.environment_overridable[0]",
        "can never be set",
    ),
}


@pytest.mark.parametrize(("mutate", "setting", "message"), BAD.values(), ids=BAD.keys())
def test_bad_spawner_settings_name_the_setting(settings_data, mutate, setting, message):
    data = copy.deepcopy(settings_data)
    mutate(data)
    with pytest.raises(SettingsError, match=message) as raised:
        parse_settings(data)
    assert raised.value.setting == setting


KINDS = {
    "local": ({}, "hub_app.spawners.LoggingLocalProcessSpawner"),
    "systemd": (
        {"kind": "systemd", "mem_limit": "1G", "cpu_limit": 1},
        "hub_app.spawners.HubSystemdSpawner",
    ),
    "docker": ({"kind": "docker", "docker": DOCKER}, "hub_app.spawners.HubDockerSpawner"),
}


@pytest.mark.parametrize(("spawner", "spawner_class"), KINDS.values(), ids=KINDS.keys())
def test_each_kind_selects_its_spawner(settings_data, spawner, spawner_class):
    settings_data["spawner"].update(spawner)
    settings_data["spawner"]["options_form"] = {
        "environment": True,
        "args": ["--ServerApp.terminals_enabled"],
        "git_hosts": ["git.example.org"],
    }
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert c.JupyterHub.spawner_class == spawner_class
    assert c.OptionsFormMixin.form_environment is True
    assert c.OptionsFormMixin.form_git_hosts == ["git.example.org"]
    if "mem_limit" in spawner:
        assert c.Spawner.mem_limit == "1G"
        assert c.Spawner.cpu_limit == 1.0
    if spawner.get("kind") == "docker":
        assert c.HubDockerSpawner.client_kwargs == {"base_url": DOCKER["api_url"]}
        assert c.HubDockerSpawner.image == "localhost/lab:1"
        assert c.HubDockerSpawner.volumes == {"jupyterhub-user-{username}": "/home/jovyan"}
        assert c.HubDockerSpawner.cmd == ["jupyterhub-singleuser"]


def test_the_docker_spawner_hands_containers_the_host_s_ca_bundle(settings_data):
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    settings_data["spawner"] = {
        **settings_data["spawner"],
        "kind": "docker",
        "docker": {**DOCKER, "ca_bundle": bundle},
        "environment": {"LANG": "C.UTF-8"},
    }
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert c.HubDockerSpawner.volumes[bundle] == {"bind": bundle, "mode": "ro"}
    assert c.HubDockerSpawner.environment == {
        "LANG": "C.UTF-8",
        "PIP_CERT": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "SSL_CERT_FILE": bundle,
        # How often the server reports activity (hub_app.settings.services).
        "JUPYTERHUB_ACTIVITY_INTERVAL": "300",
    }


@pytest.mark.parametrize(
    ("limits", "concurrent", "active"),
    # No limit on pending spawns by default: the start queue paces them.
    [({}, 0, 0), ({"concurrent_spawn_limit": 5, "active_server_limit": 40}, 5, 40)],
)
def test_the_spawn_limits_reach_jupyterhub(settings_data, limits, concurrent, active):
    settings_data["spawner"].update(limits)
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert c.JupyterHub.concurrent_spawn_limit == concurrent
    assert c.JupyterHub.active_server_limit == active


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        ({}, (0, 600, 10)),
        ({"start_slots": 4, "queue_timeout": 300, "nice": 0}, (4, 300, 0)),
    ],
)
def test_the_start_queue_settings_reach_the_spawners(settings_data, queue, expected):
    settings_data["spawner"].update(queue)
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    slots, queue_timeout, nice = expected
    assert c.StartQueueMixin.start_slots == slots
    assert c.StartQueueMixin.queue_timeout == queue_timeout
    assert c.StartQueueMixin.nice == nice
    assert c.Spawner.start_timeout == queue_timeout + 120 + 60
    # Start requests answer at once; the spawn page shows the place in the queue.
    assert c.JupyterHub.tornado_settings == {"slow_spawn_timeout": 0}


def test_without_kind_the_spawner_is_local(settings_data):
    settings_data["spawner"].pop("kind", None)
    assert parse_settings(settings_data).spawner.kind == "local"


def test_a_hub_that_is_not_root_starts_servers_through_sudospawner(settings_data):
    settings_data["spawner"].update(sudospawner=MEDIATOR, nice=5)
    c = Config()
    apply_settings(c, parse_settings(settings_data))
    assert c.JupyterHub.spawner_class == "hub_app.spawners.LoggingSudoSpawner"
    assert c.SudoSpawner.sudospawner_path == MEDIATOR
    # What the sudoers rule allows, argument for argument.
    assert c.SudoSpawner.sudo_args == ["-nH"]
    assert c.SudoSpawner.mediator_log_level == "INFO"
    assert c.LocalServerMixin.log_dir == settings_data["spawner"]["log_dir"]
    assert c.StartQueueMixin.nice == 5


def test_on_the_host_the_mediator_must_exist(settings_data, tmp_path):
    settings_data["spawner"]["sudospawner"] = str(tmp_path / "sudospawner")
    with pytest.raises(SettingsError, match="does not exist") as raised:
        parse_settings(settings_data, on_host=True)
    assert raised.value.setting == "spawner.sudospawner"
