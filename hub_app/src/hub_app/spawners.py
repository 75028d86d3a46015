"""Spawners: JupyterHub's own and the two plugins, with what this hub needs.

Four kinds, chosen by the settings' ``spawner.kind``:

- ``local``: :class:`LoggingLocalProcessSpawner` (see below), or, for a hub that
  does not run as root, :class:`LoggingSudoSpawner`: sudospawner's mediator,
  run through sudo as the user, starts the server;
- ``systemd``: :class:`HubSystemdSpawner`, systemdspawner's transient units with
  per-user memory and CPU limits; servers log to the journal;
- ``docker``: :class:`HubDockerSpawner`, dockerspawner over any Docker API (a
  Docker engine, or podman's ``podman system service``);
- ``slurm``: :class:`HubSlurmSpawner`, batchspawner's SlurmSpawner: each server
  is a Slurm job on a compute node, its partition, walltime, memory and CPUs
  chosen on the spawn form within the settings' bounds.

Each carries :class:`OptionsFormMixin`: the spawn page's options form
(:mod:`hub_app.options_form`), checked on the hub side, whether the options come
from the form or the REST API; and :class:`StartQueueMixin`: servers start a few
at a time (:mod:`hub_app.start_queue`), each user's spawn page says where they
stand, and users' servers run at a lower CPU priority than the hub and the proxy.

LocalProcessSpawner hands each server the hub's own stdout and stderr. Under a
process supervisor those are a pipe that the supervisor closes when the hub exits,
so after a hub restart every server still running writes its log into a closed
pipe: the first log line of a request (a kernel's websocket, say) fails, and the
request with it. :class:`LoggingLocalProcessSpawner` gives each server a log file
of its own instead, which outlives any number of hub restarts; so does
:class:`LoggingSudoSpawner`, whose mediator would otherwise hand the server the
hub's pipe the same way.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from batchspawner import JobStatus, SlurmSpawner
from batchspawner.api import BatchSpawnerAPIHandler
from dockerspawner import DockerSpawner
from jupyterhub.apihandlers import default_handlers
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import exponential_backoff, random_port, url_path_join
from sudospawner import SudoSpawner
from systemdspawner import SystemdSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Float, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .options_form import (
    FormError,
    FormSettings,
    JobBounds,
    check_user_options,
    parse_form,
    render_form,
)
from .options_form import repo_name as _repo_name
from .settings.slurm import format_walltime
from .start_queue import StartQueue, Ticket, default_slots

__all__ = [
    "HubDockerSpawner",
    "HubSlurmSpawner",
    "HubSystemdSpawner",
    "LoggingLocalProcessSpawner",
    "LoggingSudoSpawner",
    "OptionsFormMixin",
    "StartQueueMixin",
    "open_server_log",
]

# Where a cloned repository's requirements go, relative to the user's home: one
# environment per repository, put on the kernels' PYTHONPATH.
REPO_ENVS_DIR = ".local/share/hub-app/envs"


def open_server_log(log_dir: str | os.PathLike[str], username: str) -> IO[bytes]:
    """Open (append) the log file of ``username``'s server.

    The file is ``<log_dir>/<username>.log``, mode 0640. A root hub gives it to
    root and the user's primary group: users can read their server's log, not
    each other's, and cannot rewrite it. A hub that is not root cannot give a
    file away: a new file is its own account's (and its group's), read by the
    operators; a file from before the hub left root keeps its group.

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
    # Never through a link: the directory is the hub's, but a link put there
    # by anyone else must not redirect the hub's writes.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
    try:
        if os.geteuid() == 0:
            # Root owns it, so a user cannot replace it with a link to another file.
            os.fchown(fd, 0, gid)
        os.fchmod(fd, 0o640)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


class OptionsFormMixin(LoggingConfigurable):
    """The options form and its hub-side checks, for any JupyterHub spawner.

    ``options_from_form`` checks the posted form (a bad value raises, and
    JupyterHub shows the message on the spawn page without starting anything);
    ``apply_user_options`` checks again whatever ``user_options`` arrived (the REST
    API skips the form) and applies them: variables to ``environment``, arguments
    to ``args``, the image to ``image``. A repository is cloned by
    :meth:`prepare_repository` before the server starts.
    """

    form_environment = Bool(
        False, help="Offer environment variables (KEY=VALUE lines) on the spawn form."
    ).tag(config=True)
    form_environment_overridable = List(
        Unicode(),
        help="Spawner-owned variable names (PATH...) users may still set; never JUPYTERHUB_*.",
    ).tag(config=True)
    form_args = List(
        Unicode(), help="Server argument names users may add, like --ServerApp.terminals_enabled."
    ).tag(config=True)
    form_images = List(
        Unicode(), help="Images users choose from (docker only); fewer than two: no field."
    ).tag(config=True)
    form_git_hosts = List(
        Unicode(), help="Hosts git repositories may be cloned from (https only); empty: no field."
    ).tag(config=True)
    git_python = Unicode(
        "python3",
        help="Python whose pip installs a cloned repository's requirements.txt "
        "(the kernels' Python, so the packages match it).",
    ).tag(config=True)
    git_timeout = Integer(
        300, help="Seconds cloning a repository and installing its requirements may take."
    ).tag(config=True)

    def form_settings(self) -> FormSettings:
        """What the form offers, from this spawner's configuration."""
        return FormSettings(
            environment=self.form_environment,
            environment_overridable=frozenset(self.form_environment_overridable),
            fixed_environment=frozenset(self.environment),
            args=tuple(self.form_args),
            images=tuple(self.form_images),
            default_image=self.form_images[0] if self.form_images else "",
            git_hosts=tuple(h.lower() for h in self.form_git_hosts),
        )

    @default("options_form")
    def _default_options_form(self):
        return render_form(self.form_settings())

    @default("options_from_form")
    def _default_options_from_form(self):
        # A function, not a method override: JupyterHub calls the trait's value.
        def options_from_form(formdata, spawner=None):
            return parse_form(formdata, (spawner or self).form_settings())

        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        def apply_user_options(spawner, user_options):
            spawner.apply_checked_options(user_options)

        return apply_user_options

    def apply_checked_options(self, user_options: Any) -> None:
        """Check ``user_options`` and apply them to this spawner.

        Raises:
            tornado.web.HTTPError: 400 with the rule broken, shown to the user.
        """
        try:
            options = check_user_options(user_options, self.form_settings())
        except FormError as e:
            raise web.HTTPError(400, f"{e.field}: {e}", reason=str(e)) from None
        self.environment = {**self.environment, **options.get("env", {})}
        self.args = [*self.args, *options.get("args", [])]
        if "image" in options:
            self.image = options["image"]
        self.apply_job_options(options)
        self.git_url = options.get("git_url", "")
        if self.git_url:
            self.environment = {
                **self.environment,
                "PYTHONPATH": self.repo_env_path(self.git_url),
            }

    git_url = Unicode("")

    def apply_job_options(self, options: dict[str, Any]) -> None:
        """Apply the checked batch job options (the slurm kind's; others have none)."""

    def repo_home(self) -> str:
        """The user's home where repositories are cloned, as the server sees it."""
        return pwd.getpwnam(self.user.name).pw_dir

    def repo_env_path(self, url: str) -> str:
        """Where a repository's requirements are installed (on the kernels' PYTHONPATH)."""
        return f"{self.repo_home()}/{REPO_ENVS_DIR}/{_repo_name(url)}"

    def repo_script(self, url: str) -> str:
        """A shell script, run as the user in their home: clone once, install requirements."""
        name = _repo_name(url)
        target = f"{REPO_ENVS_DIR}/{name}"
        python = shlex.quote(self.git_python)
        return (
            "set -e; cd; "
            f"if [ ! -d {shlex.quote(name)}/.git ]; then "
            # Shallow first; a server speaking only git's "dumb" HTTP refuses it.
            f"git clone --quiet --depth 1 -- {shlex.quote(url)} {shlex.quote(name)} 2>/dev/null"
            f" || git clone --quiet -- {shlex.quote(url)} {shlex.quote(name)}; fi; "
            f"if [ -f {shlex.quote(name)}/requirements.txt ]; then "
            f"{python} -m pip install --quiet --disable-pip-version-check --no-input "
            f"--upgrade --target {shlex.quote(target)} "
            f"-r {shlex.quote(name)}/requirements.txt; fi"
        )

    async def prepare_repository(self) -> None:
        """Clone the chosen repository as the user, on the hub host (local, systemd).

        Raises:
            RuntimeError: If cloning or installing fails; the message ends up on the
                spawn-pending page.
        """
        if not self.git_url:
            return
        account = pwd.getpwnam(self.user.name)
        env = {
            "HOME": account.pw_dir,
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_TERMINAL_PROMPT": "0",
        }
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            self.repo_script(self.git_url),
            cwd=account.pw_dir,
            env=env,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=os.getgrouplist(account.pw_name, account.pw_gid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.git_timeout)
        except TimeoutError:
            process.kill()
            raise RuntimeError(
                f"cloning {self.git_url} took longer than {self.git_timeout} s"
            ) from None
        if process.returncode:
            tail = output.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"cloning {self.git_url} failed: {' / '.join(tail)}")


# One start queue per hub process, shared by every spawner (they share one
# configuration), keyed by its number of slots.
_START_QUEUES: dict[int, StartQueue] = {}
_Started = TypeVar("_Started")


def start_queue(slots: int) -> StartQueue:
    """The hub's queue with ``slots`` slots (0: :func:`hub_app.start_queue.default_slots`)."""
    slots = slots or default_slots()
    if slots not in _START_QUEUES:
        _START_QUEUES[slots] = StartQueue(slots)
    return _START_QUEUES[slots]


class StartQueueMixin(LoggingConfigurable):
    """Servers start a few at a time; each waits its turn and says so on the spawn page.

    A spawner's ``start`` runs its work in :meth:`in_turn`: wait for a slot of the
    hub's :class:`~hub_app.start_queue.StartQueue` (at most ``queue_timeout``
    seconds), start (at most ``turn_timeout``), then wait until the server answers
    (at most ``http_timeout``) before the slot goes to the next user, so the slot
    covers the start's whole CPU-heavy part. JupyterHub's own ``start_timeout``
    must cover all three: :func:`hub_app.settings.spawner.apply_spawner` sets it
    to their sum. :meth:`progress` reports the place in the queue, then the start.
    """

    start_slots = Integer(
        0,
        help="Servers that start at once; 0: one per core of the hub host.",
    ).tag(config=True)
    queue_timeout = Integer(
        600,
        help="Seconds a server may wait for its turn to start before the spawn fails.",
    ).tag(config=True)
    turn_timeout = Integer(
        120,
        help="Seconds a server may take to start once its turn has come (a cloned "
        "repository included), not counting the wait until it answers (http_timeout).",
    ).tag(config=True)
    nice = Integer(
        10,
        min=0,
        max=19,
        help="Niceness of users' servers and their kernels (local and systemd kinds): "
        "the hub and the proxy keep the CPU first while a class starts at once.",
    ).tag(config=True)

    # The current start: its ticket, its phase ("queued", "starting", "answering";
    # "" when no start runs) and the messages of its phases, for progress().
    _start_ticket: Ticket | None = None
    _start_phase = ""
    _start_events: list[dict[str, Any]] = []  # noqa: RUF012 -- replaced, never mutated, here

    async def in_turn(self, start: Callable[[], Awaitable[_Started]]) -> _Started:
        """Run ``start`` (the spawner's own start) when this server's turn comes.

        Raises:
            tornado.web.HTTPError: 503, with a message for the spawn page, when the
                turn did not come within ``queue_timeout`` (and how many were still
                ahead), the start overran ``turn_timeout`` or the server did not
                answer within ``http_timeout``.
            RuntimeError: If the server exited before it answered.
        """
        queue = start_queue(self.start_slots)
        ticket = self._start_ticket = queue.join()
        self._start_events = []
        self._enter_phase("queued")
        waited_since = time.monotonic()
        try:
            try:
                await asyncio.wait_for(queue.wait_for_turn(ticket), self.queue_timeout)
            except TimeoutError:
                raise web.HTTPError(
                    503,
                    f"Your server waited {self.queue_timeout} s for its turn to start, "
                    f"with {queue.ahead_of(ticket)} still ahead of it "
                    f"({queue.slots} start at a time). Try again in a few minutes.",
                ) from None
            waited = time.monotonic() - waited_since
            if waited >= 1:
                self.log.info(
                    "%s's server waited %.1f s for its turn to start", self._log_name, waited
                )
            self._enter_phase("starting", "Starting your server", 40)
            try:
                started = await asyncio.wait_for(start(), self.turn_timeout)
            except TimeoutError:
                raise web.HTTPError(
                    503,
                    f"Your server did not start within {self.turn_timeout} s of its turn. "
                    "Try again; if it fails again, tell the hub's operators.",
                ) from None
            self._enter_phase("answering", "Your server is loading", 70)
            try:
                await self.wait_until_answering(started)
            except TimeoutError:
                raise web.HTTPError(
                    503,
                    f"Your server started but did not answer within {self.http_timeout} s. "
                    "Try again; if it fails again, tell the hub's operators.",
                ) from None
            return started
        finally:
            self._enter_phase("")
            self._start_ticket = None
            queue.leave(ticket)

    async def wait_until_answering(self, started: Any) -> None:
        """Wait until the server at ``started`` (a URL or ``(ip, port)``) answers its API.

        The same request as JupyterHub's own check after ``start``, which then
        passes at once; a server that exits meanwhile fails the spawn at once.

        Raises:
            RuntimeError: If the server exited before it answered.
            TimeoutError: If it did not answer within ``http_timeout``.
        """
        if self.server is None or self.internal_ssl or not started:
            return  # JupyterHub's own check (with its certificates) does it
        if isinstance(started, str):
            base = started
        else:
            ip, port = started
            base = f"http://[{ip}]:{int(port)}" if ":" in ip else f"http://{ip}:{int(port)}"
        url = url_path_join(base, self.server.base_url, "api")
        client = AsyncHTTPClient()

        async def answers() -> bool:
            try:
                await client.fetch(url, follow_redirects=False, request_timeout=5)
                return True
            except HTTPClientError as error:
                if error.code < 500:
                    return True  # it answers (a redirect or 403 is an answer)
            except OSError:
                pass  # not listening yet
            status = await self.poll()
            if status is not None:
                raise RuntimeError(f"the server exited (status {status}) before it answered")
            return False

        # Every 0.1 s on average (random waits of up to 0.2 s): the spawn page
        # learns the server is ready about 0.1 s after it answers. Only the
        # servers in their turn ask (start_slots at a time), so a class starting
        # at once does not multiply these requests.
        await exponential_backoff(
            answers,
            f"{url} did not answer within {self.http_timeout} s",
            start_wait=0.05,
            max_wait=0.2,
            timeout=self.http_timeout,
            timeout_tolerance=0,  # the operator's http_timeout, not ±10 %
        )

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Where this spawn stands, for the spawn page: its place in the queue, then the start."""
        events: list[dict[str, Any]] | None = None
        seen = 0
        last_place: tuple[int, int] | None = None
        while True:
            if self._start_phase and self._start_events is not events:
                events, seen, last_place = self._start_events, 0, None  # this spawn's
            if events is not None:
                for event in events[seen:]:
                    yield event
                seen = len(events)
                ticket = self._start_ticket
                if self._start_phase == "queued" and ticket is not None:
                    queue = start_queue(self.start_slots)
                    place = (queue.ahead_of(ticket), queue.starting)
                    if place != last_place:
                        yield {
                            "progress": 10,
                            "message": f"Waiting your turn to start: {place[0]} ahead of you "
                            f"in the queue, {place[1]} starting now ({queue.slots} at a time)",
                        }
                    last_place = place
                if not self._start_phase and self._start_events is events:
                    return  # started (or failed): JupyterHub reports the rest
            await asyncio.sleep(0.25)

    def _enter_phase(self, phase: str, message: str = "", progress: int = 0) -> None:
        """Record where the start stands; :meth:`progress` relays the message."""
        self._start_phase = phase
        if message:
            self._start_events.append({"progress": progress, "message": message})


def _is_server_process(pid: int, username: str, cmd: list[str]) -> bool:
    """Whether ``pid`` runs as ``username`` with the server command's program in it.

    True when that cannot be read (no /proc; a process owned by another user
    namespace; a process exiting or exited but not yet reaped, whose command
    line is already empty): then LocalProcessSpawner's own check decides.
    """
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return True  # gone: LocalProcessSpawner.poll says so
    except OSError:
        return True
    if arguments == [b""]:
        return True  # exiting, or a zombie: still this server's pid until reaped
    try:
        expected_owner = pwd.getpwnam(username).pw_uid
    except KeyError:
        return True
    program = os.path.basename(cmd[0]).encode() if cmd else b""
    return owner == expected_owner and any(
        os.path.basename(argument) == program for argument in arguments
    )


class LocalServerMixin(LoggingConfigurable):
    """What both local kinds share: a log file per server, and a pid that is the server's."""

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
                f"{type(self).__name__}.log_dir must be an absolute path, not {value!r}"
            )
        return value

    async def poll(self):
        """Like LocalProcessSpawner.poll, but a reused process id is not the server.

        After a reboot (or a long uptime) the recorded pid may belong to another
        process: LocalProcessSpawner would take that process for the server, keep
        its route and never let the user start again. The server is the user's own
        process running this spawner's command.

        Returns:
            None while the server runs; an exit status once it has gone.
        """
        # A process this hub started is known by its Popen handle: only a pid
        # recorded by an earlier hub (or before a reboot) can be another process.
        if (
            self.proc is None
            and self.pid
            and not _is_server_process(self.pid, self.user.name, self.cmd)
        ):
            self.log.warning(
                "%s's server (pid %s) is gone; that pid is now another process",
                self.user.name,
                self.pid,
            )
            self.clear_state()
            return 1
        return await super().poll()

    async def _signal(self, sig):
        """Signal the server's process; never a process group.

        With no pid (state cleared meanwhile) ``os.kill(0, sig)`` would signal
        the hub's own process group: the hub itself would stop.

        Returns:
            Whether the process still exists, as LocalProcessSpawner._signal.
        """
        if self.pid <= 0:
            return False
        return await super()._signal(sig)


class LoggingLocalProcessSpawner(
    LocalServerMixin, StartQueueMixin, OptionsFormMixin, LocalProcessSpawner
):
    """LocalProcessSpawner whose servers log to a file each, not to the hub's output."""

    async def start(self):
        """In its turn, start the server with its output going to its own log file.

        Returns:
            The ``(ip, port)`` the server listens on, as LocalProcessSpawner.start.
        """
        return await self.in_turn(self._start_logging)

    def make_preexec_fn(self, name):
        """Lower the server's CPU priority (``nice``), then become the user."""
        become_user = super().make_preexec_fn(name)
        nice = self.nice

        def preexec():
            if nice:
                os.nice(nice)
            become_user()

        return preexec

    async def _start_logging(self):
        await self.prepare_repository()
        log = open_server_log(self.log_dir, self.user.name)
        previous = self.popen_kwargs
        self.popen_kwargs = {**previous, "stdout": log, "stderr": subprocess.STDOUT}
        try:
            return await super().start()
        finally:
            # The child has its own copy of the descriptor; the hub keeps none.
            self.popen_kwargs = previous
            log.close()


class LoggingSudoSpawner(LocalServerMixin, StartQueueMixin, OptionsFormMixin, SudoSpawner):
    """The local kind for a hub that is not root: sudospawner, a log file per server.

    The hub runs ``sudo -u <user> -nH <sudospawner_path> --logging=INFO``; the
    mediator, as the user, starts ``jupyterhub-singleuser`` from its own
    directory (so the hub cannot choose another program) and signals it. The
    sudoers rule lets the hub's account run only that, only as the hub's users.

    The mediator hands the server its own standard error: here the server's log
    file (the hub opens it, and the sudo process starts on it), so the server
    keeps logging after the hub restarts. sudo keeps the niceness it is started
    with, so the server runs at ``nice`` too. A git repository cannot be cloned
    as the user (the rule allows nothing else): the settings refuse that field.
    """

    _server_log: IO[bytes] | None = None

    async def start(self):
        """In its turn, start the server through the mediator, logging to its file.

        Returns:
            The ``(ip, port)`` the server listens on, as SudoSpawner.start.
        """
        return await self.in_turn(self._start_logging)

    async def _start_logging(self):
        if self.git_url:
            raise web.HTTPError(
                400, "This hub cannot clone repositories as its users; leave the field empty."
            )
        self._server_log = open_server_log(self.log_dir, self.user.name)
        try:
            return await super().start()
        finally:
            # The sudo process has its own copy; the hub keeps none.
            self._server_log.close()
            self._server_log = None

    def make_preexec_fn(self):
        """In the sudo process, before it runs: lower the priority, log to the server's file.

        Runs after the child's standard streams are set up and before the other
        descriptors are closed: standard error becomes the log file (starting a
        server; a signal's mediator keeps the pipe its errors are read from).
        """
        nice = self.nice
        log_fd = self._server_log.fileno() if self._server_log is not None else None

        def preexec():
            if nice:
                os.nice(nice)
            if log_fd is not None:
                os.dup2(log_fd, 2)

        return preexec


class HubSystemdSpawner(StartQueueMixin, OptionsFormMixin, SystemdSpawner):
    """systemdspawner (a transient unit per server, with ``mem_limit``/``cpu_limit``)
    plus the options form. Servers log to the journal (``journalctl -u jupyter-<user>-singleuser``).
    """

    @default("unit_extra_properties")
    def _default_unit_extra_properties(self):
        return {"Nice": str(self.nice)} if self.nice else {}

    async def start(self):
        """In its turn, clone the chosen repository, then start the unit as systemdspawner does."""
        return await self.in_turn(self._start_unit)

    async def _start_unit(self):
        await self.prepare_repository()
        return await super().start()


class HubDockerSpawner(StartQueueMixin, OptionsFormMixin, DockerSpawner):
    """dockerspawner plus the options form, for a Docker API on the hub host.

    Containers use the host's network (``network_name = "host"``, nothing to route
    or NAT, which also works where the engine cannot create bridges, as podman
    nested in a container): each server gets a free port of its own and the hub
    reaches it on 127.0.0.1. A cloned repository goes into the user's volume,
    from inside the container (the image needs git).
    """

    @default("network_name")
    def _default_network_name(self):
        return "host"

    @default("ip")
    def _default_ip(self):
        # On the host's network a server listening on every interface would be
        # reachable around the proxy; only the hub and the proxy need it.
        if self.network_name == "host":
            return "127.0.0.1"
        return super()._ip_default()

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        # On the host's network there is no port to publish (Docker refuses
        # port bindings there); the server's own port is reached directly.
        if self.network_name == "host":
            return True
        return super()._default_use_ip()

    @default("form_images")
    def _default_form_images(self):
        return [self.image]

    @default("git_python")
    def _default_git_python(self):
        return "python3"

    container_home = Unicode(
        "/home/jovyan", help="The user's home inside the container (the volume's mount point)."
    ).tag(config=True)

    def repo_home(self) -> str:
        """Inside the container: the volume holding the user's files."""
        return self.container_home

    @default("port")
    def _default_port(self):
        return 8888

    async def start(self):
        """In its turn: pick a free port (host network), start, clone the repository inside.

        Containers have no niceness: ``nice`` does not apply (``cpu_limit`` does).
        """
        return await self.in_turn(self._start_container)

    async def _start_container(self):
        if self.network_name == "host":
            self.port = random_port()
        if self.git_url:
            # post_start_cmd runs in the container, as its user, before the hub
            # sees the server as ready.
            self.post_start_cmd = f"sh -c {shlex.quote(self.repo_script(self.git_url))}"
        else:
            self.post_start_cmd = False
        return await super().start()

    async def get_ip_and_port(self):
        """With the host's network the server listens on the hub host itself."""
        if self.network_name == "host":
            return "127.0.0.1", self.port
        return await super().get_ip_and_port()


def checked_port_report(data: Any) -> int:
    """The port in a server's report to the hub (``{"port": N}``), or HTTP 400.

    batchspawner's API handler sets every attribute of the spawner the report
    names. A user holds their server's token (their kernels have it), so they
    could set ``exec_prefix`` or ``batch_query_cmd``, which the hub runs as
    root in a shell: only the port is accepted here.

    Raises:
        tornado.web.HTTPError: 400 for anything but one port number.
    """
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"port"} or type(port) is not int:
        raise web.HTTPError(400, 'a server reports only its port: {"port": N}')
    if not 1 <= port <= 65535:
        raise web.HTTPError(400, f"{port} is not a TCP port")
    return port


class PortReportHandler(BatchSpawnerAPIHandler):
    """batchspawner's ``/api/batchspawner``, taking nothing but the server's port."""

    @web.authenticated
    def post(self):
        """Check the report (:func:`checked_port_report`), then let batchspawner apply it."""
        checked_port_report(self.get_json_body())
        return super().post()


# batchspawner adds its handler to JupyterHub's when imported (above); the hub
# builds its routes from that list after loading its configuration, which
# imports this module: the checked handler takes its place.
default_handlers[:] = [
    (pattern, PortReportHandler if handler is BatchSpawnerAPIHandler else handler)
    for pattern, handler in default_handlers
]


# SlurmSpawner's job script, with the site's own #SBATCH lines (each checked by
# the settings: one long option, no template characters) and without
# --get-user-env, which only root's sbatch may use: the job gets the server's
# environment (--export) and the user's own login files are not read.
SLURM_JOB_SCRIPT = """#!/bin/bash
#SBATCH --output={{homedir}}/.jupyterhub-slurm-%j.log
#SBATCH --job-name=jupyterhub-{{username}}
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
#SBATCH --partition={{partition}}
#SBATCH --time={{runtime}}
#SBATCH --mem={{memory}}
#SBATCH --cpus-per-task={{nprocs}}
#SITE-DIRECTIVES#
set -euo pipefail

trap 'echo SIGTERM received' TERM
{{prologue}}
{% if srun %}{{srun}} {% endif %}{{cmd}}
echo "jupyterhub-singleuser ended gracefully"
"""


class HubSlurmSpawner(OptionsFormMixin, SlurmSpawner):
    """batchspawner's SlurmSpawner plus the options form's job fields.

    Each server is a batch job (``sbatch`` as the user, through ``runuser``); its
    job id is the spawner's state in the hub's database, so a restarted hub
    polls the same job (``squeue``) and keeps its route; stopping the server
    cancels it (``scancel``), and a job Slurm ends (walltime, node failure,
    ``scancel`` by anyone) shows as stopped at the next poll. The job's
    partition, walltime, memory and CPUs come from the spawn form (or the REST
    API's ``user_options``), checked against the bounds below; a cloned
    repository is cloned on the hub host, into the home the nodes share.
    """

    form_partitions = List(
        Unicode(), help="Partitions users choose from; the first is the default."
    ).tag(config=True)
    form_walltime = Integer(3600, help="Default walltime, in seconds.").tag(config=True)
    form_walltime_max = Integer(8 * 3600, help="Longest walltime, in seconds.").tag(config=True)
    form_memory = Integer(1024, help="Default memory, in MiB.").tag(config=True)
    form_memory_max = Integer(8192, help="Largest memory, in MiB.").tag(config=True)
    form_cpus = Integer(1, help="Default number of CPUs.").tag(config=True)
    form_cpus_max = Integer(4, help="Most CPUs per server.").tag(config=True)
    job_directives = List(
        Unicode(),
        help="The site's extra sbatch options, one #SBATCH line each (--constraint=avx2).",
    ).tag(config=True)

    @default("exec_prefix")
    def _default_exec_prefix(self):
        # sbatch, squeue and scancel run as the user, so Slurm knows the job
        # as theirs: runuser (util-linux, on every Debian host) needs no sudo
        # package or rule for a root hub, and keeps the job's environment. By
        # its path: the commands' PATH (get_env) has no sbin.
        return "/usr/sbin/runuser -u {username} --"

    @default("req_srun")
    def _default_req_srun(self):
        # The job exports only the server's variables (--export); its step
        # would get only those too (SLURM_EXPORT_ENV), losing what the site's
        # prologue set (module load, exports). The step takes the script's.
        return "srun --export=ALL"

    def get_env(self):
        """The server's environment, with a PATH for Slurm's commands and the job.

        JupyterHub passes no PATH of its own (env_keep); the job exports the
        variables given here (``--export``), so its shell and the server find
        the system's commands.
        """
        env = super().get_env()
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    @default("batch_script")
    def _default_batch_script(self):
        lines = "".join(f"#SBATCH {directive}\n" for directive in self.job_directives)
        return SLURM_JOB_SCRIPT.replace("#SITE-DIRECTIVES#\n", lines)

    def job_bounds(self) -> JobBounds:
        """The job fields' bounds, from this spawner's configuration."""
        return JobBounds(
            partitions=tuple(self.form_partitions) or (self.req_partition,),
            walltime=self.form_walltime,
            walltime_max=self.form_walltime_max,
            memory=self.form_memory,
            memory_max=self.form_memory_max,
            cpus=self.form_cpus,
            cpus_max=self.form_cpus_max,
        )

    def form_settings(self) -> FormSettings:
        """The form of the other kinds, plus the job's fields."""
        settings = super().form_settings()
        return FormSettings(**{**settings.__dict__, "job": self.job_bounds()})

    @default("req_partition")
    def _default_req_partition(self):
        return self.form_partitions[0] if self.form_partitions else ""

    @default("req_runtime")
    def _default_req_runtime(self):
        return format_walltime(self.form_walltime)

    @default("req_memory")
    def _default_req_memory(self):
        return f"{self.form_memory}M"

    @default("req_nprocs")
    def _default_req_nprocs(self):
        return str(self.form_cpus)

    def apply_job_options(self, options: dict[str, Any]) -> None:
        """The checked job options replace the defaults, for this start."""
        if "partition" in options:
            self.req_partition = options["partition"]
        if "walltime" in options:
            self.req_runtime = options["walltime"]
        if "memory" in options:
            self.req_memory = options["memory"]
        if "cpus" in options:
            self.req_nprocs = str(options["cpus"])

    job_watch_interval = Float(
        5,
        help="Seconds between checks, while a started job's server has not reported its "
        "port, that the job still runs.",
    ).tag(config=True)

    async def start(self):
        """Clone the chosen repository (into the shared home), submit the job, watch it.

        batchspawner waits for the server to report its port without looking at
        the job again: a job that dies once running (the server fails on the
        node) would hold the spawn page until the start timeout. Here the job is
        checked every ``job_watch_interval`` seconds meanwhile, and its end
        fails the spawn at once, naming the job's log.

        Returns:
            The ``(node, port)`` the server listens on, as SlurmSpawner.start.

        Raises:
            RuntimeError: If the job ended before its server answered.
        """
        await self.prepare_repository()
        starting = asyncio.ensure_future(super().start())
        try:
            while True:
                done, _ = await asyncio.wait({starting}, timeout=self.job_watch_interval)
                if done:
                    return starting.result()
                ended = await self._job_ended_early()
                if ended:
                    raise RuntimeError(
                        f"Your server's job {ended} ended before the server started; "
                        f"its log is ~/.jupyterhub-slurm-{ended}.log"
                    )
        finally:
            if not starting.done():
                starting.cancel()

    async def _job_ended_early(self) -> str:
        """The job's id if, once seen running, it has gone while its server never reported.

        Returns:
            The ended job's id (its state cleared), or "" while it may still start.
        """
        if not self.job_id or self.port or self.ip in ("", self.traits()["ip"].default_value):
            return ""  # not submitted, already reported, or still pending
        job_id = self.job_id
        if await self.query_job_status() != JobStatus.NOTFOUND:
            return ""  # running, requeued, or Slurm not answering: wait on
        self.log.warning("%s's job %s ended before its server started", self.user.name, job_id)
        self.clear_state()
        return job_id
