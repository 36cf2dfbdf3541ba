"""Conformance: history, ``since=``/``history=`` and the replay seam on a backend
with history; a clear refusal on a backend without."""

from __future__ import annotations

import asyncio

from ..exceptions import HistoryNotSupported
from .contract_case import TIMEOUT, ContractCase


class HistoryContract(ContractCase):
    async def test_history_reads_after_since_and_up_to_limit(self) -> None:
        if await self.refused_without_history("h"):
            return
        bus = self.bus
        ids = [await bus.apublish("h", i) for i in range(10)]
        self.assertEqual([e.message for e in await bus.ahistory("h")], list(range(10)))
        self.assertEqual([e.id for e in await bus.ahistory("h")], ids)
        self.assertEqual([e.message for e in await bus.ahistory("h", limit=3)], [7, 8, 9])
        self.assertEqual([e.message for e in await bus.ahistory("h", since=ids[5])], [6, 7, 8, 9])
        self.assertEqual([e.id for e in await bus.ahistory("h", since=ids[5], limit=2)], ids[8:])
        self.assertEqual(await bus.ahistory("h", since=ids[9]), [])
        self.assertEqual(await bus.ahistory("h", limit=0), [])
        self.assertEqual(await bus.ahistory("never.used"), [])
        synced = await asyncio.to_thread(bus.history, "h", limit=2)
        self.assertEqual([e.message for e in synced], [8, 9])
        # Another host sees the same history.
        self.assertEqual([e.id for e in await self.peer.ahistory("h")], ids)

    async def test_history_pages_forward_oldest_first(self) -> None:
        """``oldest_first=True``: the oldest ``limit`` events after ``since``, so that
        ``since=`` the last id read reads the next page; the backend's ``history_page``
        likewise."""
        if await self.refused_without_history("p"):
            with self.assertRaises(HistoryNotSupported):
                await self.bus.ahistory("p", limit=10, oldest_first=True)
            return
        bus = self.bus
        ids = [await bus.apublish("p", i) for i in range(25)]
        paged: list[str | None] = []
        since = None
        while True:
            page = await bus.ahistory("p", since=since, limit=10, oldest_first=True)
            self.assertLessEqual(len(page), 10)
            paged += [e.id for e in page]
            if len(page) < 10:
                break
            since = page[-1].id
        self.assertEqual(paged, ids)
        page = await bus.ahistory("p", since=ids[4], limit=3, oldest_first=True)
        self.assertEqual([e.message for e in page], [5, 6, 7])
        self.assertEqual(await bus.ahistory("p", since=ids[-1], limit=3, oldest_first=True), [])
        self.assertEqual(await bus.ahistory("p", limit=0, oldest_first=True), [])
        everything = await bus.ahistory("p", since=ids[19], limit=None, oldest_first=True)
        self.assertEqual([e.id for e in everything], ids[20:])
        self.assertEqual(await bus.ahistory("never.used", limit=5, oldest_first=True), [])
        synced = await asyncio.to_thread(bus.history, "p", limit=2, oldest_first=True)
        self.assertEqual([e.message for e in synced], [0, 1])
        self.assertEqual([e.id for e in await self.peer.ahistory("p", oldest_first=True)], ids)
        backend = await self.connected_backend()
        raw = await asyncio.wait_for(backend.history_page("p", ids[9], 4), TIMEOUT)
        self.assertEqual([(e.channel, e.id) for e in raw], [("p", i) for i in ids[10:14]])
        self.assertEqual([e.id for e in await backend.history_page("p", None, 2)], ids[:2])
        self.assertEqual(await backend.history_page("p", ids[0], 0), [])

    async def test_subscribe_replays_history_then_goes_live(self) -> None:
        if await self.refused_without_history("h"):
            return
        bus = self.bus
        ids = [await bus.apublish("h", i) for i in range(10)]
        async with bus.subscribe("h", history=3) as sub:
            await bus.apublish("h", 10)
            self.assertEqual([e.message for e in await self.drain(sub, 4)], [7, 8, 9, 10])
        async with bus.subscribe("h", since=ids[7]) as sub:
            self.assertEqual([e.message for e in await self.drain(sub, 3)], [8, 9, 10])
            await bus.apublish("h", 11)
            self.assertEqual((await self.drain(sub, 1))[0].message, 11)
            self.assertEqual(sub.pending, 0)

    async def test_replay_seam_has_no_gap_and_no_duplicate(self) -> None:
        """Events published while the history is being read appear exactly once, in order."""
        if await self.refused_without_history("seam"):
            return
        bus = self.bus
        first = await bus.apublish("seam", 0)
        stop = asyncio.Event()
        published: list[int] = []

        async def publisher() -> None:
            i = 1
            while not stop.is_set() and i < 400:
                await self.peer.apublish("seam", i)
                published.append(i)
                i += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(publisher())
        await asyncio.sleep(0.01)
        async with bus.subscribe("seam", since=first) as sub:
            await asyncio.sleep(0.05)
            stop.set()
            await task
            await bus.apublish("seam", "end")
            events = await self.drain(sub, len(published) + 1)
            self.assertEqual(sub.pending, 0)
        self.assertEqual([e.message for e in events], [*published, "end"])
        self.assert_in_order(events)

    async def test_since_mapping_for_several_channels(self) -> None:
        with self.assertRaisesRegex(ValueError, "mapping"):
            self.bus.subscribe("m.a", "m.b", since="1")
        with self.assertRaisesRegex(ValueError, "not subscribed"):
            self.bus.subscribe("m.a", since={"m.c": "1"})
        if await self.refused_without_history("m.a"):
            return
        bus = self.bus
        a = await bus.apublish("m.a", "a0")
        await bus.apublish("m.a", "a1")
        await bus.apublish("m.b", "b0")
        async with bus.subscribe("m.a", "m.b", since={"m.a": a}) as sub:
            await bus.apublish("m.b", "b1")
            events = await self.drain(sub, 2)
        self.assertEqual([e.message for e in events], ["a1", "b1"])
