"""Conformance: resume positions a caller passes (``since=``) — refused before the
engine sees them when they are no id of the backend, and ``HistoryGap`` when
retention dropped events after them (never a silently shorter replay)."""

from __future__ import annotations

import asyncio

from ..exceptions import HistoryGap
from ..front import Broadcast
from .contract_case import TIMEOUT, ContractCase

#: Positions no backend may take: malformed, non-canonical, or beyond any engine's
#: range (ids are at most two parts of 64 bits).
MALFORMED_IDS = [
    *("", "abc", "1-2-3", "-1", "1-", "-", "1.5", "0x10", "+1", "1_000", "\u0661"),
    *(" 1", "1 ", "1\n", "1\x00", "99999999999999999999999-0", "0-99999999999999999999999"),
    "9" * 40,
    "1" * 5000,
]
#: Most events published while waiting for retention to drop some.
MAX_PUBLISHED = 5000


class PositionContract(ContractCase):
    async def test_a_malformed_since_is_refused_before_reaching_the_engine(self) -> None:
        """``ValueError`` (not an engine error) for every position that is no id of
        the backend, from ``subscribe(since=)`` and ``history(since=)``; the bus
        is unharmed."""
        if await self.refused_without_history("ids"):
            return
        bus = self.bus
        await bus.apublish("ids", "kept")
        for bad in MALFORMED_IDS:
            with self.subTest(since=bad[:20]):
                with self.assertRaises(ValueError):
                    async with bus.subscribe("ids", since=bad):
                        pass
                with self.assertRaises(ValueError):
                    async with bus.subscribe("ids", "other", since={"ids": bad, "other": None}):
                        pass
                with self.assertRaises(ValueError):
                    await bus.ahistory("ids", since=bad)
        with self.assertRaises(ValueError):
            await asyncio.to_thread(bus.history, "ids", since="99999999999999999999999-0")
        stats = bus.stats()
        self.assertEqual((stats["disconnects"], stats["subscribers"]), (0, 0))
        self.assertEqual([e.message for e in await bus.ahistory("ids")], ["kept"])

    async def test_since_before_events_retention_dropped_raises_history_gap(self) -> None:
        """With `RETENTION_OPTIONS`: a position before a dropped event is a
        ``HistoryGap``; one at or after the oldest retained event replays exactly
        what followed it; at the boundary (the newest dropped event) a backend may
        be conservative, but a replay it allows is never short."""
        if await self.refused_without_history("gap"):
            return
        self.need_retention()
        bus = self.retaining
        ids, kept = await self.publish_until_dropped(bus, "gap")
        oldest = ids.index(kept[0])
        for position in (ids[0], ids[oldest - 2]):  # each is followed by a dropped event
            with self.subTest(since=position):
                with self.assertRaises(HistoryGap) as caught:
                    async with bus.subscribe("gap", since=position):
                        pass
                self.assertEqual(caught.exception.channels, ["gap"])
                with self.assertRaises(HistoryGap):
                    await bus.ahistory("gap", since=position, limit=None)
        with self.assertRaises(HistoryGap) as caught:
            async with bus.subscribe("gap", "quiet", since={"gap": ids[0], "quiet": None}):
                pass
        self.assertEqual(caught.exception.channels, ["gap"])
        for index in (oldest, (oldest + len(ids)) // 2, len(ids) - 1):
            with self.subTest(since=ids[index]):
                replay = await bus.ahistory("gap", since=ids[index], limit=None)
                self.assertEqual([e.id for e in replay], ids[index + 1 :])
        try:
            replay = await bus.ahistory("gap", since=ids[oldest - 1], limit=None)
        except HistoryGap:
            pass  # conservative: the engine could not tell what was dropped last
        else:
            self.assertEqual([e.id for e in replay], ids[oldest:])
        async with bus.subscribe("gap", since=kept[0]) as sub:
            events = await self.drain(sub, len(kept) - 1)
            await bus.apublish("gap", "live")
            self.assertEqual((await sub.get(TIMEOUT)).message, "live")
        self.assertEqual([e.id for e in events], kept[1:])
        self.assertEqual(bus.stats()["disconnects"], 0)

    async def test_the_baseline_of_an_empty_channel_is_a_position_until_events_drop(
        self,
    ) -> None:
        """The baseline ``subscribe()`` returns for a channel without events resumes
        every event published after it, until retention drops one of them."""
        if await self.refused_without_history("fresh"):
            return
        self.need_retention()
        bus = self.retaining
        backend = await self.connected_backend(bus)
        baseline = (await asyncio.wait_for(backend.subscribe({"fresh": None}), TIMEOUT))["fresh"]
        await asyncio.wait_for(backend.unsubscribe(["fresh"]), TIMEOUT)
        self.assertTrue(await asyncio.wait_for(backend.retains("fresh", baseline), TIMEOUT))
        first = await bus.apublish("fresh", "first")
        self.assertTrue(await asyncio.wait_for(backend.retains("fresh", baseline), TIMEOUT))
        async with bus.subscribe("fresh", since=baseline) as sub:
            self.assertEqual((await sub.get(TIMEOUT)).id, first)
        await self.publish_until_dropped(bus, "fresh")
        self.assertFalse(await asyncio.wait_for(backend.retains("fresh", baseline), TIMEOUT))
        with self.assertRaises(HistoryGap):
            await bus.ahistory("fresh", since=baseline)

    async def test_history_pages_hold_only_retained_events(self) -> None:
        """With `RETENTION_OPTIONS`: pages (``oldest_first=True``) start at the oldest
        retained event, and one after a position followed by dropped events raises
        ``HistoryGap``, as ``since=`` does."""
        if await self.refused_without_history("pages"):
            return
        self.need_retention()
        bus = self.retaining
        ids, kept = await self.publish_until_dropped(bus, "pages")
        page = await bus.ahistory("pages", limit=2, oldest_first=True)
        self.assertEqual([e.id for e in page], kept[:2])
        page = await bus.ahistory("pages", since=kept[0], limit=2, oldest_first=True)
        self.assertEqual([e.id for e in page], kept[1:3])
        with self.assertRaises(HistoryGap):
            await bus.ahistory("pages", since=ids[0], limit=2, oldest_first=True)

    async def test_a_position_after_every_issued_id_is_a_history_gap(self) -> None:
        """A made-up position after the newest id the backend has issued (on a channel
        without events, or after its newest event) is a ``HistoryGap``: accepted, it
        would make the channel's next events, whose ids sort before it, look like
        duplicates and be skipped. The newest id itself resumes."""
        if await self.refused_without_history("ahead"):
            return
        bus = self.bus
        newest = await bus.apublish("ahead", "only") or ""
        beyond = _later_id(newest)
        if beyond is None:
            self.skipTest(f"cannot make an id after {newest!r}: ids are not 'N' or 'N-M'")
        backend = await self.connected_backend()
        for channel in ("ahead", "ahead.empty"):
            with self.subTest(channel=channel):
                self.assertFalse(await asyncio.wait_for(backend.retains(channel, beyond), TIMEOUT))
                with self.assertRaises(HistoryGap) as caught:
                    async with bus.subscribe(channel, since=beyond):
                        pass
                self.assertEqual(caught.exception.channels, [channel])
                with self.assertRaises(HistoryGap):
                    await bus.ahistory(channel, since=beyond)
                with self.assertRaises(HistoryGap):
                    await bus.ahistory(channel, since=beyond, limit=5, oldest_first=True)
        self.assertTrue(await asyncio.wait_for(backend.retains("ahead", newest), TIMEOUT))
        async with bus.subscribe("ahead", since=newest) as sub:
            await bus.apublish("ahead", "next")
            self.assertEqual((await sub.get(TIMEOUT)).message, "next")
        self.assertEqual(bus.stats()["subscribers"], 0)

    # -- helpers ------------------------------------------------------------

    def need_retention(self) -> None:
        """Skip the test unless `RETENTION_OPTIONS` is set."""
        if self.RETENTION_OPTIONS is None:
            self.skipTest("set RETENTION_OPTIONS to options keeping a few events per channel")

    async def publish_until_dropped(
        self, bus: Broadcast, channel: str
    ) -> tuple[list[str], list[str]]:
        """Publish on ``channel`` until retention has dropped at least its first three
        events; return the ids published and the ids retained, oldest first."""
        ids: list[str] = []
        while len(ids) < MAX_PUBLISHED:
            batch = [bus.apublish(channel, len(ids) + i) for i in range(50)]
            ids += [event_id or "" for event_id in await asyncio.gather(*batch)]
            kept = [e.id or "" for e in await bus.ahistory(channel, limit=None)]
            if not set(kept) & set(ids[:3]):  # the oldest go first
                return ids, kept
        self.fail(
            f"retention dropped nothing of {MAX_PUBLISHED} events with RETENTION_OPTIONS "
            f"{self.RETENTION_OPTIONS}"
        )


def _later_id(event_id: str) -> str | None:
    """An id well after ``event_id`` (its first part plus a million) when it is ``"N"``
    or ``"N-M"``; ``None`` otherwise."""
    first, dash, rest = event_id.partition("-")
    if not first.isdigit() or not (rest.isdigit() or not dash):
        return None
    return f"{int(first) + 10**6}{dash}{rest}"
