"""The slurm kind: its settings, the spawn form's job fields, the job script, the inventory rules.

The jobs themselves run on a real Slurm cluster in the Molecule scenario
``slurm``; here, what the hub decides before anything is submitted.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from hub_app.options_form import FormError, FormSettings, check_user_options, parse_form
from hub_app.settings import SettingsError, apply_settings, parse_settings
from hub_app.settings.slurm import (
    JobBounds,
    conf_partitions,
    format_walltime,
    memory_mib,
    walltime_seconds,
)
from hub_app.spawners import HubSlurmSpawner

from .test_inventory import run

SLURM = {
    "partitions": ["jupyter", "short"],
    "walltime": "01:00:00",
    "walltime_max": "08:00:00",
    "memory": "1G",
    "memory_max": "4G",
    "cpus": 1,
    "cpus_max": 2,
}
PRIVATE_HUB = "http://10.89.0.2:8081"


@pytest.fixture
def slurm_data(settings_data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(settings_data)
    data["hub"]["bind_url"] = PRIVATE_HUB
    data["spawner"].update(kind="slurm", slurm=copy.deepcopy(SLURM))
    return data


# --- walltimes and memory: one reading for the settings and the form ---------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("30:00", 1800),
        ("02:00:00", 7200),
        ("1-00", 86400),
        ("1-12:30", 131400),
        ("2-00:00:30", 172830),
        (" 01:00:00 ", 3600),
    ],
)
def test_slurm_walltime_formats_are_read(text, seconds):
    assert walltime_seconds(text, "w") == seconds


@pytest.mark.parametrize("text", ["1h", "01:60:00", "1-24:00", "00:00:30", "", "1:2:3:4", 3600])
def test_a_walltime_slurm_would_refuse_is_refused(text):
    with pytest.raises(SettingsError, match="HH:MM:SS") as raised:
        walltime_seconds(text, "spawner.slurm.walltime")
    assert raised.value.setting == "spawner.slurm.walltime"


def test_walltimes_print_as_slurm_reads_them():
    assert format_walltime(3600) == "01:00:00"
    assert format_walltime(131400) == "1-12:30:00"


@pytest.mark.parametrize(
    ("text", "mib"), [("512", 512), ("512M", 512), ("2G", 2048), ("1T", 1 << 20)]
)
def test_memory_sizes_are_read_in_mib(text, mib):
    assert memory_mib(text, "m") == mib


@pytest.mark.parametrize("text", ["2 G", "2GB", "0", "-1G", "1.5G", "512K", 2048])
def test_a_memory_size_sbatch_would_refuse_is_refused(text):
    with pytest.raises(SettingsError, match="like 2G"):
        memory_mib(text, "m")


def test_partitions_are_read_from_slurm_conf():
    conf = (
        "ClusterName=c\nPartitionName=DEFAULT MaxTime=1:00:00\n"
        "PartitionName=jupyter Nodes=n[1-2] Default=YES\n  partitionname=gpu Nodes=g1\n"
        "# PartitionName=old\n"
    )
    assert conf_partitions(conf) == ("jupyter", "gpu")


# --- settings ------------------------------------------------------------------------


def _slurm(**changes):
    def mutate(data):
        data["spawner"]["slurm"].update(changes)

    return mutate


def _spawner(**changes):
    def mutate(data):
        data["spawner"].update(changes)

    return mutate


def _hub(url):
    def mutate(data):
        data["hub"]["bind_url"] = url

    return mutate


BAD = {
    "section missing": (_spawner(slurm=None), "spawner.slurm", "required"),
    "section elsewhere": (
        _spawner(kind="local"),
        "spawner.slurm",
        'only used with kind "slurm"',
    ),
    "no partition": (_slurm(partitions=[]), "spawner.slurm.partitions", "at least one"),
    "partition name": (
        _slurm(partitions=["a b"]),
        "spawner.slurm.partitions[0]",
        "not a valid partition name",
    ),
    "walltime format": (_slurm(walltime="1h"), "spawner.slurm.walltime", "not a walltime"),
    "walltime above its bound": (
        _slurm(walltime="09:00:00"),
        "spawner.slurm.walltime",
        "above the largest allowed",
    ),
    "memory format": (_slurm(memory_max="4 GB"), "spawner.slurm.memory_max", "like 2G"),
    "memory above its bound": (_slurm(memory="8G"), "spawner.slurm.memory", "above the largest"),
    "cpus zero": (_slurm(cpus_max=0), "spawner.slurm.cpus_max", "at least 1"),
    "cpus above their bound": (_slurm(cpus=3), "spawner.slurm.cpus", "above the largest"),
    "directive short form": (
        _slurm(directives=["-C avx2"]),
        "spawner.slurm.directives[0]",
        "long form",
    ),
    "directive with a template": (
        _slurm(directives=["--comment={{username}}"]),
        "spawner.slurm.directives[0]",
        "no spaces, quotes, braces",
    ),
    "directive the form owns": (
        _slurm(directives=["--time=99:00:00"]),
        "spawner.slurm.directives[0]",
        "sets --time",
    ),
    "directive the spawner owns": (
        _slurm(directives=["--output=/tmp/x"]),
        "spawner.slurm.directives[0]",
        "sets --output",
    ),
    "prologue not shell": (
        _slurm(prologue="module load python\nif true; then\n"),
        "spawner.slurm.prologue",
        "not valid shell",
    ),
    "limits of other kinds": (_spawner(mem_limit="2G"), "spawner.mem_limit", "kind slurm"),
    "hub on loopback": (_hub("http://127.0.0.1:8081"), "hub.bind_url", "cannot reach"),
    "hub on every address": (_hub("http://0.0.0.0:8081"), "hub.bind_url", "cannot reach"),
    "hub by name": (_hub("http://hub.example.org:8081"), "hub.bind_url", "not an IP address"),
    "hub on a public address": (_hub("http://192.0.43.10:8081"), "hub.bind_url", "public"),
}


@pytest.mark.parametrize(("mutate", "setting", "message"), BAD.values(), ids=BAD.keys())
def test_bad_slurm_settings_name_the_setting(slurm_data, mutate, setting, message):
    mutate(slurm_data)
    with pytest.raises(SettingsError, match=message) as raised:
        parse_settings(slurm_data)
    assert raised.value.setting == setting


def test_a_hub_that_is_not_root_cannot_submit_jobs(slurm_data):
    slurm_data["spawner"]["sudospawner"] = __file__
    with pytest.raises(SettingsError, match="sudo rule for those") as raised:
        parse_settings(slurm_data)
    assert raised.value.setting == "spawner.sudospawner"


def test_offered_partitions_must_be_in_the_hosts_slurm_conf(slurm_data, tmp_path: Path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("PartitionName=jupyter Nodes=n1 Default=YES\n")
    slurm_data["spawner"]["slurm"]["conf_file"] = str(conf)
    with pytest.raises(SettingsError, match="'short' is not a partition of") as raised:
        parse_settings(slurm_data)
    assert raised.value.setting == "spawner.slurm.partitions[1]"
    conf.write_text("PartitionName=jupyter Nodes=n1\nPartitionName=short Nodes=n1\n")
    assert parse_settings(slurm_data).spawner.slurm.job.partitions == ("jupyter", "short")
    conf.unlink()
    with pytest.raises(SettingsError, match="cannot be read"):
        parse_settings(slurm_data)
    # Away from the host (the inventory check) the file is not read.
    assert parse_settings(slurm_data, on_host=False).spawner.kind == "slurm"


def test_the_slurm_kind_configures_batchspawner(slurm_data):
    slurm_data["spawner"]["slurm"].update(
        directives=["--constraint=avx2"],
        prologue="module load python/3.11",
        singleuser="/opt/jupyterhub/venv/bin/batchspawner-singleuser",
    )
    c = Config()
    apply_settings(c, parse_settings(slurm_data))
    assert c.JupyterHub.spawner_class == "hub_app.spawners.HubSlurmSpawner"
    assert c.JupyterHub.hub_bind_url == PRIVATE_HUB
    spawner = HubSlurmSpawner(config=c)
    assert spawner.req_partition == "jupyter"
    assert (spawner.req_runtime, spawner.req_memory, spawner.req_nprocs) == (
        "01:00:00",
        "1024M",
        "1",
    )
    assert spawner.req_prologue == "module load python/3.11"
    assert spawner.batchspawner_singleuser_cmd == "/opt/jupyterhub/venv/bin/batchspawner-singleuser"
    assert "#SBATCH --constraint=avx2\n" in spawner.batch_script
    assert spawner.start_timeout == c.Spawner.start_timeout


# --- the job script -------------------------------------------------------------------


def test_the_job_script_asks_for_what_the_form_chose():
    spawner = HubSlurmSpawner(
        form_partitions=["jupyter", "short"],
        job_directives=["--qos=class"],
        req_username="alice",
        req_homedir="/home/alice",
        req_keepvars="PATH,JUPYTERHUB_API_TOKEN",
    )
    spawner.apply_job_options(
        check_user_options(
            {"partition": "short", "walltime": "30:00", "memory": "2G", "cpus": "2"},
            spawner.form_settings(),
        )
    )
    subvars = spawner.get_req_subvars()
    subvars["cmd"] = "jupyterhub-singleuser"
    from batchspawner.batchspawner import format_template

    script = format_template(spawner.batch_script, **subvars)
    for line in (
        "#SBATCH --partition=short",
        "#SBATCH --time=00:30:00",
        "#SBATCH --mem=2048M",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --qos=class",
        "#SBATCH --job-name=jupyterhub-alice",
        "#SBATCH --export=PATH,JUPYTERHUB_API_TOKEN",
    ):
        assert f"{line}\n" in script
    assert "--get-user-env" not in script
    # The server's step keeps what the prologue set.
    assert "\nsrun --export=ALL /" not in script  # cmd here is a bare name
    assert "\nsrun --export=ALL jupyterhub-singleuser\n" in script
    assert subprocess.run(["/bin/bash", "-n"], input=script, text=True, check=False).returncode == 0


def test_the_job_keeps_its_job_id_across_hub_restarts():
    spawner = HubSlurmSpawner()
    spawner.job_id = "42"
    state = spawner.get_state()
    restarted = HubSlurmSpawner()
    restarted.load_state(state)
    assert restarted.job_id == "42"


# --- the form's job fields ------------------------------------------------------------

JOB = JobBounds(
    partitions=("jupyter", "short"),
    walltime=3600,
    walltime_max=8 * 3600,
    memory=1024,
    memory_max=4096,
    cpus=1,
    cpus_max=2,
)
FORM = FormSettings(job=JOB)


def test_the_form_offers_the_job_fields_with_their_defaults():
    html = HubSlurmSpawner(form_partitions=["jupyter", "short"]).options_form
    assert 'name="partition"' in html and '<option value="short">' in html
    assert 'name="walltime" value="01:00:00"' in html
    assert 'name="memory" value="1024M"' in html
    assert 'max="4"' in html  # the spawner's default bound, cpus_max


def test_a_good_form_becomes_checked_options():
    form = {"partition": ["short"], "walltime": ["2:00:00"], "memory": ["512M"], "cpus": ["2"]}
    assert parse_form(form, FORM) == {
        "partition": "short",
        "walltime": "02:00:00",
        "memory": "512M",
        "cpus": 2,
    }


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        ({"partition": "gpu"}, "partition", "not one of the offered partitions"),
        ({"walltime": "2h"}, "walltime", "not a walltime"),
        ({"walltime": "09:00:00"}, "walltime", "longer than this hub allows \\(08:00:00\\)"),
        ({"memory": "8G"}, "memory", "more than this hub allows \\(4096M\\)"),
        ({"memory": "lots"}, "memory", "not a memory size"),
        ({"cpus": 3}, "cpus", "from 1 to 2"),
        ({"cpus": "0"}, "cpus", "from 1 to 2"),
        ({"cpus": True}, "cpus", "from 1 to 2"),
        ({"cpus": "1.5"}, "cpus", "from 1 to 2"),
    ],
)
def test_a_bad_job_field_is_refused_naming_it(options, field, says):
    with pytest.raises(FormError, match=says) as raised:
        check_user_options(options, FORM)
    assert raised.value.field == field


def test_other_kinds_take_no_job_fields():
    with pytest.raises(FormError, match="does not run servers as batch jobs"):
        check_user_options({"partition": "jupyter"}, FormSettings(environment=True))


# --- the inventory: which cluster, which partitions ----------------------------------

KEY = base64.b64encode(b"k" * 64).decode()
BUNDLED = {"jupyterhub_spawner_kind": "slurm", "jupyterhub_hub_bind_url": PRIVATE_HUB}
BUNDLED_SETTINGS = {"spawner.kind": "slurm", "spawner.slurm": SLURM, "hub.bind_url": PRIVATE_HUB}
CLUSTER = {"slurm_controllers": ["hub"], "slurm_nodes": ["n1", "n2"]}
CONF = "ClusterName=site\nPartitionName=jupyter Nodes=n[1-9] MaxTime=12:00:00 Default=YES\n"
EXISTING = BUNDLED | {"slurm_cluster": "existing", "slurm_conf": CONF, "slurm_munge_key": KEY}
TWO_PARTITIONS = [{"name": "jupyter", "max_time": "08:00:00"}, {"name": "short", "nodes": ["n1"]}]


def check(variables, settings=BUNDLED_SETTINGS, groups=CLUSTER):
    return {problem.setting: problem.problem for problem in run(variables, settings, groups=groups)}


def test_a_bundled_cluster_passes():
    variables = BUNDLED | {
        "slurm_partitions": TWO_PARTITIONS,
        "jupyterhub_spawner_slurm_partitions": ["jupyter", "short"],
    }
    assert check(variables) == {}


def test_an_existing_cluster_passes():
    assert check(EXISTING, groups={"slurm_nodes": ["n1"]}) == {}


@pytest.mark.parametrize(
    ("variables", "groups", "blames", "says"),
    [
        (BUNDLED, {}, "jupyterhub_spawner_kind", "needs one host in the group slurm_controllers"),
        (
            BUNDLED | {"slurm_cluster_name": "My Cluster"},
            CLUSTER,
            "slurm_cluster_name",
            "lowercase letters, digits",
        ),
        (
            BUNDLED | {"slurm_node_reserved_memory_mb": -512},
            CLUSTER,
            "slurm_node_reserved_memory_mb",
            "whole number",
        ),
        (
            BUNDLED,
            {"slurm_controllers": ["a", "b"], "slurm_nodes": ["n1"]},
            "jupyterhub_spawner_kind",
            "(it has 2)",
        ),
        ({}, CLUSTER, "jupyterhub_spawner_kind", "would not use"),
        (EXISTING | {"slurm_conf": ""}, {}, "slurm_conf", "needs the cluster's slurm.conf"),
        (EXISTING | {"slurm_munge_key": "not base64!"}, {}, "slurm_munge_key", "base64"),
        (EXISTING | {"slurm_munge_key": "c2hvcnQ="}, {}, "slurm_munge_key", "at least 32 bytes"),
        (EXISTING, CLUSTER, "slurm_controllers", "not this bundle's"),
        (
            BUNDLED | {"jupyterhub_spawner_slurm_partitions": ["gpu"]},
            CLUSTER,
            "jupyterhub_spawner_slurm_partitions[0]",
            "'gpu' is not a partition of the cluster (slurm_partitions has jupyter)",
        ),
        (
            EXISTING | {"jupyterhub_spawner_slurm_partitions": ["debug"]},
            {},
            "jupyterhub_spawner_slurm_partitions[0]",
            "(slurm_conf has jupyter)",
        ),
        (
            BUNDLED | {"slurm_partitions": [{"name": "jupyter", "max_time": "04:00:00"}]},
            CLUSTER,
            "jupyterhub_spawner_slurm_walltime_max",
            "would wait forever",
        ),
        (
            BUNDLED | {"slurm_partitions": [{"name": "jupyter", "max_time": "4h"}]},
            CLUSTER,
            "slurm_partitions[0].max_time",
            "not a walltime",
        ),
        (
            BUNDLED | {"slurm_partitions": [{"name": "jupyter", "nodes": ["n3"]}]},
            CLUSTER,
            "slurm_partitions[0].nodes",
            "must list hosts of the slurm_nodes group (n1, n2), not n3",
        ),
        (
            BUNDLED | {"users_accounts": [{"name": "ann", "uid": 12}]},
            CLUSTER,
            "users_accounts[0].uid",
            "from 1000 to 60000",
        ),
        (
            BUNDLED
            | {"users_accounts": [{"name": "ann", "uid": 2001}, {"name": "bo", "uid": 2001}]},
            CLUSTER,
            "users_accounts[1].uid",
            "already ann's",
        ),
    ],
)
def test_a_bad_cluster_is_refused_naming_the_variable(variables, groups, blames, says):
    problems = check(variables, groups=groups)
    assert blames in problems, problems
    assert says in problems[blames]


def test_the_hub_address_is_blamed_on_the_inventory_variable():
    problems = check(BUNDLED, BUNDLED_SETTINGS | {"hub.bind_url": "http://127.0.0.1:8081"})
    assert "cannot reach" in problems["jupyterhub_hub_bind_url"]


def test_slurm_commands_run_as_the_user_without_sudo():
    spawner = HubSlurmSpawner()
    assert spawner.exec_prefix == "/usr/sbin/runuser -u {username} --"


# --- a job that dies before its server answers ----------------------------------------
# Slurm cannot run in the unit tests: two shell commands stand in for sbatch and
# squeue (a file holds the job's state). The real cluster is the Molecule
# scenario's.


def _stand_in_spawner(tmp_path: Path) -> tuple[HubSlurmSpawner, Path]:
    from types import SimpleNamespace

    state = tmp_path / "job-state"
    state.write_text("PENDING \n")
    spawner = HubSlurmSpawner(
        user=SimpleNamespace(name="alice", id=1, url="/user/alice/"),
        exec_prefix="",
        batch_submit_cmd="cat > /dev/null; echo 42",
        batch_query_cmd=f"cat {state}",
        req_username="alice",
        req_homedir=str(tmp_path),
        req_keepvars="PATH",
        startup_poll_interval=0.05,
        job_watch_interval=0.1,
    )
    spawner.get_env = lambda: {"PATH": "/usr/bin:/bin"}
    return spawner, state


def test_a_job_that_ends_before_its_server_answers_fails_the_spawn_at_once(tmp_path: Path):
    import asyncio

    spawner, state = _stand_in_spawner(tmp_path)

    async def run():
        start = asyncio.ensure_future(spawner.start())
        await asyncio.sleep(0.3)
        assert not start.done()  # pending in the queue: waits
        state.write_text("RUNNING node1\n")
        await asyncio.sleep(0.3)
        assert not start.done()  # running, the server not reported yet: waits
        assert spawner.ip == "node1"
        state.write_text("")  # the job is gone (the server failed on the node)
        return await asyncio.wait_for(start, 2)

    with pytest.raises(RuntimeError, match=r"job 42 ended before the server started.*-42\.log"):
        asyncio.run(run())
    assert spawner.job_id == ""


def test_a_job_whose_server_reports_its_port_starts(tmp_path: Path):
    import asyncio

    spawner, state = _stand_in_spawner(tmp_path)
    spawner.db = type("Db", (), {"commit": lambda self: None})()

    async def run():
        start = asyncio.ensure_future(spawner.start())
        state.write_text("RUNNING node2\n")
        await asyncio.sleep(0.3)
        spawner.port = 43210  # what batchspawner's API handler sets
        return await asyncio.wait_for(start, 2)

    assert asyncio.run(run()) == ("node2", 43210)


# --- what a server may report to the hub -------------------------------------------


def test_batchspawners_report_handler_takes_only_the_port():
    from jupyterhub.apihandlers import default_handlers

    from hub_app.spawners import PortReportHandler

    handlers = [handler for pattern, handler in default_handlers if "batchspawner" in pattern]
    assert handlers == [PortReportHandler]


@pytest.mark.parametrize(
    "report",
    [
        {"exec_prefix": "touch /root/owned;"},
        {"port": 8888, "batch_query_cmd": "id"},
        {"port": "8888"},
        {"port": 0},
        ["port", 8888],
        None,
    ],
)
def test_a_report_of_anything_but_the_port_is_refused(report):
    from tornado.web import HTTPError

    from hub_app.spawners import checked_port_report

    with pytest.raises(HTTPError) as raised:
        checked_port_report(report)
    assert raised.value.status_code == 400


def test_a_port_report_passes():
    from hub_app.spawners import checked_port_report

    assert checked_port_report({"port": 43210}) == 43210
