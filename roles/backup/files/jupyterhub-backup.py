#!/usr/bin/python3
"""Back up and restore a JupyterHub host of this bundle with restic.

Installed by the backup role as /usr/local/sbin/jupyterhub-backup; it reads
its settings from the JSON file the role writes (``--config``, default
/etc/jupyterhub/backup/backup.json, root 0600). System Python and the standard
library only: it runs before the hub's environment exists (a restore onto a
fresh host) and while that environment is being replaced (an upgrade).

Commands (each prints one JSON object on stdout: what it did):

``run [--reason R]``
    A consistent copy of the hub's database through SQLite's online backup API
    (never a file copy of a live database), a manifest (the hub's package
    versions, the users' accounts with their uids, what was backed up), then
    ``restic backup`` of that copy, the bundle's configuration and secrets, TLS
    and ACME state and, if configured, the users' homes; then ``restic forget
    --prune`` with the retention policy. The repository is made on first use.
``copy-database --label L``
    Only the database, copied online into the local copies directory
    (root 0600), keeping the newest ``local_copies_keep``: what an upgrade takes
    even with no repository configured.
``find-snapshot [--snapshot ID] [--host H]``
    The snapshot a restore would use: ``latest`` of this bundle's snapshots made
    by host H (default: the configured host), or the given one.
``restore-data --snapshot ID [--replace]``
    Everything but the homes, back into place, and the database copy as the hub's
    database. Refuses a host whose hub has a database already, unless --replace.
``restore-homes --snapshot ID``
    The homes, back into place, then their files given to the accounts of the
    same names on this host (uids may differ from the machine backed up).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/jupyterhub/backup/backup.json")
TAG = "jupyterhub"
# restic >= 0.17 exits 10 for "no repository here"; 0.14 (Debian 12) says so in words.
NO_REPOSITORY_EXIT = 10
NO_REPOSITORY_WORDS = (
    "Is there a repository at the following location?",
    "unable to open config file",
)
RESTIC = "/usr/bin/restic"  # Debian's package
SAFE_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


class BackupError(Exception):
    """A failure the operator can act on: the message says what and how."""


# ------------------------------------------------------------------ settings ---
def load_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{path} does not exist: deploy the backup role first (site.yml)"
        ) from None
    except json.JSONDecodeError as error:
        raise BackupError(f"{path} is not valid JSON: {error}") from None
    for key in ("database", "staging_dir", "paths", "host"):
        if key not in config:
            raise BackupError(f"{path} has no '{key}': deploy the backup role again (site.yml)")
    return config


def restic_environment(config: dict) -> dict[str, str]:
    """restic's environment: the repository, the password file, and the extra variables file."""
    if not config.get("repository"):
        raise BackupError(
            "no backup repository is configured: set backup_repository (and "
            "backup_password in Ansible Vault) in the inventory and run site.yml"
        )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "RESTIC_REPOSITORY": config["repository"],
        "RESTIC_PASSWORD_FILE": config["password_file"],
        "RESTIC_CACHE_DIR": config.get("cache_dir", "/var/cache/jupyterhub-backup/restic"),
    }
    environment_file = config.get("environment_file")
    if environment_file and Path(environment_file).is_file():
        for line in Path(environment_file).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                env[key.strip()] = value
    return env


def restic(config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(  # noqa: S603 -- restic with arguments from this script
        [RESTIC, *args],
        env=restic_environment(config),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise BackupError(
            f"restic {args[0]} failed (exit {result.returncode}): {result.stderr.strip()}"
        )
    return result


def json_lines(text: str) -> list[dict]:
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return messages


def ensure_repository(config: dict) -> bool:
    """Make the repository on first use; True when it was made now."""
    probe = restic(config, "cat", "config", check=False)
    if probe.returncode == 0:
        return False
    if probe.returncode != NO_REPOSITORY_EXIT and not any(
        w in probe.stderr for w in NO_REPOSITORY_WORDS
    ):
        raise BackupError(
            f"cannot open the repository {config['repository']} (exit {probe.returncode}): "
            f"{probe.stderr.strip()}. A wrong backup_password, or the repository is unreachable."
        )
    restic(config, "init")
    return True


# ------------------------------------------------------------------ database ---
def copy_database(source: Path, target: Path) -> int:
    """SQLite's online backup of ``source`` into ``target`` (root 0600); its size.

    The backup API copies a consistent state of the database even while the hub
    writes to it, which a file copy does not. All pages go in one step, under one
    read transaction: the hub's writers wait for it (a hub's database is small)
    instead of restarting the copy for ever. The copy is checked before it
    replaces ``target``.
    """
    if not source.is_file():
        raise BackupError(f"the hub's database {source} does not exist: is the hub deployed here?")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    os.chmod(temporary, 0o600)
    try:
        with (
            sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60) as reader,
            sqlite3.connect(temporary) as writer,
        ):
            reader.backup(writer)
            verdict = writer.execute("PRAGMA integrity_check").fetchone()[0]
        reader.close()
        writer.close()
        if verdict != "ok":
            raise BackupError(f"the copy of {source} fails SQLite's integrity check: {verdict}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target.stat().st_size


def count_users(path: Path) -> int | None:
    """The hub users in the database at ``path``: 0 without one, None if unreadable."""
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM users").fetchone()[0]
    except sqlite3.Error:
        return None


def database_holds_users(path: Path) -> bool:
    users = count_users(path)
    return users is None or users > 0  # unreadable: never overwrite what cannot be checked


# ------------------------------------------------------------------ manifest ---
def installed_versions(venv: str | None) -> dict[str, str]:
    """Distribution name -> version, from the hub environment's *.dist-info directories."""
    versions: dict[str, str] = {}
    if not venv:
        return versions
    for info in Path(venv).glob("lib/python3*/site-packages/*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        if name:
            versions[name.lower().replace("_", "-")] = version
    return dict(sorted(versions.items()))


def accounts(names: list[str]) -> list[dict]:
    found = []
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        found.append({"name": name, "uid": entry.pw_uid, "gid": entry.pw_gid, "home": entry.pw_dir})
    return found


# --------------------------------------------------------------------- run ---
def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def backup_paths(config: dict, homes: list[str]) -> list[str]:
    """The paths that exist, each once: one inside another is left to the outer one."""
    paths = sorted({os.path.normpath(p) for p in [config["staging_dir"], *config["paths"], *homes]})
    outer = [
        p for p in paths if not any(p.startswith(q.rstrip("/") + "/") for q in paths if q != p)
    ]
    return [p for p in outer if os.path.exists(p)]


def cmd_run(config: dict, args: argparse.Namespace) -> dict:
    started = now()
    staging = Path(config["staging_dir"])
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(staging, 0o700)
    database_size = copy_database(
        Path(config["database"]), staging / "database" / "jupyterhub.sqlite"
    )
    users = accounts(config.get("accounts", []))
    homes = [a["home"] for a in users] if config.get("include_homes") else []
    manifest = {
        "created": started.isoformat(timespec="seconds"),
        "reason": args.reason,
        "host": config["host"],
        "hostname": socket.gethostname(),
        "database": config["database"],
        "versions": installed_versions(config.get("venv")),
        "accounts": users,
        "homes": homes,
        "paths": config["paths"],
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    made = ensure_repository(config)
    excludes = [f"--exclude={pattern}" for pattern in config.get("exclude", [])]
    backup = restic(
        config,
        "backup",
        "--json",
        f"--host={config['host']}",
        f"--tag={TAG}",
        f"--tag={args.reason}",
        *excludes,
        *backup_paths(config, homes),
    )
    summary = next((m for m in json_lines(backup.stdout) if m.get("message_type") == "summary"), {})
    if not summary.get("snapshot_id"):
        raise BackupError(f"restic backup reported no snapshot: {backup.stdout[-500:]}")
    retention = config.get("retention", {})
    keep = [f"--keep-{period}={count}" for period, count in retention.items() if int(count) > 0]
    pruned = False
    if keep:
        # Snapshots taken before an upgrade are what a rollback needs: kept.
        restic(
            config,
            "forget",
            f"--host={config['host']}",
            f"--tag={TAG}",
            "--keep-tag=pre-upgrade",
            *keep,
            "--prune",
        )
        pruned = True
    record = {
        "ok": True,
        "changed": True,
        "snapshot_id": summary["snapshot_id"],
        "reason": args.reason,
        "repository_created": made,
        "files": summary.get("total_files_processed"),
        "bytes": summary.get("total_bytes_processed"),
        "added_bytes": summary.get("data_added"),
        "database_bytes": database_size,
        "homes": homes,
        "pruned": pruned,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((now() - started).total_seconds(), 1),
    }
    record_file = config.get("record_file")
    if record_file:
        Path(record_file).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def cmd_copy_database(config: dict, args: argparse.Namespace) -> dict:
    if not SAFE_LABEL.match(args.label):
        raise BackupError(f"--label {args.label!r}: letters, digits, '.', '_' and '-' only")
    directory = Path(config["local_copies_dir"])
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"jupyterhub-{args.label}-{stamp}.sqlite"
    size = copy_database(Path(config["database"]), target)
    copies = sorted(directory.glob("jupyterhub-*.sqlite"), key=lambda p: p.stat().st_mtime)
    keep = int(config.get("local_copies_keep", 5))
    removed = [str(p) for p in copies[:-keep]] if keep > 0 else []
    for path in removed:
        Path(path).unlink()
    return {"changed": True, "path": str(target), "bytes": size, "removed": removed}


# ------------------------------------------------------------------ restore ---
def find_snapshot(config: dict, snapshot: str, host: str | None) -> dict:
    args = ["snapshots", "--json", f"--tag={TAG}"]
    if snapshot == "latest":
        args.append(f"--host={host or config['host']}")
    else:
        args.append(snapshot)
    found = json.loads(restic(config, *args).stdout or "[]")
    if not found:
        where = f"made by host {host or config['host']}" if snapshot == "latest" else snapshot
        raise BackupError(
            f"no snapshot {where} in {config['repository']}: set backup_restore_snapshot to "
            "one that `restic snapshots` lists, or backup_restore_host to the inventory name "
            "of the host that was backed up"
        )
    chosen = max(found, key=lambda s: s["time"])
    return {
        "changed": False,
        "id": chosen["id"],
        "short_id": chosen.get("short_id", chosen["id"][:8]),
        "time": chosen["time"],
        "host": chosen["hostname"],
        "tags": chosen.get("tags", []),
        "paths": chosen["paths"],
    }


def read_manifest(config: dict, snapshot_id: str) -> dict:
    shown = restic(config, "dump", snapshot_id, str(Path(config["staging_dir"]) / "manifest.json"))
    return json.loads(shown.stdout)


def cmd_restore_data(config: dict, args: argparse.Namespace) -> dict:
    database = Path(config["database"])
    if database_holds_users(database) and not args.replace:
        raise BackupError(
            f"{database} already holds a hub's users: restoring would replace them. Restore onto a "
            "fresh host, or set backup_restore_replace=true to replace this hub's data (the hub is "
            "stopped first)"
        )
    snapshot = find_snapshot(config, args.snapshot, args.host)
    manifest = read_manifest(config, snapshot["id"])
    homes = set(manifest.get("homes", []))
    includes = [f"--include={p}" for p in snapshot["paths"] if p not in homes]
    restic(config, "restore", snapshot["id"], "--target=/", *includes)
    copy = Path(config["staging_dir"]) / "database" / "jupyterhub.sqlite"
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy_database(copy, database)
    return {
        "changed": True,
        "snapshot": snapshot["short_id"],
        "snapshot_time": snapshot["time"],
        "from_host": snapshot["host"],
        "restored": [p for p in snapshot["paths"] if p not in homes],
        "versions": manifest.get("versions", {}),
    }


def give_to_account(home: Path, old_uid: int, old_gid: int, uid: int, gid: int) -> int:
    """Give the files of the old uid/gid under ``home`` to the new ones; how many changed."""
    changed = 0
    for root, dirs, files in os.walk(home):
        for name in [".", *dirs, *files]:
            path = os.path.join(root, name) if name != "." else root
            info = os.lstat(path)
            new_uid = uid if info.st_uid == old_uid else -1
            new_gid = gid if info.st_gid == old_gid else -1
            if new_uid != -1 or new_gid != -1:
                os.lchown(path, new_uid, new_gid)
                changed += 1
    return changed


def cmd_restore_homes(config: dict, args: argparse.Namespace) -> dict:
    snapshot = find_snapshot(config, args.snapshot, args.host)
    manifest = read_manifest(config, snapshot["id"])
    restored, owners, skipped = [], {}, []
    for account in manifest.get("accounts", []):
        if account["home"] not in manifest.get("homes", []):
            continue
        try:
            entry = pwd.getpwnam(account["name"])
        except KeyError:
            # Not an account here (any more): its files stay in the backup.
            skipped.append(account["name"])
            continue
        restic(config, "restore", snapshot["id"], "--target=/", f"--include={account['home']}")
        restored.append(account["home"])
        if (account["uid"], account["gid"]) != (entry.pw_uid, entry.pw_gid):
            owners[account["name"]] = give_to_account(
                Path(account["home"]), account["uid"], account["gid"], entry.pw_uid, entry.pw_gid
            )
    return {
        "changed": bool(restored),
        "snapshot": snapshot["short_id"],
        "homes": restored,
        "owners_changed": owners,
        "skipped": skipped,
    }


# --------------------------------------------------------------------- main ---
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jupyterhub-backup", description=__doc__.splitlines()[0])
    top.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="back up the hub now")
    run.add_argument("--reason", default="manual", help="a tag: manual, scheduled, pre-upgrade")
    copy = commands.add_parser("copy-database", help="an online copy of the database, kept locally")
    copy.add_argument("--label", required=True)
    # Before anything is installed (restore.yml sends this file with
    # ansible.builtin.script): needs no configuration.
    count = commands.add_parser(
        "count-users", help="the hub users in a database (null: unreadable)"
    )
    count.add_argument("--database", type=Path, required=True)
    for name in ("find-snapshot", "restore-data", "restore-homes"):
        sub = commands.add_parser(name)
        sub.add_argument("--snapshot", default="latest")
        sub.add_argument(
            "--host", help="the host whose latest snapshot to use (default: this one's name)"
        )
        if name == "restore-data":
            sub.add_argument("--replace", action="store_true")
    return top


COMMANDS = {
    "run": cmd_run,
    "copy-database": cmd_copy_database,
    "find-snapshot": lambda config, args: find_snapshot(config, args.snapshot, args.host),
    "restore-data": cmd_restore_data,
    "restore-homes": cmd_restore_homes,
}
WITHOUT_CONFIG = {"count-users": lambda args: {"users": count_users(args.database)}}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run" and not SAFE_LABEL.match(args.reason):
        print(
            json.dumps({"failed": True, "msg": "--reason: letters, digits, '.', '_' and '-' only"})
        )
        return 2
    os.umask(0o077)
    try:
        if args.command in WITHOUT_CONFIG:
            result = WITHOUT_CONFIG[args.command](args)
        else:
            result = COMMANDS[args.command](load_config(args.config), args)
    except BackupError as error:
        print(json.dumps({"failed": True, "msg": str(error)}))
        print(f"jupyterhub-backup: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
