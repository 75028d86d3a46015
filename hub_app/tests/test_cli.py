"""CLI commands that need no running hub."""

from __future__ import annotations

import io
import socket
import stat
from pathlib import Path

import pytest

from hub_app import cli
from hub_app.api import HubAPIError
from hub_app.passwords import verify_password


class FakeStdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- hash-password ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["s3cret pw\nsecond line ignored\n", "s3cret pw\r\n", "s3cret pw"])
def test_hash_password_from_stdin(monkeypatch, capsys, text):
    monkeypatch.setattr("sys.stdin", FakeStdin(text, tty=False))
    code, out, err = run(capsys, "hash-password")
    assert code == 0, err
    encoded = out.strip()
    assert out.count("\n") == 1
    assert verify_password("s3cret pw", encoded)


def test_hash_password_keeps_spaces(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", FakeStdin(" pw \n", tty=False))
    code, out, _ = run(capsys, "hash-password")
    assert code == 0
    assert verify_password(" pw ", out.strip())


@pytest.mark.parametrize("text", ["", "\n"])
def test_hash_password_refuses_empty(monkeypatch, capsys, text):
    monkeypatch.setattr("sys.stdin", FakeStdin(text, tty=False))
    code, out, err = run(capsys, "hash-password")
    assert code == 1
    assert out == ""
    assert err == "error: refusing an empty password\n"


def test_hash_password_prompts_twice_on_a_tty(monkeypatch, capsys):
    answers = iter(["typed", "typed"])
    prompts = []
    monkeypatch.setattr("sys.stdin", FakeStdin("", tty=True))
    monkeypatch.setattr(cli.getpass, "getpass", lambda p: prompts.append(p) or next(answers))
    code, out, _ = run(capsys, "hash-password")
    assert code == 0
    assert len(prompts) == 2
    assert verify_password("typed", out.strip())


def test_hash_password_mismatch_on_a_tty(monkeypatch, capsys):
    answers = iter(["one", "two"])
    monkeypatch.setattr("sys.stdin", FakeStdin("", tty=True))
    monkeypatch.setattr(cli.getpass, "getpass", lambda p: next(answers))
    code, out, err = run(capsys, "hash-password")
    assert (code, out) == (1, "")
    assert "do not match" in err


# --- init-credentials ---------------------------------------------------------------


def _init(capsys, user: str, credentials: Path, hash_file: Path) -> tuple[int, str, str]:
    return run(
        capsys,
        "init-credentials",
        "--user",
        user,
        "--credentials-file",
        str(credentials),
        "--hash-file",
        str(hash_file),
    )


def test_init_credentials_creates_then_leaves_alone(tmp_path, capsys):
    credentials = tmp_path / "credentials"
    hash_file = tmp_path / "hash"
    code, out, err = _init(capsys, "hubadmin", credentials, hash_file)
    assert (code, out, err) == (0, "created\n", "")

    for path in (credentials, hash_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = credentials.read_text().splitlines()
    assert lines[0] == "username: hubadmin"
    password = lines[1].removeprefix("password: ")
    assert len(password) >= 32
    assert password not in out
    assert verify_password(password, hash_file.read_text().strip())

    before = (credentials.read_bytes(), hash_file.read_bytes())
    code, out, _ = _init(capsys, "hubadmin", credentials, hash_file)
    assert (code, out) == (0, "unchanged\n")
    assert (credentials.read_bytes(), hash_file.read_bytes()) == before


def test_init_credentials_rebuilds_a_lost_hash(tmp_path, capsys):
    credentials = tmp_path / "credentials"
    hash_file = tmp_path / "hash"
    _init(capsys, "hubadmin", credentials, hash_file)
    password = credentials.read_text().splitlines()[1].removeprefix("password: ")
    hash_file.unlink()
    code, out, _ = _init(capsys, "hubadmin", credentials, hash_file)
    assert (code, out) == (0, "repaired\n")
    assert verify_password(password, hash_file.read_text().strip())
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600


def test_init_credentials_passwords_differ(tmp_path, capsys):
    _init(capsys, "a", tmp_path / "c1", tmp_path / "h1")
    _init(capsys, "a", tmp_path / "c2", tmp_path / "h2")
    assert (tmp_path / "c1").read_text() != (tmp_path / "c2").read_text()


def test_init_credentials_bad_username(tmp_path, capsys):
    code, out, err = _init(capsys, "Bad Name", tmp_path / "c", tmp_path / "h")
    assert (code, out) == (1, "")
    assert "--user: invalid username 'Bad Name'" in err
    assert not (tmp_path / "c").exists()


def test_init_credentials_unwritable_hash_leaves_nothing(tmp_path, capsys):
    credentials = tmp_path / "credentials"
    code, _, err = _init(capsys, "a", credentials, tmp_path / "missing-dir" / "hash")
    assert code == 1
    assert "error:" in err
    assert not credentials.exists()


# --- check-settings -----------------------------------------------------------------


def test_check_settings_ok(settings_data, write_settings, capsys):
    code, out, err = run(capsys, "check-settings", str(write_settings(settings_data)))
    assert (code, out, err) == (0, "ok\n", "")


def test_check_settings_bad(settings_data, write_settings, capsys):
    settings_data["spawner"]["start_timeout"] = -1
    code, out, err = run(capsys, "check-settings", str(write_settings(settings_data)))
    assert (code, out) == (2, "")
    assert err.startswith(
        "settings error: spawner.start_timeout: must be a whole number of seconds, at least 1"
    )


# --- API commands without a hub -----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_names_the_url(secrets_dir, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/hub/api"
    token_file = str(secrets_dir / "api_client_token")
    code, out, err = run(capsys, "--url", url, "--token-file", token_file, "users", "list")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: cannot connect to the hub at {url}/users")
    assert "Connection refused" in err


def test_proxy_sync_names_a_proxy_that_does_not_answer(settings_data, write_settings, capsys):
    settings_data["proxy"]["api_url"] = f"http://127.0.0.1:{_closed_port()}"
    path = write_settings(settings_data)
    code, out, err = run(capsys, "--settings", str(path), "proxy", "sync", "--timeout", "0.3")
    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: the proxy's API at {settings_data['proxy']['api_url']} did not answer"
    )


def test_api_command_with_bad_settings_file(tmp_path, capsys):
    code, _, err = run(capsys, "--settings", str(tmp_path / "none.json"), "proxy", "routes")
    assert code == 2
    assert "settings error: settings file: " in err


def test_token_file_must_be_private(secrets_dir, capsys):
    token_file = secrets_dir / "api_client_token"
    token_file.chmod(0o644)
    code, _, err = run(
        capsys,
        "--url",
        "http://127.0.0.1:1/hub/api",
        "--token-file",
        str(token_file),
        "users",
        "list",
    )
    assert code == 2
    assert f"--token-file: {token_file} is readable by group or others" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["users"], ["server", "start"], ["token", "create", "alice", "--expires-in", "0"]],
)
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2


def test_bad_url_is_a_clear_error(secrets_dir, capsys):
    token_file = str(secrets_dir / "api_client_token")
    code, _, err = run(
        capsys, "--url", "no-scheme/hub/api", "--token-file", token_file, "users", "list"
    )
    assert code == 1
    assert err.startswith("error: request to no-scheme/hub/api/users failed: ")


# --- users remove, against a stand-in for the hub ------------------------------------


class FakeHub:
    """What ``users remove`` asks of HubClient, over a dict of users -> server state."""

    def __init__(self, users: dict[str, str], *, stop_status: int = 202) -> None:
        self.users = dict(users)
        self.stop_status = stop_status
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def _known(self, name: str) -> None:
        if name not in self.users:
            raise HubAPIError(404, "Not Found", "")

    def get_user(self, name: str) -> dict:
        self.calls.append(("get", name))
        self._known(name)
        state = self.users[name]
        return {"name": name, "servers": {"": {"ready": True}} if state == "ready" else {}}

    def stop_server(self, name: str) -> int:
        self.calls.append(("stop", name))
        self.users[name] = "stopped"
        return self.stop_status

    def wait_for_server(self, name: str, want: str, timeout: float) -> dict:
        self.calls.append(("wait", name))
        assert (want, self.users[name]) == ("stopped", "stopped")
        return {"name": name}

    def delete_user(self, name: str) -> None:
        self.calls.append(("delete", name))
        self._known(name)
        del self.users[name]


@pytest.fixture
def fake_hub(monkeypatch, settings_data, write_settings):
    """A FakeHub behind ``hub-app --settings <valid settings>``; alice, bob, hubadmin."""
    hub = FakeHub({"alice": "ready", "bob": "ready", "carol": "stopped", "hubadmin": "stopped"})
    monkeypatch.setattr(cli, "_client", lambda args: hub)
    settings = str(write_settings(settings_data))

    def remove(capsys, *names: str) -> tuple[int, str, str]:
        return run(capsys, "--settings", settings, "users", "remove", *names)

    return hub, remove


def test_users_remove_stops_the_server_then_deletes_only_that_user(fake_hub, capsys):
    hub, remove = fake_hub
    code, out, err = remove(capsys, "bob", "carol")
    assert (code, err) == (0, "")
    assert out == "bob: server stopped\nbob: removed\ncarol: removed\n"
    # The server is stopped and waited for before the user goes; alice's is untouched.
    assert hub.calls == [
        ("get", "bob"), ("stop", "bob"), ("wait", "bob"), ("delete", "bob"),
        ("get", "carol"), ("delete", "carol"),
    ]  # fmt: skip
    assert hub.users == {"alice": "ready", "hubadmin": "stopped"}


def test_users_remove_is_idempotent(fake_hub, capsys):
    _, remove = fake_hub
    remove(capsys, "bob")
    code, out, err = remove(capsys, "bob", "bob")
    assert (code, out, err) == (0, "bob: not in the hub\n", "")
    assert ": removed" not in out


def test_users_remove_does_not_wait_for_a_server_stopped_at_once(fake_hub, capsys):
    hub, remove = fake_hub
    hub.stop_status = 204
    code, out, _ = remove(capsys, "bob")
    assert (code, out) == (0, "bob: server stopped\nbob: removed\n")
    assert ("wait", "bob") not in hub.calls


def test_users_remove_user_gone_meanwhile(fake_hub, capsys, monkeypatch):
    hub, remove = fake_hub

    def gone(name: str) -> None:
        raise HubAPIError(404, "Not Found", "")

    monkeypatch.setattr(hub, "delete_user", gone)
    code, out, _ = remove(capsys, "carol")
    assert (code, out) == (0, "carol: not in the hub\n")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("alice", "alice is still in allowed_users of "),
        ("hubadmin", "take hubadmin out of jupyterhub_allowed_users"),
    ],
)
def test_users_remove_refuses_a_user_the_hub_would_add_back(fake_hub, capsys, name, says):
    hub, remove = fake_hub
    code, out, err = remove(capsys, "carol", name)
    assert (code, out) == (1, "")
    assert says in err
    assert hub.calls == []


def test_users_remove_refuses_a_bad_name_before_any_change(fake_hub, capsys):
    hub, remove = fake_hub
    code, out, err = remove(capsys, "carol", "Bob Smith")
    assert (code, out) == (1, "")
    assert "USER: invalid username 'Bob Smith'" in err
    assert hub.calls == []


def test_users_remove_hub_error_fails(fake_hub, capsys, monkeypatch):
    hub, remove = fake_hub

    def refused(name: str) -> None:
        raise HubAPIError(403, "Forbidden", "Action is not authorized")

    monkeypatch.setattr(hub, "delete_user", refused)
    code, out, err = remove(capsys, "carol")
    assert (code, out) == (1, "")
    assert err == "error: 403 Forbidden: Action is not authorized\n"


def test_users_remove_needs_a_name(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["users", "remove"])
    assert raised.value.code == 2
