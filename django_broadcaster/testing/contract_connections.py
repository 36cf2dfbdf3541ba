"""Conformance: broken connections (through ``break_connection()``) and the backend
methods the hub heals them with: ``close()``, ``connect()``, ``subscribe()``."""

from __future__ import annotations

import asyncio

from ..backends.base import RawEvent
from .contract_case import TIMEOUT, ContractCase

#: Payloads a backend must carry byte for byte (not valid UTF-8, multibyte, large).
PAYLOADS = [b"\x00\xff\xfe\x80 not text", "ünï ✓".encode(), b"{}", bytes(range(256)) * 64]


class ConnectionContract(ContractCase):
    async def test_reconnect_loses_nothing(self) -> None:
        """With history, every event arrives once and in order across a broken
        connection: published before it, while the reconnect is pending (here
        and by another host) and after it. Without, delivery resumes."""
        bus = self.bus
        async with bus.subscribe("stream") as sub:
            for i in range(5):
                await bus.apublish("stream", i)
            received = await self.drain(sub, 5)
            await self.outage()
            for i in range(5, 10):  # the peer connects now: its connection is sound
                await self.peer.apublish("stream", i)
            for i in range(10, 15):  # the hub heals the connection to send them
                await bus.apublish("stream", i)
            await self.reconnected()
            for i in range(15, 20):
                await bus.apublish("stream", i)
            if self.keeps_history:
                received += await self.drain(sub, 15)
            else:  # events published during the outage may be lost, the later ones not
                while received[-1].message != 19:
                    received.append(await sub.get(TIMEOUT))
            await bus.apublish("stream", "end")
            self.assertEqual((await sub.get(TIMEOUT)).message, "end")  # nothing repeated
        messages = [e.message for e in received]
        if self.keeps_history:
            self.assertEqual(messages, list(range(20)))
        else:
            self.assertEqual(messages, sorted(set(messages)))
            self.assertEqual(messages[-5:], list(range(15, 20)))
        self.assert_in_order(received)

    async def test_a_channel_without_events_resumes_from_its_baseline(self) -> None:
        """An event published during an outage on a channel that had delivered
        nothing yet arrives after the reconnect (with history): the backend's
        ``subscribe()`` returned a baseline for it, the hub resumes from there."""
        bus = self.bus
        async with bus.subscribe("quiet") as quiet, bus.subscribe("busy") as busy:
            await bus.apublish("busy", 0)
            self.assertEqual((await busy.get(TIMEOUT)).message, 0)
            await self.outage()
            await self.peer.apublish("quiet", "meanwhile")
            await self.peer.apublish("busy", 1)
            await self.reconnected()
            await bus.apublish("quiet", "after")
            await bus.apublish("busy", 2)
            got: dict[str, list[object]] = {}
            for channel, sub, last in (("quiet", quiet, "after"), ("busy", busy, 2)):
                messages = got[channel] = []
                while not messages or messages[-1] != last:
                    messages.append((await sub.get(TIMEOUT)).message)
            self.assertEqual(quiet.pending + busy.pending, 0)
        if self.keeps_history:
            self.assertEqual(got, {"quiet": ["meanwhile", "after"], "busy": [1, 2]})
        else:
            self.assertIn(got["quiet"], (["meanwhile", "after"], ["after"]))
            self.assertIn(got["busy"], ([1, 2], [2]))

    async def test_close_wakes_a_waiting_receive(self) -> None:
        backend = await self.connected_backend()
        for subscribed in (False, True):
            with self.subTest(subscribed=subscribed):
                receiving = asyncio.ensure_future(backend.receive())
                if subscribed:
                    await asyncio.wait_for(backend.subscribe({"woken": None}), TIMEOUT)
                await asyncio.sleep(0.1)
                self.assertFalse(receiving.done(), "receive() returned with nothing published")
                await backend.close()
                with self.assertRaises(backend.connection_errors):
                    await asyncio.wait_for(receiving, TIMEOUT)
                await asyncio.wait_for(backend.connect(), TIMEOUT)

    async def test_a_broken_backend_closes_and_connects_again(self) -> None:
        """What the hub does after a connection error: ``close()`` (which must not
        raise for broken connections), ``connect()``, ``subscribe()`` again."""
        backend = await self.connected_backend()
        await asyncio.wait_for(backend.subscribe({"healed": None}), TIMEOUT)
        await self.break_connection()
        await asyncio.wait_for(backend.close(), TIMEOUT)
        await asyncio.wait_for(backend.connect(), TIMEOUT)
        await asyncio.wait_for(backend.subscribe({"healed": None}), TIMEOUT)
        event_id = await asyncio.wait_for(backend.publish("healed", b"back"), TIMEOUT)
        self.assertEqual(
            await self.receive_raw(backend, 1), [RawEvent("healed", b"back", event_id)]
        )

    async def test_subscribe_returns_baselines_and_payloads_arrive_unchanged(self) -> None:
        backend = await self.connected_backend()
        before = await asyncio.wait_for(backend.publish("raw.old", b"before"), TIMEOUT)
        baselines = await asyncio.wait_for(
            backend.subscribe({"raw.old": None, "raw.new": None}), TIMEOUT
        )
        if self.keeps_history:
            # One per channel given None: where it started.
            self.assertEqual(set(baselines), {"raw.old", "raw.new"})
        else:
            self.assertEqual(dict(baselines), {})
        sent = []
        for i, payload in enumerate(PAYLOADS):
            channel = ("raw.old", "raw.new")[i % 2]
            event_id = await asyncio.wait_for(backend.publish(channel, payload), TIMEOUT)
            self.assertEqual(event_id is not None, self.keeps_history)
            sent.append(RawEvent(channel, payload, event_id))
        received = await self.receive_raw(backend, len(sent))
        for channel in ("raw.old", "raw.new"):  # in order per channel
            mine = [event for event in received if event.channel == channel]
            self.assertEqual(mine, [event for event in sent if event.channel == channel])
        if self.keeps_history:
            # A baseline sorts after what was there and before what came next.
            order = backend.id_order
            self.assertLessEqual(order(before or ""), order(baselines["raw.old"]))
            self.assertLess(order(baselines["raw.old"]), order(sent[0].id or ""))
            self.assertLess(order(baselines["raw.new"]), order(sent[1].id or ""))
