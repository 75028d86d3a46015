#!/usr/bin/env python3
"""Spawn latency of a deployed hub, beside the bare single-user server's start time.

Run on a hub host (or pipe into a test container) as root with the hub's Python:

    podman exec -i spawn-systemd /opt/jupyterhub/venv/bin/python - --user alice \\
        --runs 10 < benchmarks/spawn_latency.py

For each run it asks the hub's REST API to start USER's server (the request
``hub-app server start`` sends), times until the hub's progress event stream says
it is ready (what the spawn page waits for), then stops it and waits until it is
gone; the server's options are the hub's defaults (an
empty options form). Then it starts ``jupyterhub-singleuser`` by hand, as USER,
with the same environment a spawner gives it (a real token of USER's), and times
until its API answers (polled every 50 ms): the floor any spawner adds to. The
two alternate, run by run, so both see the same load. With the docker spawner it
also starts the default image's server by hand (``podman run``, the host's network,
the same environment): the floor of a container start. Prints a Markdown table.

With --bare-variants it times only bare starts, of each variant in turn (another
environment's Python, extra server arguments, another PATH): what a part of the
start costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from hub_app.api import HubClient
from hub_app.settings import load_settings, read_secret_file

PODMAN = "/usr/bin/podman"
# A variant of the bare start: {"python": another environment's interpreter,
# "args": extra server arguments, "path": the server's PATH}; all optional.
Variant = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_spawn(client: HubClient, user: str, timeout: float) -> float:
    """Seconds from the start request until the spawn page would see "ready".

    The spawn page learns it from the hub's progress event stream, as soon as
    the hub marks the server ready; reading the same stream here adds no poll
    interval to the figure.
    """
    start = time.monotonic()
    if client.start_server(user) != 201:
        for event in client.iter_progress(user, timeout):
            if event.get("failed"):
                raise RuntimeError(f"the spawn failed: {event.get('message')}")
            if event.get("ready"):
                break
    elapsed = time.monotonic() - start
    client.wait_for_server(user, "ready", timeout=timeout)
    client.stop_server(user)
    client.wait_for_server(user, "stopped", timeout=timeout)
    return elapsed


def server_env(settings, user: str, token: str, port: int) -> dict[str, str]:
    """The variables a spawner gives a server, for USER's server on ``port``."""
    prefix = f"/user/{user}/"
    return {
        "USER": user,
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": settings.hub_api_url,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
    }


def wait_until_answering(url: str, start: float, timeout: float) -> float:
    """Seconds from ``start`` until ``url`` answers 200."""
    while True:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.ConnectionError:
            pass
        time.sleep(0.05)


def start_bare(
    settings, user: str, token: str, port: int, variant: Variant | None = None
) -> subprocess.Popen:
    """``jupyterhub-singleuser`` started by hand as USER on ``port``, as a spawner would.

    ``variant`` starts it with another environment's Python, extra arguments or
    another PATH.
    """
    account = pwd.getpwnam(user)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": account.pw_dir,
        **server_env(settings, user, token, port),
    }
    server = settings.spawner.cmd[0]
    program, extra = [server], []
    if variant is not None:
        extra = variant.get("args", [])
        env["PATH"] = variant.get("path", env["PATH"])
        if variant.get("python"):
            python = Path(variant["python"])
            program = [str(python), str(python.parent / Path(server).name)]
    return subprocess.Popen(  # noqa: S603 -- the hub's own server command
        [*program, f"--port={port}", "--ip=127.0.0.1", *extra],
        env=env,
        cwd=account.pw_dir,
        user=account.pw_uid,
        group=account.pw_gid,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def time_bare(
    settings, user: str, token: str, timeout: float, variant: Variant | None = None
) -> float:
    """Seconds until a server started by hand answers its API (then it is stopped)."""
    port = free_port()
    start = time.monotonic()
    process = start_bare(settings, user, token, port, variant)
    try:
        return wait_until_answering(f"http://127.0.0.1:{port}/user/{user}/api", start, timeout)
    finally:
        process.terminate()
        process.wait(30)


def time_bare_container(settings, user: str, token: str, runs: int, timeout: float) -> list[float]:
    """The default image's server started with ``podman run``, as the docker spawner runs it."""
    times = []
    for run in range(runs):
        port = free_port()
        name = f"spawn-latency-bare-{os.getpid()}-{run}"
        env_args = [
            arg
            for key, value in server_env(settings, user, token, port).items()
            for arg in ("--env", f"{key}={value}")
        ]
        start = time.monotonic()
        subprocess.run(  # noqa: S603 -- our own fixed command
            [
                PODMAN,
                "run",
                "--detach",
                "--rm",
                "--name",
                name,
                "--network",
                "host",
                *env_args,
                settings.spawner.docker.images[0],
                *settings.spawner.docker.cmd,
                f"--port={port}",
                "--ip=127.0.0.1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            times.append(
                wait_until_answering(f"http://127.0.0.1:{port}/user/{user}/api", start, timeout)
            )
        finally:
            subprocess.run(  # noqa: S603 -- our own fixed command
                [PODMAN, "rm", "--force", "--time", "5", name],
                check=False,
                stdout=subprocess.DEVNULL,
            )
    return times


def compare_bare_variants(settings, args, token: str, variants: dict[str, Variant]) -> None:
    """Time bare starts of each variant, taking turns run by run; print a table."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, variant in variants.items():
            times[name].append(time_bare(settings, args.user, token, args.timeout, variant))
    print_table(
        f"host: {platform.node()}, {os.cpu_count()} CPUs",
        [(f"bare jupyterhub-singleuser, {name}", values) for name, values in times.items()],
    )


def print_table(heading: str, rows: list[tuple[str, list[float]]]) -> None:
    """Print ``heading``, then one Markdown row of median, worst and best per row."""
    print(heading)
    print()
    print("| what | runs | median s | worst s | best s |")
    print("|---|---|---|---|---|")
    for name, times in rows:
        print(
            f"| {name} | {len(times)} | {statistics.median(times):.2f} | {max(times):.2f} "
            f"| {min(times):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="alice")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--settings", default="/etc/jupyterhub/hub_app.json")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument(
        "--bare-variants",
        metavar="JSON",
        help='only bare starts, of each variant in turn: {"name": {"python", "args", "path"}}',
    )
    args = parser.parse_args()
    settings = load_settings(args.settings)
    token = read_secret_file(settings.api_client.token_file, "api_client.token_file")
    with HubClient(settings.hub_api_url, token) as client:
        token = client.create_token(args.user, note="spawn-latency benchmark", expires_in=3600)
        if args.bare_variants:
            compare_bare_variants(settings, args, token["token"], json.loads(args.bare_variants))
            return
        # Side by side: each run starts through the hub, then by hand, so both
        # see the same load on a noisy machine.
        spawns, bares = [], []
        for _ in range(args.runs):
            spawns.append(time_spawn(client, args.user, args.timeout))
            if not args.skip_bare:
                bares.append(time_bare(settings, args.user, token["token"], args.timeout))
        rows = [(f"spawn through the hub ({settings.spawner.kind})", spawns)]
        if bares:
            rows.append(("bare jupyterhub-singleuser", bares))
            if settings.spawner.kind == "docker":
                rows.append(
                    (
                        f"bare podman run of {settings.spawner.docker.images[0]}",
                        time_bare_container(
                            settings, args.user, token["token"], args.runs, args.timeout
                        ),
                    )
                )
    print_table(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, spawner {settings.spawner.kind}", rows
    )
    if bares:
        print()
        print(
            f"spawn / bare: median {statistics.median(spawns) / statistics.median(bares):.2f}, "
            f"worst {max(spawns) / max(bares):.2f} "
            f"(worst spawn / median bare {max(spawns) / statistics.median(bares):.2f})"
        )


if __name__ == "__main__":
    main()
