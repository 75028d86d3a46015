"""The hub's start queue: how many users' servers start at once, and who waits.

When a whole class presses "Start" in the same minute, starting every server at
once makes each take as long as all of them together: a server's start is mostly
CPU (imports), and a hundred of them share the host's few cores. Each then misses
the hub's timeouts, and the hub's own event loop (its API, the spawn pages)
starves too. A :class:`StartQueue` lets a fixed number of servers start at a
time, first come first served, and tells each waiting user where they stand.

The queue belongs to one hub process (a hub restart forgets who waited: their
spawns were lost with the process anyway). It holds no lock across ``await``: all
of it runs on the hub's event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

__all__ = ["StartQueue", "Ticket", "default_slots"]

# Servers starting at once per core when the inventory says "auto" (0). Measured
# with benchmarks/burst.py (100 servers at once, 2 cores): one per core brought
# the last server up sooner (158 s against 178 s) and kept the hub's API
# answering (7 of 8405 polls over 1 s, against 231 of 9236) than two per core.
SLOTS_PER_CORE = 1


def default_slots() -> int:
    """Servers that start at once when not configured: one per usable core of this host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, SLOTS_PER_CORE * cores)


class Ticket:
    """One server's place in the queue: waiting, then its turn, then done."""

    __slots__ = ("_turn", "done")

    def __init__(self) -> None:
        self._turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done = False

    @property
    def has_turn(self) -> bool:
        """Whether this server holds one of the queue's slots now."""
        return not self.done and self._turn.done() and not self._turn.cancelled()


class StartQueue:
    """At most ``slots`` servers start at once; the others wait in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a start queue needs at least one slot, not {slots}")
        self.slots = slots
        self.starting = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def waiting(self) -> int:
        """How many servers wait for their turn."""
        return len(self._waiting)

    def ahead_of(self, ticket: Ticket) -> int:
        """How many servers will start before ``ticket``'s (0 once it has its turn)."""
        if ticket.done or ticket._turn.done():
            return 0
        try:
            return self._waiting.index(ticket)
        except ValueError:
            return 0

    def join(self) -> Ticket:
        """Take a ticket: the turn comes at once if a slot is free and nobody waits."""
        ticket = Ticket()
        if self.starting < self.slots and not self._waiting:
            self.starting += 1
            ticket._turn.set_result(None)
        else:
            self._waiting.append(ticket)
        return ticket

    async def wait_for_turn(self, ticket: Ticket) -> None:
        """Return when ``ticket`` may start; cancelled, it leaves the queue (see :meth:`leave`)."""
        # shield: a timeout or a cancelled spawn must not cancel the future that
        # leave() and _hand_on() read.
        await asyncio.shield(ticket._turn)

    def leave(self, ticket: Ticket) -> None:
        """The server started, failed or gave up: free its slot or its place. Idempotent."""
        if ticket.done:
            return
        held_a_slot = ticket.has_turn
        ticket.done = True
        if held_a_slot:
            self.starting -= 1
        else:
            with suppress(ValueError):
                self._waiting.remove(ticket)
            if not ticket._turn.done():
                ticket._turn.cancel()
        self._hand_on()

    def _hand_on(self) -> None:
        while self.starting < self.slots and self._waiting:
            ticket = self._waiting.popleft()
            self.starting += 1
            ticket._turn.set_result(None)

    @asynccontextmanager
    async def turn(self, ticket: Ticket | None = None) -> AsyncIterator[Ticket]:
        """``async with queue.turn():`` waits for a slot and frees it on the way out."""
        ticket = ticket or self.join()
        try:
            await self.wait_for_turn(ticket)
            yield ticket
        finally:
            self.leave(ticket)
