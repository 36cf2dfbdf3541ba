"""`SharedTrips`: the work-queue calls of one event loop share round trips on the
Redis backends' command connection (a real one here, its round trips recorded)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from django_broadcaster.backends.redis.connection import ConnectionClosed, RedisConnections
from django_broadcaster.backends.redis.shared_trips import MAX_COMMANDS, SharedTrips

from .support.backends import REDIS_URL

#: Keeps the first round trip in flight while the test queues more calls.
SLOW = ("BLPOP", "shared-trips-test-nothing", "0.2")


class Recorded:
    """`RedisConnections.execute` of a real connection, recording each round trip."""

    def __init__(self, connections: RedisConnections) -> None:
        self.connections = connections
        self.trips: list[tuple[tuple[Any, ...], ...]] = []

    async def __call__(self, *commands: tuple[Any, ...]) -> list[Any]:
        self.trips.append(commands)
        return await self.connections.execute(*commands)


@pytest.fixture
async def recorded() -> AsyncIterator[Recorded]:
    connections = RedisConnections("test", REDIS_URL, {"socket_timeout": 5})
    await connections.connect()
    try:
        yield Recorded(connections)
    finally:
        await connections.close()


async def started(coro: Any) -> asyncio.Task[Any]:
    """``coro`` running in a task that has sent (or queued) its commands."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


async def test_calls_made_during_a_round_trip_go_together_in_the_next(recorded: Recorded) -> None:
    trips = SharedTrips(recorded)
    first = await started(trips.run(SLOW))
    later = [
        await started(trips.run(("ECHO", "a"))),
        await started(trips.run(("ECHO", "b"), ("ECHO", "c"))),
        await started(trips.run(("ECHO", "d"))),
    ]
    assert await first == [None]
    assert [await task for task in later] == [[b"a"], [b"b", b"c"], [b"d"]]
    assert recorded.trips == [
        (SLOW,),
        (("ECHO", "a"), ("ECHO", "b"), ("ECHO", "c"), ("ECHO", "d")),
    ]
    assert await trips.run(("ECHO", "alone")) == [b"alone"]
    assert recorded.trips[-1] == (("ECHO", "alone"),), "nothing in flight: sent at once"


async def test_a_caller_answered_calls_again_in_the_next_round_trip(recorded: Recorded) -> None:
    """As a sender awaiting each send does: its next call joins the call queued while
    its round trip was in flight (a fetch), instead of each going alone."""
    trips = SharedTrips(recorded)

    async def sender() -> list[Any]:
        await trips.run(SLOW)
        return await trips.run(("ECHO", "next send"))

    first = await started(trips.run(SLOW))
    sending = await started(sender())
    await first  # the sender's first call is in flight now
    await asyncio.sleep(0.05)
    fetch = await started(trips.run(("ECHO", "fetch")))
    assert await sending == [b"next send"]
    assert await fetch == [b"fetch"]
    assert recorded.trips == [(SLOW,), (SLOW,), (("ECHO", "fetch"), ("ECHO", "next send"))]


async def test_each_call_gets_its_own_error_replies(recorded: Recorded) -> None:
    key = f"shared-trips-{uuid.uuid4().hex}"
    trips = SharedTrips(recorded)
    first = await started(trips.run(SLOW))
    failing = await started(trips.run(("SET", key, "x"), ("INCR", key)))
    fine = await started(trips.run(("ECHO", "ok")))
    await first
    ok, error = await failing
    assert ok == b"OK" and isinstance(error, ResponseError)
    assert await fine == [b"ok"]
    await recorded.connections.execute(("DEL", key))


async def test_a_call_cancelled_before_its_turn_sends_nothing(recorded: Recorded) -> None:
    key = f"shared-trips-{uuid.uuid4().hex}"
    trips = SharedTrips(recorded)
    first = await started(trips.run(SLOW))
    cancelled = await started(trips.run(("INCR", key)))
    kept = await started(trips.run(("INCR", key)))
    cancelled.cancel()
    await first
    assert await kept == [1]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert recorded.trips[1:] == [(("INCR", key),)]
    await recorded.connections.execute(("DEL", key))


async def test_a_failed_round_trip_fails_each_of_its_calls_and_later_ones_go_on(
    recorded: Recorded,
) -> None:
    trips = SharedTrips(recorded)
    first = await started(trips.run(SLOW))
    queued = [await started(trips.run(("ECHO", str(n)))) for n in range(3)]
    await recorded.connections.close()  # the link is lost under the calls
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert all(isinstance(result, ConnectionClosed) for result in results[1:]), results
    await recorded.connections.connect()  # as the hub reconnects
    assert await trips.run(("ECHO", "again")) == [b"again"]


async def test_a_round_trip_carries_at_most_max_commands(recorded: Recorded) -> None:
    trips = SharedTrips(recorded)
    first = await started(trips.run(SLOW))
    calls = [asyncio.create_task(trips.run(("ECHO", str(n)))) for n in range(MAX_COMMANDS + 7)]
    await first
    replies = await asyncio.gather(*calls)
    assert replies == [[str(n).encode()] for n in range(MAX_COMMANDS + 7)], "each its own, in order"
    assert [len(trip) for trip in recorded.trips] == [1, MAX_COMMANDS, 7]
