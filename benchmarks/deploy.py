#!/usr/bin/env python3
"""Time ``./bin/deploy`` on a fresh Debian 12 host, cold and re-run, beside its floor.

Run as root from the repository's root, with nothing else timed on the machine:

    python3 benchmarks/deploy.py [--ref HEAD] [--results benchmarks/results/deploy.md]

The fresh host is a container of the Molecule test image (systemd as init,
built by scripts/build-test-image), with the image's dpkg shortcut for tests
(force-unsafe-io) removed, so that dpkg syncs as on a real host, and no host
download cache mounted: everything is downloaded, as a new operator's first run
does. The bundle goes in as ``git archive REF`` (a fresh clone's files).

1. Cold: ``./bin/deploy`` (it installs Ansible, then runs site.yml with the
   embedded inventory), timed whole, with Ansible's profile_tasks.
2. Re-run: ``./bin/deploy`` again on the deployed host (changed=0 expected),
   then once more with ``ANSIBLE_STRATEGY=linear`` (Ansible's own strategy
   instead of Mitogen's, which bin/deploy selects), side by side.
3. The re-run's floor: as many module runs as the re-run's recap counts (ok),
   each a ``stat`` of /, through the same Ansible on the same host, with each
   of the two strategies.
4. The cold run's floor, in a second fresh container: the package installs
   alone, the same packages at the same versions as the deploy installed them:
   ``apt-get update`` and ``apt-get install`` of every Debian package the deploy
   added, each virtual environment the deploy made (its ``pip freeze``,
   installed with ``--no-deps``: no resolution, only downloads and installs),
   and the proxy's npm package, installed by the same npm as the deploy's
   (npm's own package from the registry, fetched and unpacked first).

Appends to the results file: the date, commit, machine, what else ran, the
commands, the three times, the recaps and each run's slowest tasks.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import subprocess
import sys
import time

from ci_time import CONTAINERS_CONF, REPO, benchmark_arguments, machine, what_else_runs

IMAGE = "localhost/jupyterhub-bundle-test:debian12"
BUNDLE = "/root/jupyterhub-bundle"
DEPLOY_VENV = f"{BUNDLE}/.venv-deploy"
UNSAFE_IO = "/etc/dpkg/dpkg.cfg.d/test-image-unsafe-io"
FLOOR_DIR = "/root/floor"
CHP_PACKAGE_JSON = "*/node_modules/configurable-http-proxy/package.json"
# The npm the proxy role fetches (roles/proxy/vars/main.yml __proxy_npm_dir).
NPM_PACKAGE_JSON = "/opt/configurable-http-proxy/npm-*/package.json"
NPM_TARBALL = "https://registry.npmjs.org/npm/-/npm-{version}.tgz"
VERSION_OF = "python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[\"version\"])'"
RECAP = re.compile(r"^\S+\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# profile_tasks' summary lines: "role : Task name ------ 12.34s"
# (a name too long for the line leaves only the two dashes before the time)
PROFILE_LINE = re.compile(r"^(.+?) ?-{2,} +(\d+\.\d+)s$", re.M)
ENV = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, stdin: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run(  # noqa: S603 -- podman with this script's arguments
        ["podman", *args],  # noqa: S607
        input=stdin,
        capture_output=True,
        env=ENV,
        check=False,
    )
    if check and result.returncode != 0:
        sys.exit(f"podman {' '.join(args[:3])}... failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def shell(container: str, script: str, check: bool = True) -> tuple[float, str, int]:
    """Run ``script`` in the container with bash; return (seconds, output, status)."""
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 -- podman exec of this script's commands
        ["podman", "exec", container, "bash", "-c", script],  # noqa: S607
        capture_output=True,
        env=ENV,
        check=False,
    )
    seconds = time.monotonic() - started
    output = (result.stdout + result.stderr).decode(errors="replace")
    if check and result.returncode != 0:
        sys.exit(f"in {container}: {script!r} failed ({result.returncode}):\n{output[-3000:]}")
    return seconds, output, result.returncode


def fresh_host(name: str) -> str:
    podman("rm", "--force", "--time", "0", name, check=False)
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--hostname",
        name,
        "--systemd=always",
        IMAGE,
        "/sbin/init",
    )
    # systemd must be up before services are enabled and started.
    deadline = time.monotonic() + 60
    while shell(name, "systemctl is-system-running --wait", check=False)[1].strip() not in {
        "running",
        "degraded",
    }:
        if time.monotonic() > deadline:
            sys.exit(f"{name}: systemd did not start within 60 s")
        time.sleep(1)
    shell(name, f"rm -f {UNSAFE_IO}")
    return name


def packages(container: str) -> set[str]:
    return set(shell(container, "dpkg-query -W -f '${Package}=${Version}\\n'")[1].split())


def virtual_environments(container: str) -> list[str]:
    return shell(container, "find / -xdev -name pyvenv.cfg -printf '%h\\n'")[1].split()


def frozen_requirements(container: str, venv: str) -> str:
    """What ``pip freeze`` lists, less pip itself and what was not downloaded
    (the bundle's hub_app, installed from its archive: ``name @ file://``)."""
    frozen = shell(container, f"{venv}/bin/pip freeze --all --exclude-editable")[1]
    kept = [
        line
        for line in frozen.splitlines()
        if line and not line.startswith("pip==") and " @ " not in line
    ]
    return "\n".join(kept) + "\n"


def deploy(container: str, environment: str = "") -> tuple[float, str]:
    script = (
        f"cd {BUNDLE} && {environment} ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks "
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT=15 ANSIBLE_NOCOLOR=1 ./bin/deploy"
    )
    seconds, output, _ = shell(container, script)
    return seconds, output


# What bin/deploy exports to select Mitogen's strategy.
MITOGEN = (
    "ANSIBLE_STRATEGY=mitogen_linear ANSIBLE_STRATEGY_PLUGINS=$(.venv-deploy/bin/python -c "
    "'import ansible_mitogen, os; print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "
    '"plugins", "strategy"))\')'
)
LINEAR = "ANSIBLE_STRATEGY=linear"


def ansible_floor(container: str, tasks: int, strategy: str) -> float:
    """Seconds for ``tasks`` module runs that do nothing (``stat`` of /), through
    the deploy's own Ansible and ansible.cfg on the same host, with ``strategy``
    (MITOGEN or LINEAR): what any play of that many tasks costs there before its
    modules do any work."""
    play = "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n" + (
        "    - ansible.builtin.stat: {path: /}\n" * tasks
    )
    podman("exec", "-i", container, "tee", f"{FLOOR_DIR}/noop.yml", stdin=play.encode())
    return shell(
        container,
        f"cd {BUNDLE} && {strategy} .venv-deploy/bin/ansible-playbook -i localhost, "
        f"{FLOOR_DIR}/noop.yml",
    )[0]


def tasks_run(output: str) -> int:
    """The module runs a recap counts (ok, which includes changed)."""
    match = RECAP.findall(output)
    return int(match[-1][0]) if match else 0


def recap(output: str) -> str:
    match = RECAP.findall(output)
    if not match:
        return "(no recap)"
    ok, changed, unreachable, failed = match[-1]
    return f"ok={ok} changed={changed} unreachable={unreachable} failed={failed}"


def slowest(output: str) -> list[str]:
    return [f"{seconds:>7}s {name.strip()}" for name, seconds in PROFILE_LINE.findall(output)]


def floor(
    container: str, added: list[str], venvs: dict[str, str], npm: str, packages: dict[str, str]
) -> dict:
    times = {}
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
    times["apt-get update"] = shell(container, f"mkdir -p {FLOOR_DIR} && apt-get update -qq")[0]
    times[f"apt-get install ({len(added)} packages)"] = shell(
        container, apt + " ".join(shlex.quote(p) for p in sorted(added))
    )[0]
    for index, (path, frozen) in enumerate(sorted(venvs.items())):
        requirements = f"{FLOOR_DIR}/requirements-{index}.txt"
        podman("exec", "-i", container, "tee", requirements, stdin=frozen.encode())
        target = f"{FLOOR_DIR}/venv-{index}"
        # bin/deploy installs its own Ansible without compiling it; the roles'
        # environments are compiled (their users cannot write the caches).
        compile_option = "--no-compile " if path == DEPLOY_VENV else ""
        times[f"venv + pip install {path} ({len(frozen.split())} packages)"] = shell(
            container,
            f"/usr/bin/python3 -m venv {target} && {target}/bin/pip install -q "
            f"--disable-pip-version-check {compile_option}--no-deps -r {requirements}",
        )[0]
    npm_cli = "npm"
    if npm:
        fetch = (
            f"import urllib.request; urllib.request.urlretrieve("
            f"{NPM_TARBALL.format(version=npm)!r}, '{FLOOR_DIR}/npm.tgz')"
        )
        times[f"fetch and unpack npm {npm}"] = shell(
            container,
            f"python3 -c {shlex.quote(fetch)} && mkdir -p {FLOOR_DIR}/npm-cli && "
            f"tar -xzf {FLOOR_DIR}/npm.tgz -C {FLOOR_DIR}/npm-cli --strip-components=1",
        )[0]
        npm_cli = f"NPM_CONFIG_GLOBALCONFIG=/etc/npmrc {FLOOR_DIR}/npm-cli/bin/npm-cli.js"
    for name, version in packages.items():
        times[f"npm install {name}@{version}"] = shell(
            container,
            f"{npm_cli} install -g --prefix {FLOOR_DIR}/npm {name}@{version} --no-fund --no-audit",
        )[0]
    return times


def main() -> int:
    args, commit = benchmark_arguments(
        __doc__, "deploy.md", "the commit to deploy", "keep the containers"
    )
    subprocess.run([str(REPO / "scripts" / "build-test-image"), "debian12"], check=True, env=ENV)  # noqa: S603
    started_at = datetime.datetime.now(datetime.UTC)
    before = what_else_runs()

    host = fresh_host("bench-deploy")
    archive = subprocess.run(  # noqa: S603
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],  # noqa: S607
        capture_output=True,
        check=True,
    ).stdout
    shell(host, f"mkdir -p {BUNDLE}")
    podman("exec", "-i", host, "tar", "-x", "-C", BUNDLE, stdin=archive)
    installed_before = packages(host)
    cold, cold_output = deploy(host)
    again, again_output = deploy(host)
    linear, linear_output = deploy(host, LINEAR)
    shell(host, f"mkdir -p {FLOOR_DIR}")
    again_floor = ansible_floor(host, tasks_run(again_output), MITOGEN)
    linear_floor = ansible_floor(host, tasks_run(linear_output), LINEAR)
    added = sorted(packages(host) - installed_before)  # name=version: the same versions
    venvs = {path: frozen_requirements(host, path) for path in virtual_environments(host)}
    find_chp = f"find / -xdev -path '{CHP_PACKAGE_JSON}' -exec {VERSION_OF} {{}} \\; -quit"
    chp = shell(host, find_chp)[1].strip()
    npm = shell(host, f"test ! -e {NPM_PACKAGE_JSON} || {VERSION_OF} {NPM_PACKAGE_JSON}")[1].strip()

    floor_host = fresh_host("bench-deploy-floor")
    floor_times = floor(
        floor_host, added, venvs, npm, {"configurable-http-proxy": chp} if chp else {}
    )
    floor_total = sum(floor_times.values())
    after = what_else_runs()
    if not args.keep:
        podman("rm", "--force", "--time", "0", host, floor_host, check=False)

    record = [
        "",
        f"## {started_at:%Y-%m-%d %H:%M} UTC, commit {commit[:12]}",
        "",
        f"Machine: {machine()}. At the start: {'; '.join(before)}.",
        f"At the end: {'; '.join(after)}.",
        "",
        "Commands (in containers of "
        f"`{IMAGE}`, started with `podman run --systemd=always`, `{UNSAFE_IO}` removed):",
        "",
        "```console",
        f"git archive {commit[:12]} | podman exec -i bench-deploy tar -x -C {BUNDLE}",
        f"podman exec bench-deploy bash -c 'cd {BUNDLE} && ./bin/deploy'   # cold, then again",
        f"podman exec bench-deploy bash -c 'cd {BUNDLE} && {LINEAR} ./bin/deploy'",
        "podman exec bench-deploy-floor bash -c 'apt-get update; apt-get install <the packages "
        "the deploy added>; python3 -m venv + pip install --no-deps -r <each venv's freeze>; "
        "fetch npm's package and unpack it; npm install -g configurable-http-proxy@<its version>'",
        "```",
        "",
        "| measure | seconds | |",
        "|---|---|---|",
        f"| cold `./bin/deploy` | {cold:.0f} | {recap(cold_output)} |",
        f"| the floor: package installs alone | {floor_total:.0f} | cold / floor = "
        f"{cold / floor_total:.2f} |",
        *[f"| - {name} | {seconds:.0f} | |" for name, seconds in floor_times.items()],
        f"| `./bin/deploy` re-run | {again:.0f} | {recap(again_output)} |",
        f"| the floor: {tasks_run(again_output)} module runs that do nothing (`stat` of /), "
        f"same Ansible, same host | {again_floor:.0f} | "
        f"re-run / floor = {again / again_floor:.2f} |",
        f"| `{LINEAR} ./bin/deploy` re-run (Ansible's own strategy) | {linear:.0f} | "
        f"{recap(linear_output)}; / Mitogen's = {linear / again:.2f} |",
        f"| the floor with `{LINEAR}` | {linear_floor:.0f} | "
        f"re-run / floor = {linear / linear_floor:.2f} |",
        "",
        "Slowest tasks, cold:",
        "",
        "```",
        *slowest(cold_output),
        "```",
        "",
        "Slowest tasks, re-run:",
        "",
        "```",
        *slowest(again_output),
        "```",
    ]
    with args.results.open("a") as out:
        out.write("\n".join(record) + "\n")
    print("\n".join(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
