#!/usr/bin/python3
"""supervisord event listener: no program gives up for good, and start hooks run.

supervisord runs this as ``[eventlistener:supervisor-watchdog]`` subscribed to
PROCESS_STATE events. Two duties, whatever started or stopped a program (a crash
and autorestart, ``supervisorctl restart``, a restart of supervisord, a reboot,
a deploy):

* **Start hooks.** Each time program P enters STARTING, every executable in
  ``HOOKS_DIR/P/`` runs (sorted by name, one run of P's hooks at a time; a start
  during a run queues one more run). The hub registers one for the proxy, which
  keeps its routes in memory only: the hook waits for the proxy's API and has the
  hub put every route back.
* **Back-off instead of FATAL.** supervisord gives up on a program that fails to
  stay up ``startsecs`` for ``startretries`` times in a row (FATAL), and never
  tries again. The watchdog starts such a program again after a back-off that
  doubles from ``--first-delay`` up to ``--max-delay`` seconds, for as long as it
  keeps failing; a program that reaches RUNNING starts the next back-off afresh.
  A program an operator stopped (STOPPED) is left alone.

Every decision is logged on stderr (supervisord keeps it in the listener's log).
stdout belongs to supervisord's event protocol; nothing else may write there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

LISTENER_NAME = "supervisor-watchdog"


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {LISTENER_NAME}: {message}", file=sys.stderr, flush=True)


def parse_tokens(line: str) -> dict[str, str]:
    """``key:value key:value`` (supervisord's header and payload format) to a dict."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


class HookRunner:
    """Run one program's start hooks, never two runs at once, never a start missed."""

    def __init__(self, program: str, hooks_dir: Path, timeout: float) -> None:
        self.program = program
        self.hooks_dir = hooks_dir
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def trigger(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._loop, name=f"hooks-{self.program}", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._run_once()
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False

    def _run_once(self) -> None:
        folder = self.hooks_dir / self.program
        hooks = (
            sorted(p for p in folder.iterdir() if p.is_file() and os.access(p, os.X_OK))
            if folder.is_dir()
            else []
        )
        for hook in hooks:
            started = time.monotonic()
            try:
                result = subprocess.run(  # noqa: S603 -- root-owned hooks the bundle installs
                    [str(hook)],
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                log(f"{self.program} started; hook {hook} failed: {error}")
                continue
            said = " ".join((result.stdout + result.stderr).split())[-500:]
            outcome = "ok" if result.returncode == 0 else f"failed (exit {result.returncode})"
            log(
                f"{self.program} started; hook {hook.name} {outcome} "
                f"in {time.monotonic() - started:.1f} s: {said}"
            )


class Restarter:
    """Start FATAL programs again after a doubling back-off."""

    def __init__(self, first_delay: float, max_delay: float) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, threading.Timer] = {}

    def fatal(self, program: str) -> None:
        with self._lock:
            failures = self._failures.get(program, 0)
            self._failures[program] = failures + 1
            delay = min(self.max_delay, self.first_delay * 2**failures)
            if program in self._timers:
                self._timers[program].cancel()
            timer = threading.Timer(delay, self._start, args=(program,))
            timer.daemon = True
            self._timers[program] = timer
        log(
            f"{program} gave up starting (FATAL); starting it again in {delay:g} s "
            f"(back-off {failures + 1})"
        )
        timer.start()

    def running(self, program: str) -> None:
        with self._lock:
            if self._failures.pop(program, None):
                log(f"{program} is running again")
            timer = self._timers.pop(program, None)
        if timer:
            timer.cancel()

    def stopped(self, program: str) -> None:
        """An operator's stop: forget the back-off, start nothing."""
        with self._lock:
            self._failures.pop(program, None)
            timer = self._timers.pop(program, None)
        if timer:
            timer.cancel()
            log(f"{program} was stopped; no restart pending any more")

    def _start(self, program: str) -> None:
        with self._lock:
            self._timers.pop(program, None)
        result = subprocess.run(  # noqa: S603 -- fixed command
            ["/usr/bin/supervisorctl", "start", program],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        log(f"supervisorctl start {program}: {' '.join((result.stdout + result.stderr).split())}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks-dir", type=Path, required=True)
    parser.add_argument("--first-delay", type=float, default=5.0)
    parser.add_argument("--max-delay", type=float, default=60.0)
    parser.add_argument("--hook-timeout", type=float, default=120.0)
    args = parser.parse_args()

    restarter = Restarter(args.first_delay, args.max_delay)
    hook_runners: dict[str, HookRunner] = {}
    log(f"watching every program; start hooks from {args.hooks_dir}")
    stdin, stdout = sys.stdin, sys.stdout
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return 0  # supervisord went away
        header = parse_tokens(header_line)
        payload = stdin.read(int(header.get("len", "0")))
        try:
            event = header.get("eventname", "")
            fields = parse_tokens(payload.split("\n", 1)[0])
            program = fields.get("processname", "")
            if program and program != LISTENER_NAME:
                if event == "PROCESS_STATE_STARTING":
                    runner = hook_runners.setdefault(
                        program, HookRunner(program, args.hooks_dir, args.hook_timeout)
                    )
                    runner.trigger()
                elif event == "PROCESS_STATE_RUNNING":
                    restarter.running(program)
                elif event == "PROCESS_STATE_FATAL":
                    restarter.fatal(program)
                elif event == "PROCESS_STATE_STOPPED":
                    restarter.stopped(program)
        except Exception as error:
            log(f"could not handle {header_line.strip()!r}: {error!r}")
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
