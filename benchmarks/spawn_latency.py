#!/usr/bin/env python3
"""Spawn latency of a deployed hub, beside the bare single-user server's start time.

Run on a hub host (or pipe into a test container) as root with the hub's Python:

    podman exec -i spawn-systemd /opt/jupyterhub/venv/bin/python - --user alice \\
        --runs 10 < benchmarks/spawn_latency.py

For each run it asks the hub's REST API to start USER's server (the request
``hub-app server start`` sends), times until the hub reports it ready, then stops
it and waits until it is gone; the server's options are the hub's defaults (an
empty options form). Then it starts ``jupyterhub-singleuser`` by hand, as USER,
with the same environment a spawner gives it (a real token of USER's), and times
until its API answers: the floor any spawner adds to. With the docker spawner it
also starts the default image's server by hand (``podman run``, the host's network,
the same environment): the floor of a container start. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import socket
import statistics
import subprocess
import time

import requests
from hub_app.api import HubClient
from hub_app.settings import load_settings, read_secret_file

PODMAN = "/usr/bin/podman"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_spawns(client: HubClient, user: str, runs: int, timeout: float) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.monotonic()
        client.start_server(user)
        client.wait_for_server(user, "ready", timeout=timeout)
        times.append(time.monotonic() - start)
        client.stop_server(user)
        client.wait_for_server(user, "stopped", timeout=timeout)
    return times


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


def start_bare(settings, user: str, token: str, port: int) -> subprocess.Popen:
    """``jupyterhub-singleuser`` started by hand as USER on ``port``, as a spawner would."""
    account = pwd.getpwnam(user)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": account.pw_dir,
        **server_env(settings, user, token, port),
    }
    return subprocess.Popen(  # noqa: S603 -- our own fixed command
        [settings.spawner.cmd[0], f"--port={port}", "--ip=127.0.0.1"],
        env=env,
        cwd=account.pw_dir,
        user=account.pw_uid,
        group=account.pw_gid,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def time_bare(settings, user: str, token: str, runs: int, timeout: float) -> list[float]:
    times = []
    for _ in range(runs):
        port = free_port()
        start = time.monotonic()
        process = start_bare(settings, user, token, port)
        try:
            times.append(
                wait_until_answering(f"http://127.0.0.1:{port}/user/{user}/api", start, timeout)
            )
        finally:
            process.terminate()
            process.wait(30)
    return times


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


def row(name: str, times: list[float]) -> str:
    return (
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
    args = parser.parse_args()
    settings = load_settings(args.settings)
    token = read_secret_file(settings.api_client.token_file, "api_client.token_file")
    with HubClient(settings.hub_api_url, token) as client:
        spawns = time_spawns(client, args.user, args.runs, args.timeout)
        rows = [(f"spawn through the hub ({settings.spawner.kind})", spawns)]
        if not args.skip_bare:
            token = client.create_token(args.user, note="spawn-latency benchmark", expires_in=3600)[
                "token"
            ]
            rows.append(
                (
                    "bare jupyterhub-singleuser",
                    time_bare(settings, args.user, token, args.runs, args.timeout),
                )
            )
            if settings.spawner.kind == "docker":
                rows.append(
                    (
                        f"bare podman run of {settings.spawner.docker.images[0]}",
                        time_bare_container(settings, args.user, token, args.runs, args.timeout),
                    )
                )
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, spawner {settings.spawner.kind}")
    print()
    print("| what | runs | median s | worst s | best s |")
    print("|---|---|---|---|---|")
    for name, times in rows:
        print(row(name, times))


if __name__ == "__main__":
    main()
