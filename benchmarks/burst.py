#!/usr/bin/env python3
"""A class starting at once: N users' servers started together on a deployed hub.

Run as root on a hub host deployed with the local spawner and the hashed
authenticator with an initial administrator (``./bin/deploy`` does exactly that),
with the hub's Python, from the repository's root:

    /opt/jupyterhub/venv/bin/python benchmarks/burst.py --users 100

It makes N throw-away users (system accounts ``burst001``... and hub users,
through the initial administrator's token), then, in one run:

1. **floor**: starts the N servers by hand, ``jupyterhub-singleuser`` as each
   user with a real token of theirs, as many at a time as the host has cores,
   and times until the last one answers: the CPU floor of N server starts here;
2. **burst**: asks the hub's REST API to start all N servers at the same
   moment, polls each user's model once a second (as a spawn page would), and
   once the hub says ready, requests ``/user/NAME/api/status`` through the
   public URL (the proxy) with the user's token until it answers 200.

It reports how many servers were reachable and when, the failures with the
hub's reasons, and how long the hub's API took to answer the polls during the
burst; with ``--results FILE`` it appends that, the machine, what else ran and
the commands, as Markdown. Everything it made is removed at the end (servers,
hub users, accounts and homes), also when interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import os
import platform
import pwd
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from hub_app.api import HubClient, server_state
from hub_app.settings import load_settings
from hub_app.start_queue import default_slots

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spawn_latency import free_port, start_bare, wait_until_answering

# The public URL's certificate (self-signed or not), trusted as it is.
HUB_CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"
INITIAL_ADMIN_CREDENTIALS = Path("/root/jupyterhub-initial-admin.txt")


def admin_token(settings, credentials: Path) -> str:
    """A short-lived token of the initial administrator, from their generated password."""
    text = credentials.read_text()
    username = re.search(r"^username: (\S+)$", text, re.MULTILINE)[1]
    password = re.search(r"^password: (\S+)$", text, re.MULTILINE)[1]
    response = requests.post(
        f"{settings.hub_api_url}/users/{username}/tokens",
        json={
            "auth": {"username": username, "password": password},
            "note": "burst benchmark",
            "expires_in": 7200,
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["token"]


def make_users(names: list[str], admin: HubClient) -> None:
    for name in names:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            continue
        subprocess.run(["/usr/sbin/useradd", "--create-home", name], check=True)  # noqa: S603
    known = {user["name"] for user in admin.iter_users()}
    missing = [name for name in names if name not in known]  # left by an interrupted run
    if missing:
        admin.request("POST", "/users", json={"usernames": missing})


def remove_users(names: list[str], admin: HubClient) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            admin.request("DELETE", f"/users/{name}/server")
    deadline = time.monotonic() + 300
    for name in names:
        with contextlib.suppress(Exception):
            while server_state(admin.get_user(name)) != "stopped":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        with contextlib.suppress(Exception):
            admin.request("DELETE", f"/users/{name}")
        subprocess.run(  # noqa: S603 -- our own throw-away accounts
            ["/usr/sbin/userdel", "--remove", name],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def floor(settings, names: list[str], tokens: dict[str, str], workers: int) -> float:
    """Seconds to start every server by hand, ``workers`` at a time, until all answer."""
    processes: list[subprocess.Popen] = []
    lock = threading.Lock()

    def start_one(name: str) -> None:
        port = free_port()
        began = time.monotonic()
        process = start_bare(settings, name, tokens[name], port)
        with lock:
            processes.append(process)
        wait_until_answering(f"http://127.0.0.1:{port}/user/{name}/api", began, 600)

    began = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(start_one, names))
        return time.monotonic() - began
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)


class Burst:
    """Every user's start at once, watched as each user would watch it."""

    def __init__(
        self, settings, admin_token: str, tokens: dict[str, str], timeout: float, certificate: str
    ):
        self.settings = settings
        self.certificate = certificate
        self.admin_token = admin_token
        self.tokens = tokens
        self.timeout = timeout
        self.reachable: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.poll_seconds: list[float] = []
        self.lock = threading.Lock()
        self.public = settings.public_url.rstrip("/")

    def one_user(self, name: str, go: threading.Event, began: list[float]) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"token {self.admin_token}"
        api = self.settings.hub_api_url
        go.wait()
        start = began[0]
        try:
            response = session.post(f"{api}/users/{name}/server", timeout=60)
            if response.status_code not in (201, 202):
                self._fail(name, f"start refused: {response.status_code} {response.text[:200]}")
                return
            while True:  # the spawn page's poll, once a second
                asked = time.monotonic()
                try:
                    model = session.get(f"{api}/users/{name}", timeout=60).json()
                except requests.RequestException as error:
                    self._fail(name, f"the hub did not answer a poll: {error}")
                    return
                with self.lock:
                    self.poll_seconds.append(time.monotonic() - asked)
                state = server_state(model)
                if state == "ready":
                    break
                if state == "stopped":
                    self._fail(name, "the hub gave up on the server (see its log)")
                    return
                if time.monotonic() - start > self.timeout:
                    self._fail(name, f"still {state} after {self.timeout:g} s")
                    return
                time.sleep(max(0.0, 1.0 - (time.monotonic() - asked)))
            status_url = f"{self.public}/user/{name}/api/status"
            headers = {"Authorization": f"token {self.tokens[name]}"}
            while True:
                with contextlib.suppress(requests.RequestException):
                    answer = requests.get(
                        status_url, headers=headers, timeout=30, verify=self.certificate
                    )
                    if answer.status_code == 200:
                        with self.lock:
                            self.reachable[name] = time.monotonic() - start
                        return
                if time.monotonic() - start > self.timeout:
                    self._fail(name, "ready, but not reachable through the public URL")
                    return
                time.sleep(0.5)
        except requests.RequestException as error:
            self._fail(name, f"start request failed: {error}")

    def _fail(self, name: str, reason: str) -> None:
        with self.lock:
            self.failed[name] = reason

    def run(self, names: list[str]) -> float:
        go, began = threading.Event(), [0.0]
        threads = [
            threading.Thread(target=self.one_user, args=(name, go, began), daemon=True)
            for name in names
        ]
        for thread in threads:
            thread.start()
        began[0] = time.monotonic()
        go.set()
        for thread in threads:
            thread.join(self.timeout + 120)
        return time.monotonic() - began[0]


def activity() -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    busiest = subprocess.run(
        ["ps", "-eo", "pcpu,etime,comm", "--sort=-pcpu", "--no-headers"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()[:5]
    return f"load average {' '.join(load)}; busiest: " + "; ".join(
        " ".join(line.split()) for line in busiest
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--prefix", default="burst")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per user")
    parser.add_argument("--settings", default="/etc/jupyterhub/hub_app.json")
    parser.add_argument("--credentials", type=Path, default=INITIAL_ADMIN_CREDENTIALS)
    parser.add_argument(
        "--certificate", default=HUB_CERTIFICATE, help="the public URL's certificate to trust"
    )
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--results", type=Path, help="append the results (Markdown) here")
    args = parser.parse_args()

    settings = load_settings(args.settings)
    cores = len(os.sched_getaffinity(0))
    slots = settings.spawner.start_slots or default_slots()
    names = [f"{args.prefix}{number:03d}" for number in range(1, args.users + 1)]
    at_start = activity()
    started_at = datetime.datetime.now(datetime.UTC)
    token = admin_token(settings, args.credentials)
    admin = HubClient(settings.hub_api_url, token, timeout=60)
    try:
        make_users(names, admin)
        tokens = {
            name: admin.create_token(name, note="burst benchmark", expires_in=7200)["token"]
            for name in names
        }
        floor_seconds = None if args.skip_floor else floor(settings, names, tokens, cores)
        time.sleep(5)  # let the floor's servers go
        burst = Burst(settings, token, tokens, args.timeout, args.certificate)
        wall = burst.run(names)
        at_end = activity()
    finally:
        remove_users(names, admin)
        admin.close()

    reached = sorted(burst.reachable.values())
    polls = burst.poll_seconds
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rows = [
        ("reachable through the public URL", f"{len(reached)} of {args.users}"),
        ("burst wall time (s)", f"{wall:.1f}"),
        ("hub API polls answered", f"{len(polls)}"),
        ("hub API polls over 1 s", f"{sum(1 for p in polls if p > 1)}"),
    ]
    if reached:
        rows[1:1] = [
            ("first / median / last reachable (s from the start requests)",
             f"{reached[0]:.1f} / {statistics.median(reached):.1f} / {reached[-1]:.1f}"),
        ]  # fmt: skip
    if polls:
        rows.append(
            ("hub API poll median / p95 / worst (s)",
             f"{statistics.median(polls):.2f} / {percentile(polls, 0.95):.2f} / {max(polls):.2f}"),
        )  # fmt: skip
    if floor_seconds is not None:
        rows.append((f"floor: {args.users} bare server starts, {cores} at a time (s)",
                     f"{floor_seconds:.1f}"))  # fmt: skip
        if reached:
            rows.append(("last reachable / floor", f"{reached[-1] / floor_seconds:.2f}"))
    lines = [
        f"## {started_at:%Y-%m-%d %H:%M} UTC: {args.users} servers at once, "
        f"{len(reached)} reachable",
        "",
        f"Host {platform.node()}: {cores} cores, {memory_gib:.1f} GiB; spawner "
        f"{settings.spawner.kind}, start slots {slots} (setting {settings.spawner.start_slots}), "
        f"niceness {settings.spawner.nice}, queue timeout {settings.spawner.queue_timeout} s.",
        f"At the start: {at_start}.",
        f"At the end of the burst: {at_end}.",
        "",
        "```console",
        f"/opt/jupyterhub/venv/bin/python benchmarks/burst.py {' '.join(sys.argv[1:])}",
        "```",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {measure} | {value} |" for measure, value in rows),
    ]
    if burst.failed:
        reasons: dict[str, int] = {}
        for reason in burst.failed.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines += ["", "Failures:", ""]
        lines += [f"- {count} x {reason}" for reason, count in sorted(reasons.items())]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.results:
        with args.results.open("a") as results:
            results.write("\n" + report)
    return 0 if len(reached) == args.users else 1


if __name__ == "__main__":
    sys.exit(main())
