"""``hub-app``: the operator's command for the hub.

Exit status: 0 on success; 1 when the hub refused or could not be reached, a server
did not reach the wanted state, or input was refused; 2 for usage errors and
unusable settings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from . import health
from .api import HubAPIError, HubClient, HubConnectionError, ServerWaitError, server_state
from .passwords import hash_password
from .settings import (
    DEFAULT_SETTINGS_PATH,
    SettingsError,
    check_username,
    load_settings,
    read_secret_file,
)

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# 32 URL-safe characters, about 192 bits.
_GENERATED_PASSWORD_BYTES = 24


class CommandError(Exception):
    """A failure to report as ``error: <message>`` with exit status 1."""


# --- helpers ------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> HubClient:
    """Build an API client from --url/--token-file, falling back to the settings file.

    Raises:
        SettingsError: If the settings file is needed and unusable.
    """
    api_url = args.url
    token_file = args.token_file
    if api_url is None or token_file is None:
        settings = load_settings(args.settings)
        api_url = api_url or settings.hub_api_url
        token_file = token_file or settings.api_client.token_file
    setting = "--token-file" if args.token_file else "api_client.token_file"
    return HubClient(api_url, read_secret_file(token_file, setting), timeout=args.http_timeout)


def _print_table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        line = "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip(), file=out)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    print()


def _write_private_file(path: Path, content: str, *, exclusive: bool) -> None:
    """Write a file that only its owner can read.

    With ``exclusive`` the file is created with O_EXCL, so an existing file is never
    touched (FileExistsError). Without it the content goes to a private temporary
    file that then replaces ``path``, so readers never see half a file.
    """
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        return
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _read_credentials_password(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(": ")
        if sep and key == "password" and value:
            return value
    raise CommandError(f"{path} has no 'password: ' line; remove it to generate new credentials")


# --- commands -----------------------------------------------------------------------


def cmd_users_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        users = sorted(client.iter_users(), key=lambda user: user["name"])
    if args.json:
        _print_json(users)
        return EXIT_OK
    rows = [
        (
            user["name"],
            "yes" if user.get("admin") else "no",
            server_state(user),
            user.get("last_activity") or "never",
        )
        for user in users
    ]
    _print_table(rows, ("NAME", "ADMIN", "SERVER", "LAST ACTIVITY"), sys.stdout)
    return EXIT_OK


def cmd_users_remove(args: argparse.Namespace) -> int:
    """Stop each user's server, then delete the user and their tokens from the hub.

    Prints ``NAME: server stopped`` when a server had to be stopped, then
    ``NAME: removed``, or ``NAME: not in the hub`` (nothing to do, exit status 0):
    the play's ``changed_when`` looks for ``: removed``. Every other user's server
    keeps running.
    """
    names = list(dict.fromkeys(args.users))
    try:
        for name in names:
            check_username(name, "USER")
    except SettingsError as e:
        raise CommandError(str(e)) from None
    if args.url is None or args.token_file is None:
        # Refused before any change: the hub adds these lists' users back to its
        # database at every start, and lets them log in.
        settings = load_settings(args.settings)
        for name in names:
            for setting, listed in (
                ("allowed_users", settings.allowed_users),
                ("admin_users", settings.admin_users),
            ):
                if name in listed:
                    raise CommandError(
                        f"{name} is still in {setting} of {args.settings}, so the hub would "
                        f"add them back at its next start; take {name} out of "
                        f"jupyterhub_{setting} in the inventory and deploy first"
                    )
    with _client(args) as client:
        for name in names:
            try:
                model = client.get_user(name)
            except HubAPIError as e:
                if e.status != 404:
                    raise
                print(f"{name}: not in the hub", flush=True)
                continue
            if server_state(model) != "stopped":
                if client.stop_server(name) != 204:
                    client.wait_for_server(name, "stopped", args.timeout)
                print(f"{name}: server stopped", flush=True)
            try:
                client.delete_user(name)
            except HubAPIError as e:
                # Gone meanwhile (another operator, the idle culler): just as wanted.
                if e.status != 404:
                    raise
                print(f"{name}: not in the hub", flush=True)
                continue
            print(f"{name}: removed", flush=True)
    return EXIT_OK


def cmd_server_start(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if server_state(client.get_user(args.user)) == "ready":
            print(f"{args.user}: already ready")
            return EXIT_OK
        status = client.start_server(args.user)
        if args.wait and args.progress and status != 201:
            # What the spawn page shows: the place in the start queue, then the start.
            for event in client.iter_progress(args.user, args.timeout):
                if event.get("message"):
                    print(f"{args.user}: {event['message']}", flush=True)
        if args.wait:
            client.wait_for_server(args.user, "ready", args.timeout)
            print(f"{args.user}: ready")
        else:
            print(f"{args.user}: {'ready' if status == 201 else 'pending'}")
    return EXIT_OK


def cmd_server_stop(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.stop_server(args.user)
        if args.wait and status != 204:
            client.wait_for_server(args.user, "stopped", args.timeout)
            status = 204
    print(f"{args.user}: {'stopped' if status == 204 else 'pending'}")
    return EXIT_OK


def cmd_proxy_routes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        routes = client.get_routes()
    if args.json:
        _print_json(routes)
        return EXIT_OK
    rows = []
    for spec, route in sorted(routes.items()):
        data = route.get("data") or {}
        user = "(hub)" if data.get("hub") else data.get("user", "")
        rows.append((spec, route.get("target", ""), user, data.get("server_name", "")))
    _print_table(rows, ("ROUTE", "TARGET", "USER", "SERVER"), sys.stdout)
    return EXIT_OK


def _wait_for_port(url: str, deadline: float) -> None:
    """Wait until something accepts connections at the host and port of ``url``."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    while True:
        try:
            with socket.create_connection(address, timeout=1):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise CommandError(f"the proxy's API at {url} did not answer: {e}") from None
        time.sleep(0.05)


def cmd_proxy_sync(args: argparse.Namespace) -> int:
    """Wait for the proxy's API, have the hub put every route back, then check them.

    Run whenever the proxy starts (supervisor's watchdog does): the proxy keeps its
    routing table in memory only. The hub may be down at that moment (a restart of
    supervisord starts both); it is asked again until the deadline, and a hub that
    starts syncs the proxy by itself anyway.
    """
    deadline = time.monotonic() + args.timeout
    _wait_for_port(load_settings(args.settings).proxy.api_url, deadline)
    with _client(args) as client:
        while True:
            try:
                client.sync_routes()
                break
            except (HubConnectionError, HubAPIError) as e:
                if (isinstance(e, HubAPIError) and e.status < 500) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)
        routes = client.get_routes()
        unrouted = client.unrouted_servers(routes)
    if unrouted:
        raise CommandError("running servers still without a route: " + ", ".join(unrouted))
    print(f"proxy routes synced: {len(routes)} routes; every running server has one")
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.create_token(
            args.user, note=args.note, expires_in=args.expires_in, scopes=args.scope
        )
    print(model["token"])
    return EXIT_OK


def _read_new_password(stdin: TextIO) -> str:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("the passwords do not match")
    else:
        # Only the line ending is dropped: spaces may be part of a password.
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("refusing an empty password")
    return password


def cmd_hash_password(args: argparse.Namespace) -> int:
    print(hash_password(_read_new_password(sys.stdin)))
    return EXIT_OK


def cmd_init_credentials(args: argparse.Namespace) -> int:
    try:
        check_username(args.user, "--user")
    except SettingsError as e:
        raise CommandError(str(e)) from None
    credentials = Path(args.credentials_file)
    hash_file = Path(args.hash_file)
    if credentials.exists():
        if hash_file.exists():
            print("unchanged")
            return EXIT_OK
        # The hash can be rebuilt from the stored password, so a lost hash file
        # does not force a new password on the user.
        password = _read_credentials_password(credentials)
        _write_private_file(hash_file, hash_password(password) + "\n", exclusive=False)
        print("repaired")
        return EXIT_OK
    password = secrets.token_urlsafe(_GENERATED_PASSWORD_BYTES)
    _write_private_file(
        credentials, f"username: {args.user}\npassword: {password}\n", exclusive=True
    )
    try:
        _write_private_file(hash_file, hash_password(password) + "\n", exclusive=False)
    except BaseException:
        # Without its hash the password is useless; removing it lets a rerun retry
        # instead of reporting `unchanged` forever.
        credentials.unlink()
        raise
    print("created")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """Print the health table, then what to do about each fault; exit 1 on any fault."""
    options = health.HealthOptions(
        certificate=args.certificate,
        disks=tuple(dict.fromkeys(args.disk or ())),
        min_free_percent=args.min_free_percent,
        min_free_mb=args.min_free_mb,
        min_certificate_days=args.min_certificate_days,
    )
    probes = health.Probes(
        settings=lambda: load_settings(args.settings),
        client=lambda: _client(args),
    )
    rows = health.run_checks(options, probes, args.settings)
    healthy = health.healthy(rows)
    if args.json:
        _print_json(
            {
                "healthy": healthy,
                "checks": [dataclasses.asdict(row) for row in rows],
            }
        )
    else:
        table = [(row.check, row.state, row.detail) for row in rows]
        _print_table(table, ("CHECK", "STATE", "DETAIL"), sys.stdout)
        faults = [row for row in rows if row.state == health.FAULT]
        for row in faults:
            print(f"What to do ({row.check}): {row.advice}")
        print(f"{len(faults)} fault(s) found" if faults else "healthy: no fault found")
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_check_settings(args: argparse.Namespace) -> int:
    load_settings(args.path)
    print("ok")
    return EXIT_OK


# --- argument parsing ---------------------------------------------------------------


def _positive_number(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _add_timeout(parser: argparse.ArgumentParser, default: float, meaning: str) -> None:
    """The ``--timeout S`` option of a command that waits."""
    parser.add_argument(
        "--timeout",
        type=_positive_number,
        default=default,
        metavar="S",
        help=f"{meaning} (default: {default:g})",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the ``hub-app`` argument parser.

    Returns:
        The parser; each subcommand sets ``func`` to the function that runs it.
    """
    parser = argparse.ArgumentParser(
        prog="hub-app",
        description="Operate the JupyterHub deployed by this bundle.",
    )
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS_PATH,
        metavar="PATH",
        help=f"hub_app settings file (default: {DEFAULT_SETTINGS_PATH}); supplies the hub "
        "URL and the API token file",
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="hub API URL, overriding the settings (e.g. http://127.0.0.1:8081/hub/api)",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the API token (mode 0600), overriding api_client.token_file",
    )
    parser.add_argument(
        "--http-timeout",
        type=_positive_number,
        default=30.0,
        metavar="S",
        help="seconds to wait for each HTTP response (default: 30)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    users = commands.add_parser("users", help="inspect or remove users").add_subparsers(
        required=True, metavar="ACTION"
    )
    users_list = users.add_parser("list", help="list users and the state of their server")
    users_list.add_argument("--json", action="store_true", help="print the hub's user models")
    users_list.set_defaults(func=cmd_users_list)
    remove = users.add_parser(
        "remove",
        help="stop each user's server, then delete the user and their API tokens from the "
        "hub; prints NAME: removed, or NAME: not in the hub when there is nothing to do",
    )
    remove.add_argument("users", nargs="+", metavar="USER")
    _add_timeout(remove, 60.0, "seconds to wait for each server to stop")
    remove.set_defaults(func=cmd_users_remove)

    server = commands.add_parser("server", help="start or stop a user's server").add_subparsers(
        required=True, metavar="ACTION"
    )
    start = server.add_parser("start", help="start a user's default server")
    stop = server.add_parser("stop", help="stop a user's default server")
    for action, func, default_timeout in (
        (start, cmd_server_start, 120.0),
        (stop, cmd_server_stop, 60.0),
    ):
        action.add_argument("user", metavar="USER")
        action.add_argument("--wait", action="store_true", help="wait until it is done")
        _add_timeout(action, default_timeout, "seconds --wait waits")
        action.set_defaults(func=func)
    start.add_argument(
        "--progress",
        action="store_true",
        help="with --wait, print the spawn page's progress messages as they come",
    )

    proxy = commands.add_parser("proxy", help="inspect or repair the proxy").add_subparsers(
        required=True, metavar="ACTION"
    )
    routes = proxy.add_parser("routes", help="show the proxy's routing table")
    routes.add_argument("--json", action="store_true", help="print the hub's route models")
    routes.set_defaults(func=cmd_proxy_routes)
    sync = proxy.add_parser(
        "sync",
        help="wait for the proxy's API, then have the hub put every missing route back "
        "(run whenever the proxy starts); fails if a running server is left without one",
    )
    _add_timeout(sync, 60.0, "seconds to wait for the proxy and the hub")
    sync.set_defaults(func=cmd_proxy_sync)

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = token.add_parser("create", help="create a token owned by USER; prints only the token")
    create.add_argument("user", metavar="USER")
    create.add_argument("--note", help="note shown in the user's token list")
    create.add_argument("--expires-in", type=_positive_int, metavar="SECONDS", help="lifetime")
    create.add_argument(
        "--scope",
        action="append",
        metavar="S",
        help="limit the token to this scope (repeatable; default: all of the user's own)",
    )
    create.set_defaults(func=cmd_token_create)

    hashing = commands.add_parser(
        "hash-password",
        help="print the scrypt hash of a password (first line of stdin, or prompted twice)",
    )
    hashing.set_defaults(func=cmd_hash_password)

    init = commands.add_parser(
        "init-credentials",
        help="generate a password and its hash into two 0600 files, once; prints "
        "created, repaired or unchanged",
    )
    init.add_argument("--user", required=True, metavar="NAME")
    init.add_argument("--credentials-file", required=True, metavar="PATH")
    init.add_argument("--hash-file", required=True, metavar="PATH")
    init.set_defaults(func=cmd_init_credentials)

    checkup = commands.add_parser(
        "health",
        help="check the programs, the hub's API, the proxy's routes, the TLS certificate, "
        "free disk space and the idle culler, changing nothing; prints a table and what to "
        "do about each fault (exit 1 if there is one)",
    )
    checkup.add_argument(
        "--certificate", metavar="PATH", help="the PEM certificate the proxy serves"
    )
    checkup.add_argument(
        "--disk",
        action="append",
        metavar="PATH",
        help="check the free space of this path's filesystem (repeatable)",
    )
    checkup.add_argument(
        "--min-free-percent",
        type=_positive_number,
        default=health.HealthOptions.min_free_percent,
        metavar="P",
        help="less free space than this share is a fault (default: %(default)g)",
    )
    checkup.add_argument(
        "--min-free-mb",
        type=_positive_number,
        default=health.HealthOptions.min_free_mb,
        metavar="MB",
        help="less free space than this many MiB is a fault (default: %(default)g)",
    )
    checkup.add_argument(
        "--min-certificate-days",
        type=_positive_int,
        default=health.HealthOptions.min_certificate_days,
        metavar="DAYS",
        help="a certificate with fewer days left is a fault (default: %(default)d)",
    )
    checkup.add_argument("--json", action="store_true", help="print the rows as JSON")
    checkup.set_defaults(func=cmd_health)

    check = commands.add_parser(
        "check-settings", help="validate a settings file; prints ok or the error (exit 2)"
    )
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=cmd_check_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hub-app``.

    Args:
        argv: Arguments without the program name; None for ``sys.argv[1:]``.

    Returns:
        The exit status: 0 success, 1 failure, 2 usage or settings error.
    """
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SettingsError as e:
        print(f"settings error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except HubAPIError as e:
        print(f"error: {e.status} {e.reason}: {e.message}", file=sys.stderr)
        return EXIT_FAILED
    except (HubConnectionError, ServerWaitError, CommandError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except FileExistsError as e:
        print(f"error: {e.filename} appeared while writing; run again", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
