"""`LoopLayer`: the channel layer's state on one event loop.

It holds that loop's channel queues (`Inbox`), group memberships and broadcast
subscriptions (`Sink`): one subscription per group however many local channels
joined it, with the fan-out to their queues done synchronously in the hub's
reader (no task or queue per member); and the `Feed` of each normal channel
received on here, which takes messages from its work queue in the engine. A
housekeeping timer expires messages and memberships and releases channels that
went idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from contextlib import suppress
from typing import Any, Protocol

from channels.exceptions import ChannelFull

from ..events import Event
from ..front import Broadcast
from .codec import Codec
from .expiring import Expiring
from .feed import Feed
from .housekeeping import sweep
from .inbox import Inbox, Item, Message
from .names import PROCESS_TOPIC, QUEUE_TOPIC, client_of
from .sink import Handler, Sink

logger = logging.getLogger("django_broadcaster.layers")

#: Each receive() returns its own copy of the message (a plain dict): a consumer
#: changing its message does not change another's.
copy = dict.copy


class LayerClosed(RuntimeError):
    """Raised in a pending ``receive()`` when the layer is closed under it."""


class Owner(Protocol):
    """What a `LoopLayer` asks of its layer: settings, and the homes of
    process-specific channels (see `layers.homes`)."""

    expiry: float
    group_expiry: float

    def get_capacity(self, channel: str) -> int: ...

    def home(self, channel: str, state: LoopLayer) -> LoopLayer:
        """The state holding process-specific ``channel``; ``state`` if it adopted it."""

    def park(self, channel: str, messages: Iterable[tuple[float, Message]]) -> None:
        """Keep the messages of a channel of a closing state for the next home."""


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class LoopLayer:
    """The layer's state on one event loop. Touched only from that loop
    (`status` excepted), for one `Broadcast`."""

    def __init__(
        self,
        limits: Owner,
        front: Broadcast,
        codec: Codec,
        loop: asyncio.AbstractEventLoop,
        client: str,
    ) -> None:
        self.limits = limits
        self.front = front
        self.codec = codec
        self.loop = loop
        #: The layer's ``<client>`` in this process (the same on every loop).
        self.client = client
        self.process_topic = PROCESS_TOPIC + self.client
        self.inboxes: dict[str, Inbox] = {}
        self.groups: dict[str, dict[Inbox, float]] = {}
        self.sinks: dict[str, Sink] = {}
        #: The feeds of the normal channels received on here, by channel name.
        self.feeds: dict[str, Feed] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.expiring = Expiring(front, limits.expiry, loop, self.spawn)
        self.timer: asyncio.TimerHandle | None = None
        self.next_group_scan = 0.0
        self.wants_process_topic = False
        self.stale = False
        self.closed = False
        self.dropped_full = 0
        self.expired = 0

    # -- subscriptions ---------------------------------------------------------

    def handler_for(self, topic: str) -> Handler:
        """What handles the events of broadcast channel ``topic``."""
        if topic == self.process_topic:
            return self.on_process_event
        if topic.startswith(QUEUE_TOPIC):
            return self.on_queue_event
        return self.on_group_event

    def open_sink(self, topic: str) -> Sink:
        """The sink of ``topic``, started (not awaited) if there was none."""
        sink = self.sinks.get(topic)
        if sink is None:
            sink = self.sinks[topic] = Sink(
                self.front.hubs, topic, self.handler_for(topic), self.sink_ended
            )
            sink.ready = self.loop.create_task(sink.open())
            sink.ready.add_done_callback(_retrieve)
        return sink

    async def subscribe(self, topic: str) -> None:
        """Subscribe to ``topic`` unless already done; return once the backend confirmed."""
        sink = self.open_sink(topic)
        assert sink.ready is not None
        try:
            await asyncio.shield(sink.ready)
        except BaseException:
            if sink.ready.done() and self.sinks.get(topic) is sink:
                del self.sinks[topic]
            raise

    async def unsubscribe(self, topic: str) -> None:
        """Stop subscribing to ``topic``, waiting for it."""
        sink = self.sinks.pop(topic, None)
        if sink is not None:
            await sink.close()

    def unsubscribe_soon(self, topic: str) -> None:
        """Stop subscribing to ``topic`` in the background."""
        sink = self.sinks.pop(topic, None)
        if sink is not None:
            self.spawn(sink.close())

    def sink_ended(self, sink: Sink) -> None:
        """The hub closed (``Broadcast.aclose()``, say): re-subscribe on the next call."""
        if self.sinks.get(sink.topic) is sink:
            del self.sinks[sink.topic]
            self.stale = True

    def resync(self) -> None:
        """Subscribe again to everything wanted here (after `sink_ended`)."""
        self.stale = False
        wanted = set(self.groups)
        wanted.update(QUEUE_TOPIC + name for name in self.feeds)
        if self.wants_process_topic:
            wanted.add(self.process_topic)
        for topic in wanted:
            self.open_sink(topic)

    async def publish(self, topic: str, value: object) -> None:
        """Publish ``value`` on broadcast channel ``topic`` through this loop's hub:
        the layer's own channels are reserved names, which the public API refuses."""
        await self.front.hubs.current().publish(topic, self.codec.encode(value))
        self.expiring.published(topic)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; `close` waits for it."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_retrieve)

    # -- incoming events (called synchronously by the hub's reader) -----------

    def on_group_event(self, group: str, event: Event) -> None:
        """Queue a group message on every member channel here."""
        members = self.groups.get(group)
        if not members:
            return
        message = self.codec.decode(event)
        if message is None:
            return
        if not isinstance(message, dict):
            logger.warning(
                "skipped a %s published on group %r: channel layer messages are dicts",
                type(message).__name__,
                group,
            )
            return
        now = time.monotonic()
        item = (now + self.limits.expiry, message)  # one for every member
        full = 0
        for inbox in members:
            if not inbox.put(item, now):
                full += 1
        if full:
            self.dropped_full += full
            logger.info("%d of %d channels over capacity in group %s", full, len(members), group)

    def on_process_event(self, topic: str, event: Event) -> None:
        """Apply an envelope another loop or process sent to a channel of ours."""
        envelope = self.codec.decode(event)
        if not isinstance(envelope, dict):
            return
        name, op, group = envelope.get("to"), envelope.get("op"), envelope.get("group")
        if not (isinstance(name, str) and "!" in name and client_of(name) == self.client):
            return
        if self.limits.home(name, self) is not self:
            return  # another loop of this process holds it and gets its own copy
        if op == "send":
            self.deliver(self.open_inbox(name, own=True), envelope.get("message"))
        elif op == "group_add" and isinstance(group, str):
            self.spawn(self.join(group, self.open_inbox(name, own=True)))
        elif op == "group_discard" and isinstance(group, str) and name in self.inboxes:
            self.spawn(self.leave(group, self.inboxes[name]))

    def on_queue_event(self, topic: str, event: Event) -> None:
        """A normal channel's work queue got a message: its feed looks."""
        feed = self.feeds.get(topic[len(QUEUE_TOPIC) :])
        if feed is not None:
            feed.poke()

    def deliver(self, inbox: Inbox, message: object) -> bool:
        """Queue an incoming ``message``; ``False`` (counted, logged) when dropped."""
        if not isinstance(message, dict):
            return False
        now = time.monotonic()
        if inbox.put((now + self.limits.expiry, message), now):
            return True
        self.dropped_full += 1
        logger.info("channel %s is over capacity; a message was dropped", inbox.name)
        return False

    # -- channels ----------------------------------------------------------------

    def open_inbox(self, name: str, *, own: bool) -> Inbox:
        """The inbox of channel ``name``, made if needed."""
        inbox = self.inboxes.get(name)
        if inbox is None:
            now = time.monotonic()
            inbox = self.inboxes[name] = Inbox(name, self.limits.get_capacity(name), now, own)
            self.arm()
        return inbox

    def send_local(self, inbox: Inbox, message: Message) -> None:
        """Queue a message sent from this loop; `ChannelFull` when it cannot be."""
        now = time.monotonic()
        if not inbox.put((now + self.limits.expiry, message), now):
            raise ChannelFull(inbox.name)

    async def receive(self, inbox: Inbox) -> Message:
        """The next message of ``inbox``, waiting for one."""
        inbox.receivers += 1
        now = 0.0  # when a queued message was taken
        try:
            while True:
                queue = inbox.queue
                if queue:
                    now = time.monotonic()
                    if queue[0][0] <= now:
                        self.expired += inbox.purge(now)
                    if queue:
                        message = queue.popleft()[1]
                        if inbox.waiters:
                            self.hand_on(inbox)
                        return copy(message)
                now = 0.0
                waiter: asyncio.Future[Item | None] = self.loop.create_future()
                inbox.waiters.append(waiter)
                inbox.abandoned = False
                if inbox.claimed:
                    self.feed_of(inbox, Feed.start)
                try:
                    item = await waiter
                except asyncio.CancelledError:
                    with suppress(ValueError):
                        inbox.waiters.remove(waiter)
                    if waiter.done() and not waiter.cancelled():
                        handed = waiter.result()  # we were woken: hand it on
                        if handed is None:
                            inbox.wake()
                        else:
                            inbox.hand_back(handed)
                    if not inbox.waiters:
                        inbox.abandoned = True
                    raise
                if item is not None:  # handed to us as it came
                    return copy(item[1])
        finally:
            inbox.receivers -= 1
            if not inbox.receivers:
                inbox.last_active = now or time.monotonic()
                if inbox.claimed:  # what was fetched for receivers that left goes back
                    self.feed_of(inbox, Feed.give_back_soon)

    def hand_on(self, inbox: Inbox) -> None:
        """A message was taken while other receivers wait on ``inbox``: wake the next
        for the messages left, or have the channel's feed fetch theirs."""
        if inbox.queue:
            inbox.wake()
        elif inbox.claimed:
            self.feed_of(inbox, Feed.start)

    def feed_of(self, inbox: Inbox, action: Callable[[Feed], None]) -> None:
        """``action(feed)`` on the feed of claimed ``inbox``, if it still has one."""
        feed = self.feeds.get(inbox.name)
        if feed is not None:
            action(feed)

    async def claim(self, inbox: Inbox) -> Inbox:
        """Receive ``inbox``'s normal channel here: subscribe to its work queue's
        wake-ups, then start its `Feed`."""
        await self.subscribe(QUEUE_TOPIC + inbox.name)
        inbox = self.open_inbox(inbox.name, own=False)
        if inbox.name not in self.feeds:
            self.feeds[inbox.name] = Feed(
                self.front, self.codec, inbox, self.limits.expiry, self.spawn
            )
        inbox.claimed = True
        return inbox

    def unclaim(self, inbox: Inbox) -> None:
        """Stop receiving ``inbox``'s normal channel here (in the background)."""
        inbox.claimed = False
        self.unsubscribe_soon(QUEUE_TOPIC + inbox.name)
        feed = self.feeds.pop(inbox.name, None)
        if feed is not None:
            self.spawn(feed.close())

    # -- groups ------------------------------------------------------------------

    async def join(self, group: str, inbox: Inbox) -> None:
        """Add ``inbox`` to ``group``, subscribing to the group first if needed."""
        if group not in self.groups:
            await self.subscribe(group)
            inbox = self.open_inbox(inbox.name, own=inbox.own)
        members = self.groups.setdefault(group, {})
        members[inbox] = time.monotonic()
        inbox.join(group)

    async def leave(self, group: str, inbox: Inbox) -> None:
        """Remove ``inbox`` from ``group``; release what nobody uses any more."""
        members = self.groups.get(group)
        if members is None or members.pop(inbox, None) is None:
            return
        inbox.leave(group)
        if not members:
            del self.groups[group]
            await self.unsubscribe(group)
        if not (inbox.own or inbox.claimed or inbox.groups or inbox.queue or inbox.receivers):
            self.forget(inbox)

    def forget(self, inbox: Inbox) -> None:
        """Release ``inbox``: its queue, its group memberships and its subscription."""
        if self.inboxes.get(inbox.name) is inbox:
            del self.inboxes[inbox.name]
        inbox.queue = None
        for group in inbox.groups:
            members = self.groups.get(group)
            if members is not None:
                members.pop(inbox, None)
                if not members:
                    del self.groups[group]
                    self.unsubscribe_soon(group)
        inbox.groups = ()
        if inbox.claimed:
            self.unclaim(inbox)

    # -- housekeeping ------------------------------------------------------------

    def arm(self) -> None:
        """Schedule the next `housekeeping.sweep` unless one is due."""
        if self.timer is None and not self.closed:
            tick = min(max(self.limits.expiry / 4, 0.01), 1.0)
            self.timer = self.loop.call_later(tick, sweep, self)

    async def flush(self) -> None:
        """Forget every message, membership and channel; channels with a pending
        ``receive()`` stay (empty), so their receivers keep working."""
        for members in self.groups.values():
            for inbox in members:
                inbox.groups = ()
        self.groups.clear()
        for inbox in list(self.inboxes.values()):
            inbox.queue = None
            if not inbox.receivers:
                if inbox.claimed:
                    self.unclaim(inbox)
                del self.inboxes[inbox.name]
        wanted = {QUEUE_TOPIC + name for name in self.feeds}
        if self.wants_process_topic:
            wanted.add(self.process_topic)
        for topic in [t for t in self.sinks if t not in wanted]:
            await self.unsubscribe(topic)

    def retire(self) -> None:
        """Stop serving (its `Broadcast` was replaced); release subscriptions in the
        background. Queued messages and pending ``receive()`` calls are left as they are."""
        self.closed = True
        for topic in list(self.sinks):
            self.unsubscribe_soon(topic)

    def park(self) -> None:
        """Hand the messages queued on process-specific channels here to the layer, for
        the loop that uses those channels next (this loop closes)."""
        for inbox in self.inboxes.values():
            if inbox.own and inbox.queue:
                self.limits.park(inbox.name, inbox.queue)

    async def close(self) -> None:
        """Release everything; pending ``receive()`` calls raise `LayerClosed`."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for inbox in self.inboxes.values():
            for waiter in inbox.waiters:
                if not waiter.done():
                    waiter.set_exception(LayerClosed("the channel layer was closed"))
            inbox.waiters.clear()
        self.park()
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.close()
            await feed.give_back()
        self.inboxes.clear()
        self.groups.clear()
        for topic in list(self.sinks):
            await self.unsubscribe(topic)
        await self.expiring.close(self.process_topic if self.wants_process_topic else None)
        for task in list(self.tasks):
            with suppress(Exception, asyncio.CancelledError):
                await task
