#!/usr/bin/python3
"""Change a supervisor program's configuration safely: a change that does not start is rolled back.

Every restart the bundle makes goes through here (the roles' handlers, certbot's
deploy hook), so a configuration that does not come up never stays in place:

``settle PROGRAM [--file PATH]... [--url URL | --port HOST:PORT] [--timeout S]``
    Wait until PROGRAM runs and answers (its health check); then keep a copy of its
    configuration files, and of its supervisor program file, as the last working
    configuration. Prints ``remembered`` when that copy changed, ``unchanged``
    otherwise. Called once per program at the end of each deploy.
``restart PROGRAM``
    Restart PROGRAM and wait until it answers again. If it does not, put back the
    last working configuration, restart with it, wait until it answers, and fail
    naming PROGRAM and quoting the last lines of its log.
``update``
    ``supervisorctl update`` (new and changed program files), then the same check
    and rollback for every program it added or changed.

Exit status 0 when the program runs with the configuration asked for; 1 when it
did not start with it (whether or not the rollback worked: the message says);
2 for usage errors. Run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

STATE_DIR = Path("/var/lib/supervisor-guard")
PROGRAM_DIR = Path("/etc/supervisor/conf.d")
SERVER_URL = "unix:///var/run/supervisor.sock"
# States in which a program that was asked to start has failed to.
FAILED_STATES = {"BACKOFF", "FATAL", "EXITED", "STOPPED", "UNKNOWN"}
LOG_LINES = 30


class GuardError(Exception):
    """A program that did not start; the message says what was done about it."""


def rpc() -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, SERVER_URL)
    )


def supervisorctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 -- fixed program
        ["/usr/bin/supervisorctl", *args], capture_output=True, text=True, check=False
    )


def manifest_path(program: str) -> Path:
    return STATE_DIR / program / "manifest.json"


def load_manifest(program: str) -> dict:
    try:
        return json.loads(manifest_path(program).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {
            "files": [str(PROGRAM_DIR / f"{program}.conf")],
            "url": "",
            "port": "",
            "timeout": 60,
        }


def answers(manifest: dict) -> str:
    """'' when the health check passes, else why not."""
    if manifest.get("url"):
        if not manifest["url"].startswith(("http://", "https://")):
            return f"{manifest['url']} is not an http(s) URL"
        try:
            # The scheme is checked above; the URL is the bundle's own.
            with urllib.request.urlopen(manifest["url"], timeout=5) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError) as error:
            return f"{manifest['url']} does not answer ({error})"
        return "" if status < 500 else f"{manifest['url']} answers {status}"
    if manifest.get("port"):
        host, _, port = manifest["port"].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=2):
                return ""
        except OSError as error:
            return f"nothing accepts connections on {manifest['port']} ({error})"
    return ""


def log_size(program: str) -> tuple[str, int]:
    try:
        logfile = rpc().supervisor.getProcessInfo(program)["stdout_logfile"]
        return logfile, os.path.getsize(logfile)
    except (OSError, xmlrpc.client.Fault):
        return "", 0


def log_tail(logfile: str, offset: int) -> str:
    if not logfile:
        return "(no log file)"
    try:
        with open(logfile, "rb") as log:
            if os.path.getsize(logfile) >= offset:
                log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(cannot read {logfile}: {error})"
    lines = text.splitlines()[-LOG_LINES:]
    return "\n".join(lines) if lines else "(nothing new in the log)"


def wait_until_answering(program: str, manifest: dict) -> str:
    """Wait until PROGRAM is RUNNING and its health check passes: '' or why it failed."""
    deadline = time.monotonic() + float(manifest.get("timeout", 60))
    why = "it did not answer"
    while time.monotonic() < deadline:
        try:
            info = rpc().supervisor.getProcessInfo(program)
        except xmlrpc.client.Fault as fault:
            return f"supervisord does not know it ({fault.faultString})"
        except OSError as error:
            why = f"supervisord does not answer ({error})"
            time.sleep(0.5)
            continue
        state = info["statename"]
        if state in FAILED_STATES:
            detail = info.get("spawnerr") or info.get("description") or ""
            return f"it is {state}" + (f" ({detail})" if detail else "")
        if state == "RUNNING":
            why = answers(manifest)
            if not why:
                return ""
        else:
            why = f"it is still {state}"
        time.sleep(0.1)
    return f"after {manifest.get('timeout', 60)} s {why}"


def restart(program: str) -> None:
    server = rpc().supervisor
    try:
        server.stopProcess(program, True)
    except xmlrpc.client.Fault as fault:
        if "BAD_NAME" in fault.faultString:
            # A program whose file this very run wrote (handlers may run in any
            # order): `update` adds and starts it.
            supervisorctl("update")
            return
        if "NOT_RUNNING" not in fault.faultString:
            raise
    try:
        server.startProcess(program, False)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise


def good_copy(program: str, path: str) -> Path:
    return STATE_DIR / program / "good" / path.lstrip("/").replace("/", "%")


def copy_keeping_owner(source: Path, target: Path) -> None:
    """Copy a file with its mode and owner, through a temporary file: never half written."""
    status = source.stat()
    temporary = target.with_name(f".{target.name}.supervisor-guard")
    shutil.copy2(source, temporary)
    os.chown(temporary, status.st_uid, status.st_gid)
    os.replace(temporary, target)


def roll_back(program: str, manifest: dict) -> str:
    """Put the last working configuration back and start with it: what happened, in words."""
    saved = [path for path in manifest["files"] if good_copy(program, path).exists()]
    if not saved:
        return f"There is no earlier working configuration of {program} to go back to."
    server = rpc().supervisor
    with contextlib.suppress(xmlrpc.client.Fault):
        server.stopProcess(program, True)
    for path in saved:
        copy_keeping_owner(good_copy(program, path), Path(path))
    if any(path.startswith(str(PROGRAM_DIR)) for path in saved):
        supervisorctl("update")
    try:
        server.startProcess(program, False)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            return (
                f"Put back the previous configuration, but {program} did not start: "
                f"{fault.faultString}."
            )
    why = wait_until_answering(program, manifest)
    names = ", ".join(sorted(Path(path).name for path in saved))
    if why:
        return (
            f"Put back the previous configuration ({names}), but {program} does not work "
            f"with it either: {why}."
        )
    return (
        f"Put back the previous configuration ({names}); {program} runs and answers with it again."
    )


def fail(program: str, why: str, manifest: dict, logfile: str, offset: int) -> None:
    tail = log_tail(logfile, offset)
    outcome = roll_back(program, manifest)
    raise GuardError(
        f"{program} did not start with its new configuration: {why}. {outcome}\n"
        f"Last lines of {logfile or 'its log'}:\n{tail}"
    )


def cmd_restart(args: argparse.Namespace) -> None:
    manifest = load_manifest(args.program)
    logfile, offset = log_size(args.program)
    restart(args.program)
    why = wait_until_answering(args.program, manifest)
    if why:
        fail(args.program, why, manifest, logfile, offset)
    print(f"{args.program} restarted and answers")


def cmd_update(_: argparse.Namespace) -> None:
    reread = supervisorctl("reread")
    touched = [
        line.split(":", 1)[0].strip()
        for line in reread.stdout.splitlines()
        if line.rstrip().endswith((": changed", ": available"))
    ]
    offsets = {program: log_size(program) for program in touched}
    update = supervisorctl("update")
    if update.returncode != 0 and "ERROR" in update.stdout + update.stderr:
        raise GuardError(f"supervisorctl update failed: {update.stdout}{update.stderr}")
    for program in touched:
        manifest = load_manifest(program)
        why = wait_until_answering(program, manifest)
        if why:
            logfile, offset = offsets[program]
            if not logfile:
                logfile, offset = log_size(program)[0], 0
            fail(program, why, manifest, logfile, offset)
    print("updated: " + (", ".join(touched) if touched else "nothing"))


def cmd_settle(args: argparse.Namespace) -> None:
    files = [str(PROGRAM_DIR / f"{args.program}.conf"), *args.file]
    manifest = {
        "files": files,
        "url": args.url or "",
        "port": args.port or "",
        "timeout": args.timeout,
    }
    folder = STATE_DIR / args.program
    (folder / "good").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(STATE_DIR, 0o700)
    changed = False
    text = json.dumps(manifest, indent=2) + "\n"
    if (
        not manifest_path(args.program).exists()
        or manifest_path(args.program).read_text(encoding="utf-8") != text
    ):
        manifest_path(args.program).write_text(text, encoding="utf-8")
        changed = True
    logfile, _ = log_size(args.program)
    why = wait_until_answering(args.program, manifest)
    if why:
        # Not started by a handler (nothing changed), or started and then failed.
        fail(
            args.program,
            why,
            manifest,
            logfile,
            0 if not logfile else max(0, os.path.getsize(logfile) - 8192),
        )
    for path in files:
        copy = good_copy(args.program, path)
        if not Path(path).exists():
            continue
        current, kept = Path(path).stat(), copy.stat() if copy.exists() else None
        if (
            kept
            and (kept.st_mode, kept.st_uid, kept.st_gid)
            == (current.st_mode, current.st_uid, current.st_gid)
            and copy.read_bytes() == Path(path).read_bytes()
        ):
            continue
        copy_keeping_owner(Path(path), copy)
        changed = True
    print("remembered" if changed else "unchanged")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    settle = commands.add_parser(
        "settle", help="wait until PROGRAM answers; keep its configuration"
    )
    settle.add_argument("program")
    settle.add_argument(
        "--file", action="append", default=[], help="a configuration file of PROGRAM"
    )
    check = settle.add_mutually_exclusive_group()
    check.add_argument("--url", help="healthy when this URL answers below 500")
    check.add_argument("--port", help="healthy when HOST:PORT accepts connections")
    settle.add_argument("--timeout", type=float, default=60.0)
    settle.set_defaults(func=cmd_settle)
    restart_parser = commands.add_parser(
        "restart", help="restart PROGRAM; roll back if it does not answer"
    )
    restart_parser.add_argument("program")
    restart_parser.set_defaults(func=cmd_restart)
    commands.add_parser(
        "update", help="supervisorctl update; roll back what does not answer"
    ).set_defaults(func=cmd_update)
    args = parser.parse_args()
    try:
        args.func(args)
    except GuardError as error:
        print(f"supervisor-guard: {error}", file=sys.stderr)
        return 1
    except (OSError, xmlrpc.client.Fault) as error:
        print(f"supervisor-guard: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
