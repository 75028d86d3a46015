"""The options form: every field's hub-side rules, as a table of input and outcome."""

from __future__ import annotations

import pytest
from tornado import web

from hub_app.options_form import (
    FormError,
    FormSettings,
    check_user_options,
    parse_form,
    render_form,
)
from hub_app.spawners import LoggingLocalProcessSpawner

ALL = FormSettings(
    environment=True,
    environment_overridable=frozenset({"PATH"}),
    fixed_environment=frozenset({"TZ"}),
    args=("--ServerApp.terminals_enabled", "--MappingKernelManager.cull_idle_timeout"),
    images=("localhost/lab:1", "localhost/lab-r:1"),
    default_image="localhost/lab:1",
    git_hosts=("git.example.org",),
)

GOOD = {
    "env": (
        {"env": ["A=1\n# comment\n\nB_2 = x=y"]},
        {"env": {"A": "1", "B_2": " x=y"}},
    ),
    "env-path-allowed": (
        {"env": ["PATH=/opt/bin:/usr/bin"]},
        {"env": {"PATH": "/opt/bin:/usr/bin"}},
    ),
    "args": (
        {"args": ["--ServerApp.terminals_enabled=False\n"]},
        {"args": ["--ServerApp.terminals_enabled=False"]},
    ),
    "image": ({"image": ["localhost/lab-r:1"]}, {"image": "localhost/lab-r:1"}),
    "default-image-is-no-option": ({"image": ["localhost/lab:1"]}, {}),
    "git": (
        {"git_url": ["https://git.example.org/team/demo.git"]},
        {"git_url": "https://git.example.org/team/demo.git"},
    ),
    "git-port": (
        {"git_url": ["https://GIT.example.org:8443/demo"]},
        {"git_url": "https://GIT.example.org:8443/demo"},
    ),
    "empty": ({"env": [""], "args": [" "], "git_url": [""]}, {}),
}

BAD = {
    "env-no-equals": ({"env": ["JUST_A_NAME"]}, "env", "is not KEY=VALUE"),
    "env-bad-name": ({"env": ["1X=1"]}, "env", "not a valid variable name"),
    "env-dash": ({"env": ["MY-VAR=1"]}, "env", "not a valid variable name"),
    "env-token": ({"env": ["JUPYTERHUB_API_TOKEN=x"]}, "env", "belongs to JupyterHub"),
    "env-jpy": ({"env": ["JPY_API_TOKEN=x"]}, "env", "belongs to JupyterHub"),
    "env-home": ({"env": ["HOME=/tmp"]}, "env", "set by the spawner"),
    "env-pythonpath": ({"env": ["PYTHONPATH=/x"]}, "env", "set by the spawner"),
    "env-operator": ({"env": ["TZ=UTC"]}, "env", "administrator"),
    "env-twice": ({"env": ["A=1\nA=2"]}, "env", "given twice"),
    "env-too-many": ({"env": ["\n".join(f"V{i}=1" for i in range(51))]}, "env", "at most 50"),
    "arg-not-allowed": ({"args": ["--ServerApp.ip=0.0.0.0"]}, "args", "not an allowed argument"),
    "arg-not-an-option": ({"args": ["rm -rf ~"]}, "args", "--Name=value"),
    "arg-positional": ({"args": ["notebook.ipynb"]}, "args", "--Name=value"),
    "image-unknown": ({"image": ["docker.io/evil:latest"]}, "image", "not one of the offered"),
    "git-http": ({"git_url": ["http://git.example.org/demo.git"]}, "git_url", "https://"),
    "git-ssh": ({"git_url": ["git@git.example.org:demo.git"]}, "git_url", "https://"),
    "git-host": ({"git_url": ["https://github.com/x/y.git"]}, "git_url", "not allowed"),
    "git-credentials": (
        {"git_url": ["https://me:pw@git.example.org/demo.git"]},
        "git_url",
        "user name or password",
    ),
    "git-query": ({"git_url": ["https://git.example.org/demo.git?x=1"]}, "git_url", "query"),
    "git-dotdot": ({"git_url": ["https://git.example.org/a/../../x"]}, "git_url", "repository"),
    "git-no-path": ({"git_url": ["https://git.example.org"]}, "git_url", "repository path"),
    "git-option-injection": ({"git_url": ["https://git.example.org/-u"]}, "git_url", "directory"),
}


@pytest.mark.parametrize(("formdata", "expected"), GOOD.values(), ids=GOOD.keys())
def test_good_forms_become_user_options(formdata, expected):
    assert parse_form(formdata, ALL) == expected


@pytest.mark.parametrize(("formdata", "field", "message"), BAD.values(), ids=BAD.keys())
def test_bad_forms_are_refused_with_a_message(formdata, field, message):
    with pytest.raises(FormError, match=message) as raised:
        parse_form(formdata, ALL)
    assert raised.value.field == field


DISABLED = {
    "env": ({"env": {"A": "1"}}, "env", "not enabled"),
    "args": ({"args": ["--ServerApp.terminals_enabled=False"]}, "args", "not enabled"),
    "image": ({"image": "localhost/lab-r:1"}, "image", "not enabled"),
    "git": ({"git_url": "https://git.example.org/demo"}, "git_url", "not enabled"),
    "unknown": ({"cmd": ["/bin/sh"]}, "cmd", "unknown option"),
}


@pytest.mark.parametrize(("options", "field", "message"), DISABLED.values(), ids=DISABLED.keys())
def test_api_options_for_fields_the_hub_does_not_offer_are_refused(options, field, message):
    with pytest.raises(FormError, match=message) as raised:
        check_user_options(options, FormSettings())
    assert raised.value.field == field


def test_api_options_get_the_same_checks_as_the_form():
    with pytest.raises(FormError, match="belongs to JupyterHub"):
        check_user_options({"env": {"JUPYTERHUB_API_URL": "http://evil"}}, ALL)
    with pytest.raises(FormError, match="must be a list"):
        check_user_options({"args": "--ServerApp.terminals_enabled=False"}, ALL)


def test_the_form_offers_only_enabled_fields():
    assert render_form(FormSettings()) == ""
    assert not FormSettings().enabled
    only_env = render_form(FormSettings(environment=True))
    assert 'name="env"' in only_env
    assert 'name="args"' not in only_env and 'name="git_url"' not in only_env
    everything = render_form(ALL)
    for name in ("env", "args", "image", "git_url"):
        assert f'name="{name}"' in everything
    assert '<option value="localhost/lab-r:1">' in everything
    # One image is no choice: no field.
    assert 'name="image"' not in render_form(FormSettings(images=("a",), default_image="a"))


def test_the_spawner_applies_checked_options(tmp_path):
    spawner = LoggingLocalProcessSpawner(
        form_environment=True,
        form_args=["--ServerApp.terminals_enabled"],
        environment={"TZ": "UTC"},
    )
    assert 'name="env"' in spawner.options_form
    options = spawner.options_from_form({"env": ["GREETING=hi"], "args": [""]})
    spawner.apply_checked_options(options)
    assert spawner.environment == {"TZ": "UTC", "GREETING": "hi"}
    with pytest.raises(web.HTTPError) as raised:
        spawner.apply_checked_options({"env": {"TZ": "Mars"}})
    assert raised.value.status_code == 400
    assert "administrator" in raised.value.reason
