#!/usr/bin/env python3
"""Time the whole CI run (`.ci/run`) from a fresh clone, as CI runs it.

Run as root from the repository's root, on a machine nothing else is timed on:

    python3 benchmarks/ci_time.py [--ref HEAD] [--results benchmarks/results/ci-time.md]

It clones this repository at REF into a new directory (as CI does: a fresh
clone, nothing left over but the machine's image and download caches under
/var/cache/jupyterhub-bundle-tests), runs ``CI=true bash .ci/run`` there with no
standard input, and appends to the results file: the date, the commit, the
machine (cores, memory), what else ran at the start (load average, containers,
the busiest processes), the exact commands, the exit status, the wall time, and
the stage table ``bin/test`` prints at its end (every stage's seconds). With
``--keep`` the clone (its ``.test-logs``) and the run's whole output
(``ci-run.log``) are kept; without it they are removed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "scripts" / "podman" / "containers.conf"
# bin/test's last lines: "stage  seconds  result" then one row per stage, then "total".
STAGE_HEADER = re.compile(r"^stage\s+seconds\s+result\s*$")
STAGE_ROW = re.compile(r"^(\S+)\s+(\d+)(?:\s+(.*))?$")


def command_output(argv: list[str], **kwargs) -> str:
    """What ``argv`` prints, or why it could not run (the record must not fail)."""
    try:
        result = subprocess.run(  # noqa: S603 -- fixed commands of this script
            argv, capture_output=True, text=True, timeout=60, check=False, **kwargs
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"({argv[0]}: {error})"
    if result.returncode == 0:
        return result.stdout.strip()  # (warnings on stderr are not the answer)
    return f"({argv[0]} failed: {result.stderr.strip()})"


def machine() -> str:
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return f"{os.cpu_count()} cores, {memory_kib / 1024 / 1024:.1f} GiB"


def what_else_runs() -> list[str]:
    """The machine's activity when the run starts: load, containers, busiest processes."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    containers = command_output(["podman", "ps", "--format", "{{.Names}}"], env=env)
    busiest = command_output(["ps", "-eo", "pcpu,etime,comm", "--sort=-pcpu", "--no-headers"])
    return [
        f"load average: {Path('/proc/loadavg').read_text().split()[:3]}",
        f"containers running: {', '.join(containers.split()) or 'none'}",
        "busiest processes (%CPU, elapsed, command): "
        + "; ".join(" ".join(line.split()) for line in busiest.splitlines()[:5]),
    ]


def stage_table(output: str) -> list[tuple[str, str, str]]:
    """The rows of the last stage table in ``output``: (stage, seconds, result)."""
    lines = output.splitlines()
    starts = [index for index, line in enumerate(lines) if STAGE_HEADER.match(line)]
    if not starts:
        return []
    rows = []
    for line in lines[starts[-1] + 1 :]:
        match = STAGE_ROW.match(line.strip())
        if not match:
            break
        rows.append((match[1], match[2], match[3] or ""))
    return rows


def benchmark_arguments(
    doc: str, results: str, ref_help: str, keep_help: str
) -> tuple[argparse.Namespace, str]:
    """The options of a benchmark that runs a commit of this repository and
    appends to a results file (--ref, --results, --keep), and REF's commit."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help=ref_help)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / results)
    parser.add_argument("--keep", action="store_true", help=keep_help)
    args = parser.parse_args()
    return args, command_output(["git", "-C", str(REPO), "rev-parse", args.ref])


def main() -> int:
    args, commit = benchmark_arguments(
        __doc__, "ci-time.md", "the commit to clone and run", "keep the clone and its logs"
    )
    workdir = Path(tempfile.mkdtemp(prefix="ci-time-"))
    clone = workdir / "clone"
    log = workdir / "ci-run.log"
    commands = [
        f"git clone -q {REPO} {clone}",
        f"git -C {clone} checkout -q {commit}",
        f"cd {clone} && CI=true bash .ci/run </dev/null >{log} 2>&1",
    ]
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)  # noqa: S603,S607
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)  # noqa: S603,S607
    started_at = datetime.datetime.now(datetime.UTC)
    before = what_else_runs()
    started = time.monotonic()
    with log.open("w") as out:
        status = subprocess.run(
            ["/bin/bash", ".ci/run"],
            cwd=clone,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CI": "true"},
            check=False,
        ).returncode
    wall = time.monotonic() - started
    after = what_else_runs()
    rows = stage_table(log.read_text(errors="replace"))

    record = [
        "",
        f"## {started_at:%Y-%m-%d %H:%M} UTC, commit {commit[:12]}: "
        f"{wall / 60:.1f} min, exit {status}",
        "",
        f"Machine: {machine()}. At the start: {'; '.join(before)}.",
        f"At the end: {'; '.join(after)}.",
        "",
        "Commands:",
        "",
        "```console",
        *commands,
        "```",
        "",
        "| stage | seconds | result |",
        "|---|---|---|",
        *(f"| {stage} | {seconds} | {result} |" for stage, seconds, result in rows),
        "",
    ]
    if not args.results.exists():
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            "# CI time\n\nEach run: `python3 benchmarks/ci_time.py` (see its docstring);"
            " newest last.\n"
        )
    with args.results.open("a") as results:
        results.write("\n".join(record))
    print("\n".join(record))
    if args.keep:
        print(f"clone and log kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
