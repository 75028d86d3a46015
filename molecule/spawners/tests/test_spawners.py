"""Each spawner, started by a normal user through the spawn form, every field end to end.

Runs on the three platforms of the scenario (molecule.yml): spawn-local (the local
spawner), spawn-systemd (the systemd spawner, per-user limits, the whole kernel
catalogue) and spawn-docker (the docker spawner over podman's Docker API: images
pulled and built by the role, the image field, the user's volume).
"""

from __future__ import annotations

import html
import json
import re
import time

import pytest
from hub_client import (
    HUB_APP,
    HUB_PROCESS,
    check_sandboxed,
    hub_app,
    hub_url,
    log_in,
    oldest_pid,
    run_code,
    run_playbook,
    save_certificate,
    user_token,
)

TEST_USER = "alice"
# Test-only password: its hash is in molecule.yml's inventory.
TEST_PASSWORD = "molecule-alice-password"
GIT_URL = "https://git.spawn.test:8443/demo.git"
FIRST_IMAGE = "localhost/spawn-lab:1"
SECOND_IMAGE = "localhost/spawn-lab-two:1"  # built FROM FIRST_IMAGE
# Pulled from the test's registry (prepare.yml), offer: false in molecule.yml.
BASE_IMAGE = "registry.spawn.test:5000/spawn/debian:12"


@pytest.fixture
def trusted_certificate(host, tmp_path) -> str:
    return save_certificate(host, tmp_path)


def kind(host) -> str:
    """The host's spawner: its platform's name is spawn-<kind> (molecule.yml)."""
    return host.backend.name.removeprefix("spawn-")


def server_state(host) -> dict:
    users = {u["name"]: u for u in json.loads(hub_app(host, "users", "list", "--json"))}
    return users[TEST_USER]["servers"].get("", {})


def wait_ready(host, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server_state(host)
        if state.get("ready"):
            return
        if not state:
            pytest.fail("the server stopped while starting (see the hub's log)")
        time.sleep(1)
    pytest.fail(f"the server was not ready within {timeout} s")


def spawn_page(session, host) -> tuple[str, str]:
    """The spawn page and its form's action (JupyterHub puts the _xsrf token there)."""
    page = session.get(hub_url(host, "/hub/spawn"), timeout=30)
    assert page.status_code == 200, page.text[:500]
    action = re.search(r'<form[^>]*\saction="([^"]+)"', page.text)
    assert action, "the spawn page has no form"
    return page.text, html.unescape(action.group(1))


def post_form(session, host, fields: dict[str, str]):
    _, action = spawn_page(session, host)
    return session.post(hub_url(host, action), data=fields, timeout=120)


def test_the_form_offers_the_enabled_fields(host, trusted_certificate):
    session = log_in(host, trusted_certificate, TEST_USER, TEST_PASSWORD).session
    page, _ = spawn_page(session, host)
    for field in ("env", "args", "git_url"):
        assert f'name="{field}"' in page
    assert ('name="image"' in page) == (kind(host) == "docker")
    if kind(host) == "docker":
        assert SECOND_IMAGE in page
        # A base image (offer: false) is built upon, not offered.
        assert BASE_IMAGE not in page


def test_the_base_image_was_pulled_from_the_registry(host):
    if kind(host) != "docker":
        pytest.skip("docker platform only")
    digests = host.check_output(
        f"podman image inspect --format '{{{{json .RepoDigests}}}}' {BASE_IMAGE}"
    )
    assert f"{BASE_IMAGE.rsplit(':', 1)[0]}@sha256:" in digests


def test_a_changed_image_and_the_image_built_from_it_are_rebuilt(host):
    if kind(host) != "docker":
        pytest.skip("docker platform only")
    # An operator's later change: FIRST_IMAGE's Containerfile only (its
    # revision, molecule.yml), deployed to this host again.
    result = run_playbook(host, "site.yml", {"spawners_lab_revision": 2})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    for image in (FIRST_IMAGE, SECOND_IMAGE):
        revision = host.check_output(
            f"podman run --rm --network host {image} cat /etc/spawn-lab-revision"
        )
        assert revision == "2", f"{image} was not rebuilt"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"env": "JUPYTERHUB_API_TOKEN=stolen"}, "belongs to JupyterHub"),
        ({"env": "PATH=/tmp"}, "cannot be overridden"),
        ({"args": "--ServerApp.ip=0.0.0.0"}, "not an allowed argument"),
        ({"git_url": "http://git.spawn.test:8443/demo.git"}, "must start with https://"),
        ({"git_url": "https://github.com/jupyter/notebook"}, "is not allowed"),
    ],
)
def test_a_bad_value_shows_a_message_and_starts_nothing(host, trusted_certificate, fields, message):
    session = log_in(host, trusted_certificate, TEST_USER, TEST_PASSWORD).session
    response = post_form(session, host, fields)
    assert message in response.text
    assert not server_state(host)


def test_a_server_starts_from_the_form_with_every_field(host, trusted_certificate):
    session = log_in(host, trusted_certificate, TEST_USER, TEST_PASSWORD).session
    fields = {
        "env": "GREETING=hello from the form",
        "args": "--ServerApp.terminals_enabled=False",
        "git_url": GIT_URL,
    }
    if kind(host) == "docker":
        fields["image"] = SECOND_IMAGE
    response = post_form(session, host, fields)
    assert response.status_code == 200, response.text[:500]
    wait_ready(host)


def test_the_hub_and_the_proxy_that_started_it_are_sandboxed(host):
    """Every platform here lets root make mount namespaces (molecule.yml): the server
    above was started by a hub with read-only system directories and a /tmp of its
    own (supervisor_sandbox), whichever process starts the kind's servers."""
    check_sandboxed(host, oldest_pid(host, HUB_PROCESS), "jupyterhub")
    check_sandboxed(host, oldest_pid(host, "configurable-http-proxy"), "jupyterhub-proxy")


def test_the_form_s_values_reach_the_kernel(host, trusted_certificate):
    token = user_token(host, TEST_USER)

    def run(code: str) -> str:
        return run_code(host, trusted_certificate, TEST_USER, token, code)

    assert run("__import__('os').environ['GREETING']") == "'hello from the form'"
    # The argument is on the server's command line and took effect.
    server_args = "open(f'/proc/{__import__(\"os\").getppid()}/cmdline').read()"
    assert "--ServerApp.terminals_enabled=False" in run(server_args)
    session = log_in(host, trusted_certificate, TEST_USER, TEST_PASSWORD).session
    session.headers["Authorization"] = f"token {token}"
    terminals = session.get(hub_url(host, f"/user/{TEST_USER}/api/terminals"), timeout=30)
    assert terminals.status_code == 404
    # The repository is cloned into the home and its requirement is importable.
    assert run("__import__('os').path.isdir(__import__('os').path.expanduser('~/demo/.git'))") == (
        "True"
    )
    assert run("__import__('text_unidecode').unidecode('Ça marche')") == "'Ca marche'"
    if kind(host) == "docker":
        assert run("__import__('os').environ['JUPYTER_IMAGE_SPEC']") == f"'{SECOND_IMAGE}'"
        assert run("open('/etc/spawn-image').read().strip()") == "'two'"
    else:
        assert run("__import__('getpass').getuser()") == f"'{TEST_USER}'"
        assert run("__import__('os').getcwd()") == f"'/home/{TEST_USER}'"


@pytest.mark.parametrize(
    ("kernel", "code", "expected"),
    [
        ("python3", "__import__('getpass').getuser()", f"'{TEST_USER}'"),
        ("python3-text", "__import__('text_unidecode').__name__", "'text_unidecode'"),
        ("ir", "Sys.getenv('USER')", f'[1] "{TEST_USER}"'),
        ("bash", "whoami", TEST_USER),
    ],
)
def test_every_catalogue_kernel_runs_code_as_the_user(
    host, trusted_certificate, kernel, code, expected
):
    if kind(host) != "systemd":
        pytest.skip("the catalogue is installed on the systemd platform's host")
    token = user_token(host, TEST_USER)
    assert run_code(host, trusted_certificate, TEST_USER, token, code, kernel=kernel) == expected


def test_restarts_keep_the_server_the_user_started(host, trusted_certificate):
    # docker: the Docker API service restarts too; the containers are not its
    # children (podman's conmon runs them).
    programs = ["jupyterhub-podman-api", "jupyterhub"] if kind(host) == "docker" else ["jupyterhub"]
    for program in programs:
        host.run_expect([0], f"supervisorctl restart {program}")
    deadline = time.monotonic() + 120
    while host.run(f"{HUB_APP} users list").rc != 0:
        assert time.monotonic() < deadline, "the hub's API did not come back within 120 s"
        time.sleep(1)
    wait_ready(host)
    # The form's variable: the same server, not a new one with default options.
    token = user_token(host, TEST_USER)
    greeting = "__import__('os').environ['GREETING']"
    assert (
        run_code(host, trusted_certificate, TEST_USER, token, greeting) == "'hello from the form'"
    )


def test_the_systemd_unit_carries_the_limits(host):
    if kind(host) != "systemd":
        pytest.skip("systemd platform only")
    unit = f"jupyter-{TEST_USER}-singleuser"
    shown = host.check_output(f"systemctl show {unit} -p MemoryMax -p CPUQuotaPerSecUSec -p Nice")
    assert "MemoryMax=536870912" in shown
    assert "CPUQuotaPerSecUSec=1s" in shown
    # Below the hub and the proxy (jupyterhub_spawner_nice, 10 by default).
    assert "Nice=10" in shown
    server = host.check_output(f"systemctl show {unit} -p MainPID --value")
    assert int(host.check_output(f"ps -o ni= -p {server}")) == 10


def test_the_server_stops_and_the_user_s_volume_stays(host):
    assert hub_app(host, "server", "stop", TEST_USER, "--wait").endswith("stopped")
    if kind(host) == "docker":
        assert host.run(f"podman volume exists jupyterhub-user-{TEST_USER}").rc == 0
        assert host.run("podman ps --format '{{.Names}}' | grep -c jupyter-").stdout.strip() in (
            "0",
            "",
        )
        listing = host.check_output(
            f"podman run --rm --network host -v jupyterhub-user-{TEST_USER}:/home/jovyan "
            f"{FIRST_IMAGE} ls /home/jovyan"
        )
        assert "demo" in listing.split()
    assert host.run(f"{HUB_APP} users list").rc == 0
