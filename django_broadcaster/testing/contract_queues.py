"""Conformance: work queues (``enqueue``/``dequeue``/``restore``), the optional part of
the contract the channel layer's normal channel names need; a clear refusal on a
backend without them.

Each test uses two connected instances of the backend as two processes would.
"""

from __future__ import annotations

import asyncio

from ..backends.base import BaseBackend
from ..exceptions import QueuesNotSupported
from .contract_case import TIMEOUT, ContractCase

WAKE = b"0"


class QueueContract(ContractCase):
    async def queues(self) -> tuple[BaseBackend, BaseBackend] | None:
        """Two connected instances (two "processes"), or ``None`` after checking
        that a backend without queues refuses them with `QueuesNotSupported`."""
        first = await self.connected_backend()
        if not first.supports_queues:
            with self.assertRaisesRegex(QueuesNotSupported, "has no work queues"):
                await first.enqueue("q", b"m", capacity=1, expiry=60, wake=WAKE)
            with self.assertRaises(QueuesNotSupported):
                await first.dequeue("q", 1)
            return None
        return first, await self.connected_backend(self.peer)

    async def test_queue_is_first_in_first_out_across_instances(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        self.assertEqual(await a.dequeue("jobs", 5), [])
        for n in range(5):
            self.assertTrue(await a.enqueue("jobs", b"%d" % n, capacity=10, expiry=60, wake=WAKE))
        self.assertEqual(await b.dequeue("jobs", 2), [b"0", b"1"])
        self.assertEqual(await a.dequeue("jobs", 1), [b"2"])
        self.assertEqual(await b.dequeue("jobs", 10), [b"3", b"4"])
        self.assertEqual(await a.dequeue("jobs", 10), [])
        self.assertEqual(await a.dequeue("other", 10), [], "queues are separate")

    async def test_queue_carries_any_bytes(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        payloads = [b"\x00\xff\xfe\x80", "ünï ✓".encode(), b"", bytes(range(256)) * 64]
        for payload in payloads:
            await a.enqueue("bytes", payload, capacity=10, expiry=60, wake=WAKE)
        self.assertEqual(await b.dequeue("bytes", 10), payloads)

    async def test_capacity_is_shared_by_every_sender(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        self.assertTrue(await a.enqueue("full", b"1", capacity=2, expiry=60, wake=WAKE))
        self.assertTrue(await b.enqueue("full", b"2", capacity=2, expiry=60, wake=WAKE))
        self.assertFalse(await a.enqueue("full", b"3", capacity=2, expiry=60, wake=WAKE))
        self.assertFalse(await b.enqueue("full", b"3", capacity=2, expiry=60, wake=WAKE))
        self.assertEqual(await b.dequeue("full", 1), [b"1"])
        self.assertTrue(await a.enqueue("full", b"4", capacity=2, expiry=60, wake=WAKE))
        self.assertEqual(await a.dequeue("full", 5), [b"2", b"4"])

    async def test_expired_messages_are_neither_taken_nor_counted(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        await a.enqueue("exp", b"old", capacity=2, expiry=0.2, wake=WAKE)
        await a.enqueue("exp", b"old", capacity=2, expiry=0.2, wake=WAKE)
        await asyncio.sleep(0.4)
        self.assertTrue(await b.enqueue("exp", b"new", capacity=2, expiry=60, wake=WAKE))
        self.assertEqual(await a.dequeue("exp", 5), [b"new"])
        await a.enqueue("exp", b"gone", capacity=2, expiry=0.2, wake=WAKE)
        await asyncio.sleep(0.4)
        self.assertEqual(await b.dequeue("exp", 5), [])

    async def test_each_message_is_taken_once_by_concurrent_takers(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        sent = [b"%d" % n for n in range(300)]
        for payload in sent:
            await a.enqueue("race", payload, capacity=1000, expiry=60, wake=WAKE)

        async def take(backend: BaseBackend) -> list[bytes]:
            taken: list[bytes] = []
            while batch := await backend.dequeue("race", 3):
                taken += batch
            return taken

        first, second = await asyncio.wait_for(asyncio.gather(take(a), take(b)), TIMEOUT)
        self.assertEqual(sorted(first + second, key=int), sent, "each message exactly once")
        self.assertEqual(first, sorted(first, key=int), "each taker gets them in order")
        self.assertEqual(second, sorted(second, key=int))

    async def test_restore_puts_messages_back_at_the_head(self) -> None:
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        for n in range(4):
            await a.enqueue("back", b"%d" % n, capacity=4, expiry=60, wake=WAKE)
        taken = await a.dequeue("back", 2)
        self.assertEqual(taken, [b"0", b"1"])
        await b.enqueue("back", b"4", capacity=4, expiry=60, wake=WAKE)
        await b.enqueue("back", b"5", capacity=4, expiry=60, wake=WAKE)  # full now
        await a.restore("back", taken, expiry=60, wake=WAKE)  # whatever the capacity
        self.assertEqual(await b.dequeue("back", 10), [b"0", b"1", b"2", b"3", b"4", b"5"])

    async def test_enqueue_and_restore_wake_the_queues_subscribers(self) -> None:
        """The wake-up is an event on channel ``queue`` with the payload given."""
        pair = await self.queues()
        if pair is None:
            return
        a, b = pair
        await b.subscribe({"wakes": None})
        await a.enqueue("wakes", b"m", capacity=5, expiry=60, wake=WAKE)
        (event,) = await self.receive_raw(b, 1)
        self.assertEqual((event.channel, event.payload), ("wakes", WAKE))
        await a.restore("wakes", await a.dequeue("wakes", 1), expiry=60, wake=WAKE)
        (event,) = await self.receive_raw(b, 1)
        self.assertEqual((event.channel, event.payload), ("wakes", WAKE))
