"""The start queue: a few servers start at once, the rest wait in arrival order.

Real asyncio tasks on a real event loop; the "starts" are coroutines that hold
their slot until the test lets them go, so each step's state is exact.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from tornado import web

from hub_app import spawners
from hub_app.start_queue import SLOTS_PER_CORE, StartQueue, default_slots


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_default_is_two_per_usable_core():
    assert default_slots() == SLOTS_PER_CORE * len(os.sched_getaffinity(0))


def test_a_queue_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        StartQueue(0)


def test_free_slots_are_taken_at_once_then_arrivals_wait_in_order():
    async def scenario():
        queue = StartQueue(2)
        tickets = [queue.join() for _ in range(5)]
        assert [t.has_turn for t in tickets] == [True, True, False, False, False]
        assert (queue.starting, queue.waiting) == (2, 3)
        assert [queue.ahead_of(t) for t in tickets] == [0, 0, 0, 1, 2]
        queue.leave(tickets[1])  # a start ends: the first waiting one goes
        assert [t.has_turn for t in tickets] == [True, False, True, False, False]
        assert [queue.ahead_of(t) for t in tickets[3:]] == [0, 1]
        queue.leave(tickets[3])  # a waiting user gives up: nobody starts
        assert queue.starting == 2
        assert queue.ahead_of(tickets[4]) == 0
        queue.leave(tickets[0])
        assert tickets[4].has_turn
        for ticket in tickets:
            queue.leave(ticket)
            queue.leave(ticket)  # idempotent
        assert (queue.starting, queue.waiting) == (0, 0)

    run(scenario())


def test_no_more_than_the_slots_run_and_all_finish_in_arrival_order():
    async def scenario():
        queue = StartQueue(3)
        running = peak = 0
        order = []

        async def start(number):
            nonlocal running, peak
            async with queue.turn():
                running += 1
                peak = max(peak, running)
                order.append(number)
                await asyncio.sleep(0.01)
                running -= 1

        await asyncio.gather(*(start(n) for n in range(20)))
        return peak, order, queue

    peak, order, queue = run(scenario())
    assert peak == 3
    assert order == list(range(20))
    assert (queue.starting, queue.waiting) == (0, 0)


def test_a_wait_that_times_out_leaves_its_place_to_the_next():
    async def scenario():
        queue = StartQueue(1)
        first = queue.join()
        second, third = queue.join(), queue.join()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.wait_for_turn(second), 0.05)
        queue.leave(second)
        assert queue.ahead_of(third) == 0
        queue.leave(first)
        await asyncio.wait_for(queue.wait_for_turn(third), 1)
        return queue.starting

    assert run(scenario()) == 1


class FakeSpawner(spawners.StartQueueMixin):
    """Only what in_turn reads of a JupyterHub spawner: no server to wait for."""

    server = None
    internal_ssl = False
    http_timeout = 5
    _log_name = "test"


@pytest.fixture(autouse=True)
def fresh_queues(monkeypatch):
    monkeypatch.setattr(spawners, "_START_QUEUES", {})


def test_in_turn_reports_the_place_then_the_start_and_times_out_with_a_message():
    async def scenario():
        release = asyncio.Event()

        async def start():
            await release.wait()
            return ("127.0.0.1", 1)

        first = FakeSpawner(start_slots=1, queue_timeout=30)
        second = FakeSpawner(start_slots=1, queue_timeout=30)
        third = FakeSpawner(start_slots=1, queue_timeout=1)
        first_start = asyncio.ensure_future(first.in_turn(start))
        second_start = asyncio.ensure_future(second.in_turn(start))
        await asyncio.sleep(0.05)
        messages = []

        async def read(spawner):
            async for event in spawner.progress():
                messages.append(event["message"])

        reader = asyncio.ensure_future(read(second))
        await asyncio.sleep(0.3)
        # The third gives up after its queue_timeout, with how far it got.
        with pytest.raises(web.HTTPError) as refused:
            await third.in_turn(start)
        release.set()
        assert await first_start == ("127.0.0.1", 1)
        assert await second_start == ("127.0.0.1", 1)
        await asyncio.wait_for(reader, 5)
        return messages, refused.value

    messages, refused = run(scenario())
    assert messages == [
        "Waiting your turn to start: 0 ahead of you in the queue, 1 starting now (1 at a time)",
        "Starting your server",
        "Your server is loading",
    ]
    assert refused.status_code == 503
    assert "waited 1 s for its turn" in refused.log_message
    assert "Try again" in refused.log_message


def test_a_start_that_overruns_its_turn_frees_the_slot():
    async def scenario():
        async def hang():
            await asyncio.sleep(30)

        spawner = FakeSpawner(start_slots=1, turn_timeout=1)
        with pytest.raises(web.HTTPError) as refused:
            await spawner.in_turn(hang)
        queue = spawners.start_queue(1)
        return refused.value, queue.starting

    refused, starting = run(scenario())
    assert refused.status_code == 503
    assert "did not start within 1 s of its turn" in refused.log_message
    assert starting == 0


def test_zero_slots_means_the_host_default():
    assert spawners.start_queue(0).slots == default_slots()
    assert spawners.start_queue(0) is spawners.start_queue(default_slots())
