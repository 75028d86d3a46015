"""Users' servers as Slurm jobs, seen as users and operators see them.

Everything is real: munge, slurmctld on the hub's host, slurmd on two nodes,
batchspawner's jobs, the proxy routing to the nodes, kernels running there. The
tests run in file order, on one cluster: three users start at once, their jobs
spread over both nodes and each runs code; a browser starts a server through
the spawn form; the hub restarts and keeps the jobs and routes; a stopped
server's job goes; a job cancelled behind the hub's back shows as stopped; a
wrong inventory is refused before anything changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from chromium import hub_page, submit_login
from hub_client import (
    CERTIFICATE,
    HUB_APP,
    HUB_NAME,
    browser,
    hub_app,
    hub_url,
    run_code,
    run_playbook,
    save_certificate,
    user_token,
)

testinfra_hosts = ["podman://slurm-hub"]

USERS = ("alice", "bob", "carol")
NODES = {"slurm-n1", "slurm-n2"}
# Test-only password of every user: its hash is in molecule.yml's inventory.
PASSWORD = "molecule-alice-password"
HUB_URL = f"https://{HUB_NAME}"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# What each user asks of their job (the spawn form's fields, as user_options).
JOB = {"partition": "jupyter", "walltime": "00:30:00", "memory": "512M", "cpus": "1"}


@pytest.fixture(scope="module")
def certificate(host, tmp_path_factory) -> str:
    return save_certificate(host, tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def tokens(host) -> dict[str, str]:
    return {user: user_token(host, user) for user in USERS}


def api(host, certificate: str, token: str, method: str, path: str, **kwargs):
    session = browser(certificate)
    session.headers["Authorization"] = f"token {token}"
    return session.request(method, hub_url(host, f"/hub/api{path}"), timeout=120, **kwargs)


def jobs(host) -> dict[str, tuple[str, str, str]]:
    """Slurm's view: user -> (job id, state, node), for the hub's jobs."""
    out = host.check_output(
        "squeue -h -n jupyterhub-alice,jupyterhub-bob,jupyterhub-carol -o '%u %i %T %N'"
    )
    found = {}
    for line in out.splitlines():
        user, job_id, state, node = line.split()
        found[user] = (job_id, state, node)
    return found


def server_ready(host, certificate: str, token: str, user: str) -> bool:
    model = api(host, certificate, token, "GET", f"/users/{user}").json()
    server = model.get("servers", {}).get("")
    return bool(server and server.get("ready"))


def started(host, certificate: str, token: str, user: str) -> bool:
    """Whether the user's server is ready; fails at once if its start failed."""
    model = api(host, certificate, token, "GET", f"/users/{user}").json()
    server = model.get("servers", {}).get("")
    if not server:
        log = host.check_output("tail -n 30 /var/log/supervisor/jupyterhub.log")
        pytest.fail(f"{user}'s server failed to start; the hub's log ends with:\n{log}")
    return bool(server.get("ready"))


def wait_for(condition, what: str, timeout: float = 120, every: float = 1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"{what} within {timeout:g} s")


def podman_file(container: str, path: str) -> str:
    """A file's text in another of the scenario's containers (a node)."""
    return subprocess.run(
        ["podman", "exec", container, "cat", path], capture_output=True, text=True, check=True
    ).stdout


def routes(host) -> dict[str, str]:
    """The proxy's table: path -> target (its activity data changes by the second)."""
    table = json.loads(hub_app(host, "proxy", "routes", "--json"))
    return {path: route["target"] for path, route in table.items()}


def test_the_cluster_is_up_with_both_nodes(host):
    nodes = host.check_output("sinfo -h -N -o '%N %t %P'")
    for node in NODES:
        assert node in nodes
    assert "down" not in nodes and "drain" not in nodes, nodes


def test_three_users_start_at_once_and_land_on_both_nodes(host, certificate, tokens):
    def start(user: str):
        return api(host, certificate, tokens[user], "POST", f"/users/{user}/server", json=JOB)

    with ThreadPoolExecutor(len(USERS)) as pool:
        answers = list(pool.map(start, USERS))
    assert all(answer.status_code in (201, 202) for answer in answers), [
        (answer.status_code, answer.text[:200]) for answer in answers
    ]
    for user in USERS:
        wait_for(
            lambda user=user: started(host, certificate, tokens[user], user),
            f"{user}'s server was not ready",
            timeout=180,
        )
    running = jobs(host)
    assert set(running) == set(USERS), running
    assert {state for _, state, _ in running.values()} == {"RUNNING"}
    # Each job where the least loaded node was: the three spread over both.
    assert {node for _, _, node in running.values()} == NODES, running


def test_each_user_runs_code_on_their_node_through_the_public_url(host, certificate, tokens):
    running = jobs(host)
    for user in USERS:
        answer = run_code(
            host,
            certificate,
            user,
            tokens[user],
            "import os, socket; (socket.gethostname(), os.environ.get('HUB_SITE_PROLOGUE'), "
            "os.getcwd(), os.getuid())",
        )
        node = running[user][2]
        uid = int(host.check_output(f"id -u {user}"))
        # The kernel runs on the job's node, as the user, in the shared home,
        # after the site's prologue line.
        assert answer == repr((node, "ran", f"/home/{user}", uid))


# What a user's kernel can send the hub with the server's own token: batchspawner's
# report handler would set any attribute of the spawner, the shell command
# prefix the hub runs as root included; the hub takes only a port.
REPORT_FROM_A_KERNEL = """
import json, os, urllib.error, urllib.request
request = urllib.request.Request(
    os.environ["JUPYTERHUB_API_URL"] + "/batchspawner",
    data=json.dumps({"exec_prefix": "touch /root/owned-by-a-user;"}).encode(),
    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]},
    method="POST",
)
try:
    answer = urllib.request.urlopen(request).status
except urllib.error.HTTPError as error:
    answer = error.code
answer
"""


def test_a_user_cannot_rewrite_the_hubs_commands_from_a_kernel(host, certificate, tokens):
    assert run_code(host, certificate, "bob", tokens["bob"], REPORT_FROM_A_KERNEL) == "400"
    # The hub still polls bob's job with its own command, and nothing ran as root.
    time.sleep(6)  # one poll (jupyterhub_spawner_poll_interval: 5)
    assert server_ready(host, certificate, tokens["bob"], "bob")
    assert not host.file("/root/owned-by-a-user").exists


def test_the_job_asks_slurm_for_what_the_user_chose(host):
    job_id = jobs(host)["alice"][0]
    detail = host.check_output(f"scontrol show job {job_id}")
    assert "Partition=jupyter" in detail
    assert "TimeLimit=00:30:00" in detail
    assert "Comment=jupyterhub" in detail  # the site's directive
    assert "mem=512M" in detail


def test_the_proxy_routes_each_user_to_their_node(host):
    table = routes(host)
    running = jobs(host)
    for user in USERS:
        target = next(t for path, t in table.items() if path.rstrip("/").endswith(f"/user/{user}"))
        assert target.startswith(f"http://{running[user][2]}:"), (user, target)


def test_a_hub_restart_keeps_the_jobs_and_the_routes(host, certificate, tokens):
    before = jobs(host)
    routes_before = routes(host)
    host.run_expect([0], "supervisorctl restart jupyterhub")
    wait_for(lambda: host.run(f"{HUB_APP} users list").rc == 0, "the hub did not answer again")
    for user in USERS:
        assert server_ready(host, certificate, tokens[user], user), user
    assert jobs(host) == before
    assert routes(host) == routes_before
    # And a kernel still runs through the kept route.
    assert run_code(host, certificate, "bob", tokens["bob"], "6 * 7") == "42"


def test_stopping_a_server_cancels_its_job(host, certificate, tokens):
    answer = api(host, certificate, tokens["alice"], "DELETE", "/users/alice/server")
    assert answer.status_code in (202, 204), answer.text[:200]
    wait_for(lambda: "alice" not in jobs(host), "alice's job was still queued", timeout=60)
    wait_for(
        lambda: not server_ready(host, certificate, tokens["alice"], "alice"),
        "the hub still showed alice's server",
        timeout=60,
    )


def test_a_job_slurm_ends_shows_as_stopped(host, certificate, tokens):
    job_id = jobs(host)["carol"][0]
    host.run_expect([0], f"scancel {job_id}")
    # The hub polls every 5 s (jupyterhub_spawner_poll_interval in molecule.yml).
    wait_for(
        lambda: not server_ready(host, certificate, tokens["carol"], "carol"),
        "the hub did not notice carol's cancelled job",
        timeout=60,
    )
    wait_for(
        lambda: not any(path.rstrip("/").endswith("/user/carol") for path in routes(host)),
        "carol's route stayed in the proxy",
        timeout=30,
    )


def test_a_user_starts_a_server_from_the_spawn_form_in_a_browser(host):
    with hub_page(host, HUB_NAME, CERTIFICATE, ARTIFACTS) as (page, shot):
        submit_login(page, HUB_URL, "alice", PASSWORD)
        page.wait_for_url(f"{HUB_URL}/**")
        page.goto(f"{HUB_URL}/hub/spawn")
        page.select_option("select[name=partition]", "short")
        page.fill("input[name=walltime]", "01:00:00")
        shot("1-spawn-form")
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{HUB_URL}/user/alice/lab**", timeout=180_000)
        page.wait_for_selector(".jp-LabShell")
        shot("2-lab-on-a-node")
    job = jobs(host)["alice"]
    detail = host.check_output(f"scontrol show job {job[0]}")
    assert "Partition=short" in detail and "TimeLimit=01:00:00" in detail
    assert job[2] in NODES


def test_a_bad_job_field_is_refused_on_the_spawn_page(host, certificate, tokens):
    answer = api(
        host,
        certificate,
        tokens["carol"],
        "POST",
        "/users/carol/server",
        json={**JOB, "walltime": "12:00:00"},
    )
    assert answer.status_code == 400, answer.text[:200]
    assert "longer than this hub allows" in answer.text
    assert "carol" not in jobs(host)


@pytest.mark.parametrize(
    ("extra_vars", "says"),
    [
        (
            {"jupyterhub_spawner_slurm_partitions": ["gpu"]},
            "jupyterhub_spawner_slurm_partitions[0]: 'gpu' is not a partition of the cluster",
        ),
        ({"jupyterhub_spawner_slurm_walltime": "2 hours"}, "jupyterhub_spawner_slurm_walltime"),
        # An address that is not the hub's: the nodes' servers could not call it.
        ({"proxy_default_target": "http://10.254.254.254:8081"}, "is not an address of slurm-hub"),
    ],
)
def test_a_wrong_inventory_is_refused_before_any_change(host, extra_vars, says):
    conf = host.file("/etc/slurm/slurm.conf").content_string
    settings = host.file("/etc/jupyterhub/hub_app.json").content_string
    result = run_playbook(host, "site.yml", extra_vars)
    assert result.returncode != 0
    # The failure goes to stderr, wrapped by the callback: compare words.
    said = " ".join((result.stdout + result.stderr).split())
    assert " ".join(says.split()) in said, said[-3000:]
    assert "changed=0" in result.stdout[result.stdout.rindex("PLAY RECAP") :]
    assert host.file("/etc/slurm/slurm.conf").content_string == conf
    assert host.file("/etc/jupyterhub/hub_app.json").content_string == settings


def test_the_hub_becomes_a_client_of_an_existing_cluster(host, certificate, tokens):
    """slurm_cluster: existing, as a site with its own cluster writes it.

    The running cluster stands for the site's: its slurm.conf and munge key go
    into the inventory (the key as Vault would hold it), the controller's group
    is emptied (the site's controller is not the bundle's), and a run limited to
    the hub makes the hub a client of it: its slurm.conf is the site's text, the
    cluster's hosts are not touched, and a user's server still runs as a job.
    """
    import yaml

    site_conf = host.file("/etc/slurm/slurm.conf").content_string
    key = host.check_output("base64 -w0 /etc/munge/munge.key")
    key_before = host.check_output("sha256sum /etc/munge/munge.key")
    scenario_inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = yaml.safe_load(scenario_inventory.read_text())
    inventory["slurm_controllers"]["hosts"] = {}
    # Beside the scenario's, so its group_vars apply; gone before Molecule
    # reads that directory again.
    site_inventory = scenario_inventory.with_name(f"existing-cluster-{os.getpid()}.yml")
    nodes_conf = {node: podman_file(node, "/etc/slurm/slurm.conf") for node in NODES}
    try:
        site_inventory.write_text(yaml.safe_dump(inventory))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MOLECULE_INVENTORY_FILE", str(site_inventory))
            result = run_playbook(
                host,
                "site.yml",
                {"slurm_cluster": "existing", "slurm_conf": site_conf, "slurm_munge_key": key},
            )
    finally:
        site_inventory.unlink(missing_ok=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    conf = host.file("/etc/slurm/slurm.conf").content_string
    assert "The site's own (slurm_conf)" in conf and site_conf.strip() in conf
    assert host.check_output("sha256sum /etc/munge/munge.key") == key_before
    assert {node: podman_file(node, "/etc/slurm/slurm.conf") for node in NODES} == nodes_conf

    # carol's server is stopped (her job was cancelled above); bob's still runs.
    answer = api(host, certificate, tokens["carol"], "POST", "/users/carol/server", json=JOB)
    assert answer.status_code in (201, 202), answer.text[:200]
    wait_for(lambda: started(host, certificate, tokens["carol"], "carol"), "carol's server", 180)
    assert jobs(host)["carol"][2] in NODES
    assert run_code(host, certificate, "carol", tokens["carol"], "6 * 7") == "42"
    api(host, certificate, tokens["carol"], "DELETE", "/users/carol/server")
    wait_for(lambda: "carol" not in jobs(host), "carol's job was still queued", timeout=60)
