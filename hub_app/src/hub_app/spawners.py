"""Spawners: JupyterHub's own, with what a hub that survives restarts needs.

LocalProcessSpawner hands each server the hub's own stdout and stderr. Under a
process supervisor those are a pipe that the supervisor closes when the hub exits,
so after a hub restart every server still running writes its log into a closed
pipe: the first log line of a request (a kernel's websocket, say) fails, and the
request with it. :class:`LoggingLocalProcessSpawner` gives each server a log file
of its own instead, which outlives any number of hub restarts.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from typing import IO

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode, validate

__all__ = ["LoggingLocalProcessSpawner", "open_server_log"]


def open_server_log(log_dir: str | os.PathLike[str], username: str) -> IO[bytes]:
    """Open (append) the log file of ``username``'s server.

    The file is ``<log_dir>/<username>.log``, owned by root and readable by the
    user's primary group (mode 0640): users can read their server's log, not
    each other's, and cannot rewrite it.

    Args:
        log_dir: Directory of the servers' logs; created (0755) when missing.
        username: The server's owner, a local account.

    Returns:
        The file, opened for appending in binary mode.

    Raises:
        KeyError: If ``username`` is not a local account.
    """
    gid = pwd.getpwnam(username).pw_gid
    directory = Path(log_dir)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / f"{username}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        # Root owns it, so a user cannot replace it with a link to another file.
        os.fchown(fd, 0, gid)
        os.fchmod(fd, 0o640)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


class LoggingLocalProcessSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose servers log to a file each, not to the hub's output."""

    log_dir = Unicode(
        "/var/log/jupyterhub/servers",
        help="""Directory of the single-user servers' logs, one `<user>.log` each.

        Each server writes there instead of into the hub's output, so it keeps
        logging (and serving) after the hub restarts.
        """,
    ).tag(config=True)

    @validate("log_dir")
    def _check_log_dir(self, proposal):
        value = proposal["value"]
        if not os.path.isabs(value):
            raise ValueError(
                f"LoggingLocalProcessSpawner.log_dir must be an absolute path, not {value!r}"
            )
        return value

    async def start(self):
        """Start the server with its output going to its own log file.

        Returns:
            The ``(ip, port)`` the server listens on, as LocalProcessSpawner.start.
        """
        log = open_server_log(self.log_dir, self.user.name)
        previous = self.popen_kwargs
        self.popen_kwargs = {**previous, "stdout": log, "stderr": subprocess.STDOUT}
        try:
            return await super().start()
        finally:
            # The child has its own copy of the descriptor; the hub keeps none.
            self.popen_kwargs = previous
            log.close()
