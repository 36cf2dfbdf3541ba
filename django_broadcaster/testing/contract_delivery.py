"""Conformance: delivery through the public API — round trips, encodings, shared
upstream subscriptions, ordering, bounded queues, sync callers, closing."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import threading
import uuid

from asgiref.sync import async_to_sync
from django.utils.functional import lazy

from ..events import Event
from ..exceptions import InvalidChannelName, SubscriberLagged
from .contract_case import TIMEOUT, ContractCase

#: How a task that left a subscription block ended, by how it left.
ENDINGS = {
    "normally": type(None),
    "exception": RuntimeError,
    "cancellation": asyncio.CancelledError,
}


class DeliveryContract(ContractCase):
    async def test_round_trip(self) -> None:
        async with self.bus.subscribe("chat.lobby") as sub:
            event_id = await self.bus.apublish("chat.lobby", {"type": "chat", "text": "hi"})
            event = await sub.get(TIMEOUT)
        self.assertEqual(event, Event("chat.lobby", {"type": "chat", "text": "hi"}, event_id))
        # Ids come with history, and only with it.
        self.assertEqual(event_id is not None, self.keeps_history)

    async def test_json_values_use_djangos_encoder(self) -> None:
        when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        ident = uuid.UUID(int=7)
        lazy_text = lazy(lambda: "lazy", str)()
        async with self.bus.subscribe("values") as sub:
            await self.bus.apublish(
                "values", [when, decimal.Decimal("1.10"), ident, lazy_text, None, "ünï ✓"]
            )
            event = await sub.get(TIMEOUT)
        self.assertEqual(
            event.message, ["2026-01-02T03:04:05Z", "1.10", str(ident), "lazy", None, "ünï ✓"]
        )

    async def test_many_local_subscribers_share_one_upstream_subscription(self) -> None:
        subs = [self.bus.subscribe("crowd") for _ in range(200)]
        await asyncio.gather(*(s.__aenter__() for s in subs))
        try:
            stats = self.bus.stats()
            self.assertEqual((stats["subscribers"], stats["upstream_channels"]), (200, 1))
            await self.bus.apublish("crowd", 1)
            await self.bus.apublish("crowd", 2)
            for sub in subs:
                self.assertEqual([e.message for e in await self.drain(sub, 2)], [1, 2])
        finally:
            await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
        stats = self.bus.stats()
        self.assertEqual((stats["subscribers"], stats["upstream_channels"]), (0, 0))

    async def test_leaving_the_block_releases_the_upstream_subscription(self) -> None:
        for how in ("normally", "exception", "cancellation"):
            with self.subTest(how=how):
                entered = asyncio.Event()

                async def listener(how: str = how, entered: asyncio.Event = entered) -> None:
                    async with self.bus.subscribe(f"leave.{how}") as sub:
                        entered.set()
                        if how == "exception":
                            raise RuntimeError("boom")
                        if how == "cancellation":
                            await sub.get()

                task = asyncio.ensure_future(listener())
                await asyncio.wait_for(entered.wait(), TIMEOUT)
                if how == "cancellation":
                    task.cancel()
                (outcome,) = await asyncio.gather(task, return_exceptions=True)
                self.assertIsInstance(outcome, ENDINGS[how])
                stats = self.bus.stats()
                self.assertEqual((stats["subscribers"], stats["upstream_channels"]), (0, 0))
        # And the channel can be subscribed again.
        async with self.bus.subscribe("leave.normally") as sub:
            await self.bus.apublish("leave.normally", "again")
            self.assertEqual((await sub.get(TIMEOUT)).message, "again")

    async def test_concurrent_subscribe_and_unsubscribe_of_one_channel(self) -> None:
        first, second = self.bus.subscribe("race"), self.bus.subscribe("race")
        await asyncio.gather(first.__aenter__(), second.__aenter__())
        try:
            await self.bus.apublish("race", "both")
            self.assertEqual((await first.get(TIMEOUT)).message, "both")
            self.assertEqual((await second.get(TIMEOUT)).message, "both")
            # One leaves while a third joins: the channel must stay subscribed.
            third = self.bus.subscribe("race")
            await asyncio.gather(second.__aexit__(None, None, None), third.__aenter__())
            await self.bus.apublish("race", "still")
            self.assertEqual((await first.get(TIMEOUT)).message, "still")
            self.assertEqual((await third.get(TIMEOUT)).message, "still")
            await third.__aexit__(None, None, None)
        finally:
            await first.__aexit__(None, None, None)
        self.assertEqual(self.bus.stats()["upstream_channels"], 0)

    async def test_churn_leaves_nothing_behind(self) -> None:
        for _ in range(50):
            subs = [self.bus.subscribe(f"churn.{i % 5}") for i in range(10)]
            await asyncio.gather(*(s.__aenter__() for s in subs))
            await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
        stats = self.bus.stats()
        self.assertEqual((stats["subscribers"], stats["upstream_channels"]), (0, 0))
        async with self.bus.subscribe("churn.0") as sub:
            await self.bus.apublish("churn.0", "alive")
            self.assertEqual((await sub.get(TIMEOUT)).message, "alive")

    async def test_several_channels_in_one_subscription(self) -> None:
        async with self.bus.subscribe("a", "b", "c") as sub:
            self.assertEqual(self.bus.stats()["upstream_channels"], 3)
            await self.bus.apublish("b", "to b")
            await self.bus.apublish("other", "nobody")
            await self.bus.apublish("a", "to a")
            await self.bus.apublish("c", "to c")
            events = await self.drain(sub, 3)
            await self.bus.apublish("a", "last")
            self.assertEqual((await sub.get(TIMEOUT)).message, "last")  # nothing else came
        self.assertEqual(
            sorted((e.channel, e.message) for e in events),
            [("a", "to a"), ("b", "to b"), ("c", "to c")],
        )

    async def test_order_is_kept_per_channel(self) -> None:
        async with self.bus.subscribe("odd", "even") as sub:
            for i in range(300):
                await self.bus.apublish("even" if i % 2 == 0 else "odd", i)
            events = await self.drain(sub, 300)
        for channel, start in (("even", 0), ("odd", 1)):
            mine = [e for e in events if e.channel == channel]
            self.assertEqual([e.message for e in mine], list(range(start, 300, 2)))
            self.assert_in_order(mine)

    async def test_concurrent_publishes_are_all_delivered(self) -> None:
        async with self.bus.subscribe("busy") as sub:
            ids = await asyncio.gather(*(self.bus.apublish("busy", i) for i in range(500)))
            events = await self.drain(sub, 500)
        # Concurrent publishes from one event loop still go out in call order.
        self.assertEqual([e.message for e in events], list(range(500)))
        self.assertEqual([e.id for e in events], ids)
        self.assert_in_order(events)

    async def test_a_full_queue_ends_the_subscriber_with_subscriber_lagged(self) -> None:
        bus = self.small  # MAX_QUEUE 5
        async with bus.subscribe("lag") as slow, bus.subscribe("lag") as fast:
            received = []
            for i in range(20):
                await bus.apublish("lag", i)
                received.append((await fast.get(TIMEOUT)).message)
            self.assertEqual(received, list(range(20)))
            self.assertEqual([e.message for e in await self.drain(slow, 5)], [0, 1, 2, 3, 4])
            with self.assertRaises(SubscriberLagged) as caught:
                await slow.get(TIMEOUT)
            self.assertEqual(slow.pending, 0)
            self.assertEqual(caught.exception.last_ids["lag"], slow.last_ids["lag"])
            self.assertEqual(bus.stats()["lagged"], 1)
            if self.keeps_history:
                # Resubscribing with since= picks up exactly where it fell behind.
                async with bus.subscribe("lag", since=caught.exception.since) as again:
                    events = await self.drain(again, 15)
                    self.assertEqual([e.message for e in events], list(range(5, 20)))

    async def test_invalid_channel_names_are_refused(self) -> None:
        for name in ["", "a" * 201, "spaces here", "ünï", "new\nline", "a/b", None, 5]:
            with self.assertRaisesRegex(InvalidChannelName, "invalid channel name"):
                await self.bus.apublish(name, "x")  # type: ignore[arg-type]
            with self.assertRaises(InvalidChannelName):
                self.bus.subscribe("ok", name)  # type: ignore[arg-type]
        self.assertEqual(self.bus.stats()["published"], 0)
        longest = "A-z_0.9:x" + "y" * 191
        async with self.bus.subscribe(longest) as sub:
            await self.bus.apublish(longest, "longest")
            self.assertEqual((await sub.get(TIMEOUT)).message, "longest")

    async def test_an_unencodable_message_raises_type_error_and_sends_nothing(self) -> None:
        async with self.bus.subscribe("enc") as sub:
            with self.assertRaisesRegex(TypeError, r"cannot publish on 'enc'.*nothing was sent"):
                await self.bus.apublish("enc", {"obj": object()})
            with self.assertRaises(TypeError):
                await asyncio.to_thread(self.bus.publish, "enc", {1, 2})
            await self.bus.apublish("enc", "after")
            self.assertEqual((await sub.get(TIMEOUT)).message, "after")
        if self.keeps_history:
            self.assertEqual([e.message for e in await self.bus.ahistory("enc")], ["after"])

    async def test_sync_publish_from_threads(self) -> None:
        def worker(n: int) -> None:
            for i in range(25):
                self.bus.publish("threads", [n, i])

        def run_threads() -> None:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        async with self.bus.subscribe("threads") as sub:
            await asyncio.to_thread(run_threads)
            events = await self.drain(sub, 200)
        for n in range(8):
            # Per publishing thread, order is kept.
            mine = [e.message[1] for e in events if e.message[0] == n]
            self.assertEqual(mine, list(range(25)))
        self.assert_in_order(events)

    async def test_async_to_sync_publish_from_a_plain_thread(self) -> None:
        def worker() -> None:
            for i in range(5):
                async_to_sync(self.bus.apublish)("a2s", i)

        async with self.bus.subscribe("a2s") as sub:
            await asyncio.to_thread(worker)
            self.assertEqual([e.message for e in await self.drain(sub, 5)], list(range(5)))

    async def test_aclose_ends_a_waiting_subscription(self) -> None:
        async with self.bus.subscribe("closing") as sub:
            waiting = asyncio.ensure_future(sub.get(TIMEOUT))
            await asyncio.sleep(0.05)
            self.assertFalse(waiting.done())
            await self.bus.aclose()
            with self.assertRaises(StopAsyncIteration):
                await asyncio.wait_for(waiting, TIMEOUT)
        # The next use connects again.
        async with self.bus.subscribe("closing") as sub:
            await self.bus.apublish("closing", "reopened")
            self.assertEqual((await sub.get(TIMEOUT)).message, "reopened")
