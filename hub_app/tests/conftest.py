"""Shared fixtures: private secret files and a valid settings document."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from hub_app.passwords import hash_password

PASSWORDS = {"alice": "alice-password", "hubadmin": "admin-password", "bob": "bob-password"}


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """scrypt hashes of PASSWORDS, computed once because scrypt is slow on purpose."""
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def write_private(path: Path, content: str, mode: int = 0o600) -> Path:
    """Write ``content`` to ``path`` and set ``mode`` (umask does not apply)."""
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """A folder with the four secret files a settings file names, all mode 0600."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    write_private(folder / "cookie_secret", secrets.token_hex(32) + "\n")
    write_private(folder / "proxy_auth_token", secrets.token_hex(32) + "\n")
    write_private(folder / "api_client_token", secrets.token_hex(32) + "\n")
    write_private(folder / "metrics_token", secrets.token_hex(32) + "\n")
    return folder


def make_settings(
    secrets_dir: Path, password_hashes: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    """A valid settings document (schema version 1) using files in ``secrets_dir``."""
    data: dict[str, Any] = {
        "version": 1,
        "public_url": "https://hub.example.org/",
        "hub": {
            "bind_url": "http://127.0.0.1:8081",
            "db_url": f"sqlite:///{secrets_dir.parent / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(secrets_dir / "cookie_secret"),
            "log_level": "INFO",
        },
        "proxy": {
            "api_url": "http://127.0.0.1:8001",
            "auth_token_file": str(secrets_dir / "proxy_auth_token"),
        },
        "authenticator": {
            "kind": "hashed",
            "password_hashes": {
                "alice": password_hashes["alice"],
                "hubadmin": password_hashes["hubadmin"],
            },
        },
        "allowed_users": ["alice", "hubadmin"],
        "admin_users": ["hubadmin"],
        "allow_all": False,
        "spawner": {
            "cmd": ["/opt/jupyterhub/venv/bin/jupyterhub-singleuser"],
            "default_url": "/lab",
            "notebook_dir": "~",
            "start_timeout": 120,
            "http_timeout": 60,
            "environment": {},
            "log_dir": str(secrets_dir.parent / "servers"),
        },
        "api_client": {
            "service_name": "hub-app-cli",
            "token_file": str(secrets_dir / "api_client_token"),
        },
        "idle_culler": {
            "enabled": True,
            "timeout": 3600,
            "max_age": 0,
            "every": 0,
            "remove_users": False,
            "state_file": str(secrets_dir.parent / "idle-culler.json"),
            "log_file": str(secrets_dir.parent / "idle-culler.log"),
        },
        "metrics": {"enabled": True, "token_file": str(secrets_dir / "metrics_token")},
    }
    data.update(overrides)
    return copy.deepcopy(data)


@pytest.fixture
def settings_data(secrets_dir: Path, password_hashes: dict[str, str]) -> dict[str, Any]:
    """A valid settings document, free for a test to change."""
    return make_settings(secrets_dir, password_hashes)


@pytest.fixture
def write_settings(tmp_path: Path):
    """Write a settings document to a 0600 file and return its path."""

    def write(data: Any, name: str = "hub_app.json") -> Path:
        path = tmp_path / name
        text = data if isinstance(data, str) else json.dumps(data, indent=2)
        return write_private(path, text)

    return write
