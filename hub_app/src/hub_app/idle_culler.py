"""jupyterhub-idle-culler as the hub runs it: each decision logged, each run recorded.

The hub starts this module as a managed service (:mod:`hub_app.settings.services`
builds the command)::

    python -m hub_app.idle_culler --state-file=F --log-file=L --timeout=3600 ...

``--state-file`` and ``--log-file`` are this module's; the other options are the
culler's own. The
culling itself is jupyterhub-idle-culler's, unchanged; this module adds what an
operator needs around it:

- every decision, kept or stopped, with the server's idle time, in a log file of
  its own (the culler logs only the stops, and to the hub's output);
- after each run, a small JSON record (``started``, ``finished``, ``ok``,
  ``error``, ``every``, ``checked``, ``culled``) that ``hub-app health`` reads to
  say whether the culler is alive.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jupyterhub_idle_culler as culler
from traitlets import Unicode, validate

__all__ = ["DecisionLog", "IdleCullerWithRecord", "main", "write_run_record"]

# The decision log rotates itself: the culler runs for months.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 4


def write_run_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Replace the run record in one step, so a reader never sees half of it."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=2)
            out.write("\n")
        # Nothing secret in it: `hub-app health` may read it as any user.
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _user_of(server: dict[str, Any]) -> str:
    """The user a server model belongs to: the culler passes the server alone."""
    # A default server's url is <base>/user/<name>/ (named: .../<name>/<server>/).
    parts = str(server.get("url") or "").strip("/").split("/")
    if "user" in parts and parts.index("user") + 1 < len(parts):
        index = parts.index("user")
        name = parts[index + 1]
        server_name = server.get("name") or ""
        return f"{name}/{server_name}" if server_name else name
    return server.get("name") or "?"


class DecisionLog:
    """Judges each server as the culler always does, and logs and counts the verdicts."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.checked = 0
        self.culled: list[str] = []

    def reset(self) -> None:
        self.checked = 0
        self.culled = []

    def __call__(
        self, *, inactive: timedelta | None, inactive_limit: int, server: dict[str, Any], **kwargs
    ) -> bool:
        verdict = culler.default_cull_arbiter(
            inactive=inactive, inactive_limit=inactive_limit, server=server, **kwargs
        )
        name = _user_of(server)
        self.checked += 1
        idle = culler.format_td(inactive)
        limit = culler.format_td(timedelta(seconds=inactive_limit))
        if verdict:
            self.culled.append(name)
            self.logger.info("Stopping %s's server: idle for %s (limit %s)", name, idle, limit)
        else:
            self.logger.info("Keeping %s's server: idle for %s (limit %s)", name, idle, limit)
        return verdict


def _recorded(
    cull_idle: Callable[..., Awaitable[Any]],
    state_file: str,
    every: int,
    decisions: DecisionLog,
    logger: logging.Logger,
) -> Callable[..., Awaitable[Any]]:
    """Wrap one culling run so that its outcome is written to ``state_file``."""

    async def cull_idle_and_record(*args: Any, **kwargs: Any) -> Any:
        started = datetime.now(UTC)
        decisions.reset()
        record: dict[str, Any] = {"started": started.isoformat(), "every": every}
        try:
            result = await cull_idle(*args, **kwargs)
        except Exception as e:
            record.update(finished=None, ok=False, error=f"{type(e).__name__}: {e}")
            logger.error("Culling run failed: %s", record["error"])
            raise
        else:
            finished = datetime.now(UTC)
            record.update(finished=finished.isoformat(), ok=True, error=None)
            logger.info(
                "Run done in %.2f s: %d server(s) checked, %d stopped",
                (finished - started).total_seconds(),
                decisions.checked,
                len(decisions.culled),
            )
            return result
        finally:
            record.update(checked=decisions.checked, culled=list(decisions.culled))
            write_run_record(state_file, record)

    return cull_idle_and_record


class IdleCullerWithRecord(culler.IdleCuller):
    """jupyterhub-idle-culler's application, writing a decision log and a run record."""

    state_file = Unicode(help="Where each run's record goes (JSON, replaced after every run).").tag(
        config=True
    )
    log_file = Unicode(help="The decision log (rotated at 10 MB, 4 kept).").tag(config=True)

    aliases = {  # noqa: RUF012 (traitlets' own class attribute, extended)
        **culler.IdleCuller.aliases,
        "state-file": "IdleCullerWithRecord.state_file",
        "log-file": "IdleCullerWithRecord.log_file",
    }

    @validate("state_file", "log_file")
    def _absolute(self, proposal: Any) -> str:
        if not os.path.isabs(proposal.value):
            raise ValueError(
                f"IdleCullerWithRecord.{proposal.trait.name} must be an absolute path, "
                f"not {proposal.value!r}"
            )
        return proposal.value

    def start(self) -> None:
        handler = logging.handlers.RotatingFileHandler(
            self.log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s] %(message)s"))
        # The decisions and the culler's findings; its per-page debug chatter stays out.
        handler.setLevel(logging.INFO)
        # The culler's own messages (stops, warnings) go to the file and to the
        # hub's output as before; the per-server decisions to the file only.
        self.log.addHandler(handler)
        decision_logger = logging.getLogger("hub_app.idle_culler.decisions")
        decision_logger.propagate = False
        decision_logger.setLevel(logging.INFO)
        decision_logger.addHandler(handler)

        decisions = DecisionLog(decision_logger)
        self.cull_arbiter_hook = decisions
        # IdleCuller.start() schedules the module's cull_idle: each run then
        # goes through the recording wrapper.
        culler.cull_idle = _recorded(
            culler.cull_idle, self.state_file, self.cull_every, decisions, decision_logger
        )
        decision_logger.info(
            "Started: stop servers idle for %s, check every %s, max age %s, remove users: %s",
            culler.format_td(timedelta(seconds=self.timeout)),
            culler.format_td(timedelta(seconds=self.cull_every)),
            culler.format_td(timedelta(seconds=self.max_age)) if self.max_age else "none",
            self.cull_users,
        )
        super().start()


def main(argv: list[str] | None = None) -> None:
    IdleCullerWithRecord.launch_instance(argv)


if __name__ == "__main__":
    main()
