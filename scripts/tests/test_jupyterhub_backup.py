"""Tests of the backup role's command (roles/backup/files/jupyterhub-backup.py).

Real SQLite and a real restic repository in a temporary directory (restic is
Debian's, installed by scripts/bootstrap-controller); nothing is mocked.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "backup" / "files" / "jupyterhub-backup.py"
_loader = importlib.machinery.SourceFileLoader("jupyterhub_backup", str(SCRIPT))
backup = importlib.util.module_from_spec(
    importlib.util.spec_from_loader("jupyterhub_backup", _loader)
)
_loader.exec_module(backup)

needs_restic = pytest.mark.skipif(
    not Path(backup.RESTIC).exists(),
    reason="restic is not installed (scripts/bootstrap-controller)",
)


def make_database(path: Path, users: list[str]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO users (name) VALUES (?)", [(u,) for u in users])
    db.close()


def names(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = [r[0] for r in db.execute("SELECT name FROM users ORDER BY id")]
    db.close()
    return rows


def test_copy_database_is_consistent_while_the_hub_writes(tmp_path):
    """The online backup copies a state the database was in, never a torn file."""
    live = tmp_path / "jupyterhub.sqlite"
    make_database(live, ["seed"])
    with sqlite3.connect(live) as db:
        db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
    db.close()
    stop = threading.Event()

    def write() -> None:
        # Each transaction writes a row in both tables: a consistent copy has
        # as many of one as of the other.
        writer = sqlite3.connect(live, timeout=30)
        i = 0
        while not stop.is_set():
            with writer:
                writer.execute("INSERT INTO users (name) VALUES (?)", (f"u{i}",))
                writer.execute("INSERT INTO pairs VALUES (?, ?)", (i, i))
            i += 1
            stop.wait(0.001)  # a busy hub, not a benchmark of SQLite
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        copies = []
        for n in range(5):
            target = tmp_path / f"copy{n}.sqlite"
            backup.copy_database(live, target)
            copies.append(target)
    finally:
        stop.set()
        thread.join()
    for target in copies:
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        with sqlite3.connect(target) as db:
            users = db.execute("SELECT count(*) FROM users").fetchone()[0]
            pairs = db.execute("SELECT count(*) FROM pairs").fetchone()[0]
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        assert users == pairs + 1  # the seed row has no pair


def test_copy_of_a_missing_database_says_so(tmp_path):
    with pytest.raises(backup.BackupError, match="is the hub deployed here"):
        backup.copy_database(tmp_path / "none.sqlite", tmp_path / "copy.sqlite")


def count_users(database: Path) -> dict:
    """``count-users`` as restore.yml runs it: no configuration file exists yet."""
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--config",
            "/nonexistent",
            "count-users",
            "--database",
            str(database),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_count_users_before_anything_is_installed(tmp_path):
    database = tmp_path / "jupyterhub.sqlite"
    assert count_users(database) == {"users": 0}  # no hub here yet
    make_database(database, ["alice", "bob"])
    assert count_users(database) == {"users": 2}
    database.write_bytes(b"not a database" * 100)
    # Unreadable: null, which restore.yml treats as a hub with users.
    assert count_users(database) == {"users": None}
    assert backup.database_holds_users(database)


def test_paths_inside_others_are_left_to_them(tmp_path):
    (tmp_path / "etc" / "tls").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    config = {
        "staging_dir": str(tmp_path / "state"),
        "paths": [
            str(tmp_path / "etc"),
            str(tmp_path / "etc" / "tls") + "/",
            str(tmp_path / "gone"),
        ],
    }
    assert backup.backup_paths(config, []) == [str(tmp_path / "etc"), str(tmp_path / "state")]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_files_go_to_the_new_uid_and_nothing_else_changes(tmp_path):
    home = tmp_path / "alice"
    (home / "work").mkdir(parents=True)
    (home / "work" / "nb.ipynb").write_text("{}")
    (home / "root-owned").write_text("x")
    os.symlink("work/nb.ipynb", home / "link")
    for path in (home, home / "work", home / "work" / "nb.ipynb"):
        os.lchown(path, 5001, 5001)
    os.lchown(home / "link", 5001, 5001)
    changed = backup.give_to_account(home, 5001, 5001, 6001, 6002)
    assert changed == 4
    assert (home / "work" / "nb.ipynb").stat().st_uid == 6001
    assert (home / "work" / "nb.ipynb").stat().st_gid == 6002
    assert os.lstat(home / "link").st_uid == 6001
    assert (home / "root-owned").stat().st_uid == 0


def run(config_file: Path, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert (result.returncode == 0) == (not output.get("failed")), result.stderr
    return output


@pytest.fixture
def hub(tmp_path):
    """A hub's files under tmp_path and a backup configuration for them."""
    etc = tmp_path / "etc" / "jupyterhub"
    (etc / "secrets").mkdir(parents=True)
    (etc / "secrets" / "cookie_secret").write_bytes(os.urandom(32))
    state = tmp_path / "var" / "lib" / "jupyterhub"
    state.mkdir(parents=True)
    make_database(state / "jupyterhub.sqlite", ["alice", "bob"])
    (tmp_path / "password").write_text("correct horse battery staple\n")
    config = {
        "repository": str(tmp_path / "repository"),
        "password_file": str(tmp_path / "password"),
        "environment_file": str(tmp_path / "environment"),
        "cache_dir": str(tmp_path / "cache"),
        "host": "hub-one",
        "database": str(state / "jupyterhub.sqlite"),
        "staging_dir": str(tmp_path / "staging"),
        "record_file": str(tmp_path / "staging" / "last-run.json"),
        "paths": [str(etc), str(state)],
        "exclude": [str(state / "jupyterhub.sqlite"), str(state / "jupyterhub.sqlite") + "-*"],
        "accounts": [],
        "include_homes": False,
        "retention": {"daily": 7, "weekly": 0, "monthly": 0},
        "local_copies_dir": str(tmp_path / "copies"),
        "local_copies_keep": 2,
    }
    config_file = tmp_path / "backup.json"
    config_file.write_text(json.dumps(config))
    return tmp_path, config, config_file


@needs_restic
def test_backup_then_restore_onto_an_empty_host(hub):
    root, config, config_file = hub
    first = run(config_file, "run", "--reason", "manual")
    assert first["repository_created"] is True
    assert first["database_bytes"] > 0
    again = run(config_file, "run")
    assert again["repository_created"] is False
    assert again["snapshot_id"] != first["snapshot_id"]

    # The live database is not in the snapshot: its consistent copy is.
    listed = subprocess.run(
        [backup.RESTIC, "ls", "--json", again["snapshot_id"]],
        env=backup.restic_environment(config),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = {json.loads(line).get("path") for line in listed.splitlines() if line.startswith("{")}
    assert config["database"] not in paths
    assert str(Path(config["staging_dir"]) / "database" / "jupyterhub.sqlite") in paths

    # The host is lost: everything but the repository and its password.
    secret = (root / "etc" / "jupyterhub" / "secrets" / "cookie_secret").read_bytes()
    shutil.rmtree(root / "etc")
    shutil.rmtree(root / "var")
    shutil.rmtree(root / "staging")
    found = run(config_file, "find-snapshot")
    assert found["id"].startswith(again["snapshot_id"])
    restored = run(config_file, "restore-data", "--snapshot", found["id"])
    assert restored["from_host"] == "hub-one"
    assert names(Path(config["database"])) == ["alice", "bob"]
    assert (root / "etc" / "jupyterhub" / "secrets" / "cookie_secret").read_bytes() == secret

    # A hub that has users now is not overwritten without --replace.
    refused = run(config_file, "restore-data", "--snapshot", found["id"])
    assert refused["failed"] and "backup_restore_replace" in refused["msg"]


@needs_restic
def test_a_rollback_replaces_the_upgraded_database(hub):
    """restore.yml's replace path: the snapshot taken before an upgrade goes back over the hub."""
    _, config, config_file = hub
    before = run(config_file, "run", "--reason", "pre-upgrade")
    with sqlite3.connect(config["database"]) as db:  # the upgrade, and a user added since
        db.execute("INSERT INTO users (name) VALUES ('carol')")
    db.close()
    run(config_file, "run", "--reason", "scheduled")
    restored = run(config_file, "restore-data", "--snapshot", before["snapshot_id"], "--replace")
    assert restored["snapshot"].startswith(before["snapshot_id"][:8])
    assert names(Path(config["database"])) == ["alice", "bob"]


@needs_restic
def test_wrong_password_is_never_taken_for_a_missing_repository(hub):
    root, _, config_file = hub
    run(config_file, "run")
    (root / "password").write_text("not the password at all\n")
    failed = run(config_file, "run")
    assert failed["failed"] and "wrong backup_password" in failed["msg"]


@needs_restic
def test_unknown_host_has_no_snapshot(hub):
    _, _, config_file = hub
    run(config_file, "run")
    missing = run(config_file, "find-snapshot", "--host", "another-hub")
    assert missing["failed"] and "backup_restore_host" in missing["msg"]


def test_local_copies_keep_the_newest(hub):
    _, config, config_file = hub
    made = [run(config_file, "copy-database", "--label", f"jupyterhub-5.5.{n}") for n in range(3)]
    left = sorted(Path(config["local_copies_dir"]).glob("*.sqlite"))
    assert len(left) == 2
    assert Path(made[-1]["path"]) in left
    assert names(left[0]) == ["alice", "bob"]
    bad = run(config_file, "copy-database", "--label", "../etc")
    assert bad["failed"]
