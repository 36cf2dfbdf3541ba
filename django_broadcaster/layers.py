"""`BroadcastChannelLayer`: a Django Channels channel layer on the broadcast bus.

Names map onto broadcast channels like this::

    group G                    -> broadcast channel G, carrying the message dict as is
    process-specific channel   -> "layer:p:<client>", one per layer per event loop
    normal channel N           -> "layer:c:N"

so ``group_send(G, msg)`` is ``apublish(G, msg)`` and anything published on G
reaches the group's consumers. ``:`` cannot occur in a Channels name, so the
layer's own broadcast channels never collide with a group.

Each event loop using the layer gets a `_LoopLayer` holding that loop's
channel queues (`_Inbox`), group memberships and broadcast subscriptions: one
subscription per group however many local channels joined it, with the
fan-out to their queues done synchronously in the hub's reader (no task or
queue per member). Calls made on asgiref's throwaway loops (``async_to_sync``
outside a server) run on the process's bridge loop instead, like the rest of
the broadcast API. A process-specific channel belongs to the loop whose
`new_channel` made it (its ``<client>`` part); operations on it from another
loop of the same process run on the owner's loop, from another process they
travel over the bus.

A channel whose ``receive()`` was cancelled (a consumer that went away) and is
not received on again within ``expiry`` seconds is released with its group
memberships; so is a channel that has been empty and unread for ``expiry``.
See docs/channel-layer.rst for the semantics and the channels_redis migration.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.core.exceptions import ImproperlyConfigured

from . import loops
from .events import Event
from .front import Broadcast
from .handler import broadcasts
from .hub import Hub
from .layer_checks import config_problems

__all__ = ["BroadcastChannelLayer", "ChannelFull"]

logger = logging.getLogger("django_broadcaster.layers")
T = TypeVar("T")

PROCESS_TOPIC = "layer:p:"
NORMAL_TOPIC = "layer:c:"
Message = dict[str, Any]
Handler = Callable[[str, Event], None]


class LayerClosed(RuntimeError):
    """Raised in a pending ``receive()`` when the layer is closed under it."""


def _client_of(channel: str) -> str:
    """The ``<client>`` of a process-specific name ``<prefix>.<client>!<token>``."""
    return channel.partition("!")[0].rpartition(".")[2]


class _Inbox:
    """One channel's queue on one event loop: FIFO, bounded, with per-message expiry."""

    __slots__ = (
        "abandoned",
        "capacity",
        "claimed",
        "groups",
        "last_active",
        "messages",
        "name",
        "own",
        "waiters",
    )

    def __init__(self, name: str, capacity: int, now: float, own: bool) -> None:
        self.name = name
        self.capacity = capacity
        self.messages: deque[tuple[float, Message]] = deque()
        # A list, not a deque: rarely more than one waiter, and an empty deque
        # costs 600 bytes per channel.
        self.waiters: list[asyncio.Future[None]] = []
        self.groups: set[str] = set()
        #: A process-specific channel of this loop (made by its new_channel()).
        self.own = own
        #: A normal channel received on here: subscribed to its broadcast channel.
        self.claimed = False
        #: Its last receive() was cancelled (the consumer probably went away).
        self.abandoned = False
        self.last_active = now

    @property
    def strict(self) -> bool:
        """Whether a full queue refuses messages (`ChannelFull`); otherwise it drops
        its oldest: a normal channel nobody here receives on only keeps a bounded copy."""
        return self.own or self.claimed or bool(self.groups)

    def purge(self, now: float) -> int:
        dropped = 0
        messages = self.messages
        while messages and messages[0][0] <= now:
            messages.popleft()
            dropped += 1
        return dropped

    def put(self, message: Message, deadline: float, now: float) -> bool:
        """Queue ``message``; ``False`` if the queue is full (nothing queued)."""
        if len(self.messages) >= self.capacity:
            self.purge(now)
            if len(self.messages) >= self.capacity:
                if self.strict:
                    return False
                self.messages.popleft()
        self.messages.append((deadline, message))
        self.wake()
        return True

    def wake(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return


class _Sink:
    """A hub subscriber that hands each event to the layer as it is dispatched,
    instead of queueing it: the layer fans out into its own bounded queues."""

    __slots__ = ("channels", "handler", "hub", "ready", "state", "topic")

    def __init__(self, state: _LoopLayer, topic: str, handler: Handler) -> None:
        self.state = state
        self.topic = topic
        self.channels = (topic,)
        self.handler = handler
        self.hub: Hub | None = None
        self.ready: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Subscribe through this loop's hub; returns once the backend confirmed."""
        hub = self.state.front.hubs.current()
        self.hub = hub
        await hub.attach(self, self.channels)

    def deliver(self, event: Event) -> bool:
        try:
            self.handler(self.topic, event)
        except Exception:
            logger.exception("channel layer failed to deliver an event of %r", self.topic)
        return True

    def hub_closed(self) -> None:
        self.hub = None
        self.state.sink_ended(self)

    async def close(self) -> None:
        ready = self.ready
        if ready is not None and not ready.done():
            ready.cancel()
        if ready is not None:
            with suppress(Exception, asyncio.CancelledError):
                await ready
        hub, self.hub = self.hub, None
        if hub is not None:
            await hub.release(self)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _LoopLayer:
    """The layer's state on one event loop. Touched only from that loop."""

    def __init__(self, layer: BroadcastChannelLayer, front: Broadcast) -> None:
        self.layer = layer
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.client = secrets.token_hex(6)
        self.process_topic = PROCESS_TOPIC + self.client
        self.serializer = front.serializer
        self.inboxes: dict[str, _Inbox] = {}
        self.groups: dict[str, dict[_Inbox, float]] = {}
        self.sinks: dict[str, _Sink] = {}
        #: Inboxes without a pending receive(): the only ones the sweep looks at.
        self.idle: set[_Inbox] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.next_group_scan = 0.0
        self.wants_process_topic = False
        self.stale = False
        self.closed = False
        self.dropped_full = 0
        self.expired = 0

    # -- subscriptions ---------------------------------------------------------

    def handler_for(self, topic: str) -> Handler:
        if topic == self.process_topic:
            return self.on_process_event
        if topic.startswith(NORMAL_TOPIC):
            return self.on_normal_event
        return self.on_group_event

    def open_sink(self, topic: str) -> _Sink:
        sink = self.sinks.get(topic)
        if sink is None:
            sink = self.sinks[topic] = _Sink(self, topic, self.handler_for(topic))
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
        sink = self.sinks.pop(topic, None)
        if sink is not None:
            await sink.close()

    def unsubscribe_soon(self, topic: str) -> None:
        sink = self.sinks.pop(topic, None)
        if sink is not None:
            self.spawn(sink.close())

    def sink_ended(self, sink: _Sink) -> None:
        """The hub closed (``Broadcast.aclose()``, say): re-subscribe on the next call."""
        if self.sinks.get(sink.topic) is sink:
            del self.sinks[sink.topic]
            self.stale = True

    def resync(self) -> None:
        self.stale = False
        wanted = set(self.groups)
        wanted.update(NORMAL_TOPIC + inbox.name for inbox in self.inboxes.values() if inbox.claimed)
        if self.wants_process_topic:
            wanted.add(self.process_topic)
        for topic in wanted:
            self.open_sink(topic)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_retrieve)

    # -- incoming events (called synchronously by the hub's reader) -----------

    def on_group_event(self, group: str, event: Event) -> None:
        members = self.groups.get(group)
        if not members:
            return
        message = event.message
        if not isinstance(message, dict):
            logger.warning(
                "skipped a %s published on group %r: channel layer messages are dicts",
                type(message).__name__,
                group,
            )
            return
        now = time.monotonic()
        deadline = now + self.layer.expiry
        full = 0
        for inbox in members:
            if not inbox.put(message, deadline, now):
                full += 1
        if full:
            self.dropped_full += full
            logger.info("%d of %d channels over capacity in group %s", full, len(members), group)

    def on_process_event(self, topic: str, event: Event) -> None:
        envelope = event.message
        if not isinstance(envelope, dict):
            return
        name, op, group = envelope.get("to"), envelope.get("op"), envelope.get("group")
        if not (isinstance(name, str) and "!" in name and _client_of(name) == self.client):
            return
        if op == "send":
            self.deliver(self.open_inbox(name, own=True), envelope.get("message"))
        elif op == "group_add" and isinstance(group, str):
            self.spawn(self.join(group, self.open_inbox(name, own=True)))
        elif op == "group_discard" and isinstance(group, str) and name in self.inboxes:
            self.spawn(self.leave(group, self.inboxes[name]))

    def on_normal_event(self, topic: str, event: Event) -> None:
        envelope = event.message
        if not isinstance(envelope, dict) or envelope.get("from") == self.client:
            return  # ours: queued here when it was sent
        inbox = self.inboxes.get(topic[len(NORMAL_TOPIC) :])
        if inbox is not None:
            self.deliver(inbox, envelope.get("message"))

    def deliver(self, inbox: _Inbox, message: object) -> bool:
        if not isinstance(message, dict):
            return False
        now = time.monotonic()
        if inbox.put(message, now + self.layer.expiry, now):
            return True
        self.dropped_full += 1
        logger.info("channel %s is over capacity; a message was dropped", inbox.name)
        return False

    # -- channels ----------------------------------------------------------------

    def copy(self, message: Message) -> Message:
        """``message`` through the bus's serializer: the value a remote receiver would
        get, and an error now for what could not cross the bus."""
        try:
            payload = self.serializer.dumps(message)
        except TypeError as exc:
            raise TypeError(
                f"the message cannot be encoded as {self.serializer.name} ({exc}); nothing was sent"
            ) from exc
        copied: Message = self.serializer.loads(payload)
        return copied

    def open_inbox(self, name: str, *, own: bool) -> _Inbox:
        inbox = self.inboxes.get(name)
        if inbox is None:
            now = time.monotonic()
            inbox = self.inboxes[name] = _Inbox(name, self.layer.get_capacity(name), now, own)
            self.idle.add(inbox)
            self.arm()
        return inbox

    def send_local(self, inbox: _Inbox, message: Message) -> None:
        now = time.monotonic()
        if not inbox.put(message, now + self.layer.expiry, now):
            raise ChannelFull(inbox.name)

    async def receive(self, inbox: _Inbox) -> Message:
        loop = self.loop
        try:
            while True:
                now = time.monotonic()
                self.expired += inbox.purge(now)
                if inbox.messages:
                    message = inbox.messages.popleft()[1]
                    if inbox.messages and inbox.waiters:
                        inbox.wake()
                    return dict(message)
                waiter: asyncio.Future[None] = loop.create_future()
                inbox.waiters.append(waiter)
                inbox.abandoned = False
                self.idle.discard(inbox)
                try:
                    await waiter
                except asyncio.CancelledError:
                    with suppress(ValueError):
                        inbox.waiters.remove(waiter)
                    if waiter.done() and not waiter.cancelled():
                        inbox.wake()  # we were handed a message: hand it on
                    if not inbox.waiters:
                        inbox.abandoned = True
                    raise
        finally:
            if not inbox.waiters:
                inbox.last_active = time.monotonic()
                if self.inboxes.get(inbox.name) is inbox:
                    self.idle.add(inbox)

    async def claim(self, inbox: _Inbox) -> _Inbox:
        """Receive ``inbox``'s normal channel here: subscribe to its broadcast channel."""
        await self.subscribe(NORMAL_TOPIC + inbox.name)
        inbox = self.open_inbox(inbox.name, own=False)
        inbox.claimed = True
        return inbox

    # -- groups ------------------------------------------------------------------

    async def join(self, group: str, inbox: _Inbox) -> None:
        if group not in self.groups:
            await self.subscribe(group)
            inbox = self.open_inbox(inbox.name, own=inbox.own)
        members = self.groups.setdefault(group, {})
        members[inbox] = time.monotonic()
        inbox.groups.add(group)

    async def leave(self, group: str, inbox: _Inbox) -> None:
        members = self.groups.get(group)
        if members is None or members.pop(inbox, None) is None:
            return
        inbox.groups.discard(group)
        if not members:
            del self.groups[group]
            await self.unsubscribe(group)
        if not (inbox.own or inbox.claimed or inbox.groups or inbox.messages or inbox.waiters):
            self.forget(inbox)

    def forget(self, inbox: _Inbox) -> None:
        """Release ``inbox``: its queue, its group memberships and its subscription."""
        if self.inboxes.get(inbox.name) is inbox:
            del self.inboxes[inbox.name]
        self.idle.discard(inbox)
        inbox.messages.clear()
        for group in inbox.groups:
            members = self.groups.get(group)
            if members is not None:
                members.pop(inbox, None)
                if not members:
                    del self.groups[group]
                    self.unsubscribe_soon(group)
        inbox.groups.clear()
        if inbox.claimed:
            inbox.claimed = False
            self.unsubscribe_soon(NORMAL_TOPIC + inbox.name)

    # -- housekeeping ------------------------------------------------------------

    def arm(self) -> None:
        if self.timer is None and not self.closed:
            tick = min(max(self.layer.expiry / 4, 0.01), 1.0)
            self.timer = self.loop.call_later(tick, self.sweep)

    def sweep(self) -> None:
        """Expire messages and memberships; release channels that went idle."""
        self.timer = None
        if self.closed:
            return
        now = time.monotonic()
        expiry = self.layer.expiry
        for inbox in list(self.idle):
            if inbox.waiters:
                self.idle.discard(inbox)
                continue
            self.expired += inbox.purge(now)
            if now - inbox.last_active < expiry:
                continue
            if inbox.abandoned or not (inbox.groups or inbox.messages):
                self.forget(inbox)
            elif inbox.claimed:
                inbox.claimed = False
                self.unsubscribe_soon(NORMAL_TOPIC + inbox.name)
        if now >= self.next_group_scan:
            group_expiry = self.layer.group_expiry
            self.next_group_scan = now + min(max(group_expiry / 4, 0.01), 60.0)
            for group, members in list(self.groups.items()):
                for inbox, joined in list(members.items()):
                    if now - joined >= group_expiry:
                        del members[inbox]
                        inbox.groups.discard(group)
                if not members:
                    del self.groups[group]
                    self.unsubscribe_soon(group)
        if self.inboxes:
            self.arm()

    async def flush(self) -> None:
        """Forget every message, membership and channel; channels with a pending
        ``receive()`` stay (empty), so their receivers keep working."""
        for members in self.groups.values():
            for inbox in members:
                inbox.groups.clear()
        self.groups.clear()
        for inbox in list(self.inboxes.values()):
            inbox.messages.clear()
            if not inbox.waiters:
                inbox.claimed = False
                del self.inboxes[inbox.name]
                self.idle.discard(inbox)
        wanted = {NORMAL_TOPIC + i.name for i in self.inboxes.values() if i.claimed}
        if self.wants_process_topic:
            wanted.add(self.process_topic)
        for topic in [t for t in self.sinks if t not in wanted]:
            await self.unsubscribe(topic)

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
        self.inboxes.clear()
        self.idle.clear()
        self.groups.clear()
        for topic in list(self.sinks):
            await self.unsubscribe(topic)
        for task in list(self.tasks):
            with suppress(Exception, asyncio.CancelledError):
                await task

    STATUS_KEYS = (
        "channels",
        "groups",
        "memberships",
        "subscriptions",
        "queued",
        "dropped_full",
        "expired",
    )

    def status(self) -> dict[str, int]:
        # May run on another thread: copy before iterating.
        inboxes, groups = list(self.inboxes.values()), list(self.groups.values())
        return {
            "channels": len(inboxes),
            "groups": len(groups),
            "memberships": sum(len(members) for members in groups),
            # Only subscriptions the backend has confirmed.
            "subscriptions": sum(
                1
                for sink in list(self.sinks.values())
                if sink.ready is not None and sink.ready.done() and not sink.ready.cancelled()
            ),
            "queued": sum(len(inbox.messages) for inbox in inboxes),
            "dropped_full": self.dropped_full,
            "expired": self.expired,
        }


class BroadcastChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels layer whose groups are broadcast channels of ``BROADCAST_BACKENDS[using]``.

    CONFIG: ``using`` (alias, default ``"default"``; a `Broadcast` also works when
    built in code), ``capacity``, ``channel_capacity``, ``expiry``, ``group_expiry``
    as in channels_redis. ``hosts``, ``prefix`` and ``serializer_format`` are
    ignored with a warning; ``symmetric_encryption_keys`` is refused.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        using: str | Broadcast = "default",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        **channels_redis_options: Any,
    ) -> None:
        config = {
            "using": using,
            "expiry": expiry,
            "group_expiry": group_expiry,
            "capacity": capacity,
            "channel_capacity": channel_capacity,
            **channels_redis_options,
        }
        problems = config_problems(config, check_alias=isinstance(using, str))
        errors = [p.message + (f" ({p.hint})" if p.hint else "") for p in problems if p.error]
        if errors:
            raise ImproperlyConfigured(f"BroadcastChannelLayer: {'; '.join(errors)}")
        for problem in problems:
            warnings.warn(
                f"BroadcastChannelLayer: {problem.message}: {problem.hint}",
                RuntimeWarning,
                stacklevel=2,
            )
        super().__init__(expiry=expiry, capacity=capacity)
        self.group_expiry = group_expiry
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.using = using
        self._states: dict[asyncio.AbstractEventLoop, _LoopLayer] = {}
        self._clients: dict[str, _LoopLayer] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        alias = self.using.alias if isinstance(self.using, Broadcast) else self.using
        return f"<{type(self).__name__} using={alias!r}>"

    # -- per-loop state ----------------------------------------------------------

    def _front(self) -> Broadcast:
        return self.using if isinstance(self.using, Broadcast) else broadcasts[self.using]

    def _state(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        front = self._front()
        state = self._states.get(loop)
        if state is not None and state.front is front and not state.closed:
            if state.stale:
                state.resync()
            return state
        with self._lock:
            for stale_loop in [lp for lp in self._states if lp.is_closed()]:
                self._clients.pop(self._states.pop(stale_loop).client, None)
            old = self._states.get(loop)
            if old is not None:  # BROADCAST_BACKENDS changed, or the layer was closed
                old.closed = True
                self._clients.pop(old.client, None)
                for topic in list(old.sinks):
                    old.unsubscribe_soon(topic)
            state = self._states[loop] = _LoopLayer(self, front)
            self._clients[state.client] = state
        return state

    def _owner(self, channel: str) -> _LoopLayer | None:
        """The live state on another loop of this process that owns ``channel``."""
        state = self._clients.get(_client_of(channel))
        if state is None or state.closed or not state.loop.is_running():
            return None
        return state

    # -- channel layer API -------------------------------------------------------

    def _check_message(self, message: object) -> None:
        if not isinstance(message, dict):
            raise TypeError(f"channel layer messages are dicts, not {type(message).__name__}")

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new process-specific channel name: ``<prefix>.<client>!<random>``."""
        if loops.on_throwaway_loop():
            return await loops.run_on(loops.bridge_loop(), self.new_channel(prefix))
        state = self._state()
        separator = "" if prefix.endswith(".") else "."
        name = f"{prefix}{separator}{state.client}!{secrets.token_hex(8)}"
        self.require_valid_channel_name(name)
        state.wants_process_topic = True
        await state.subscribe(state.process_topic)
        state.open_inbox(name, own=True)
        return name

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``; `ChannelFull` if its queue here is full."""
        self._check_message(message)
        self.require_valid_channel_name(channel)
        if loops.on_throwaway_loop():
            return await loops.run_on(loops.bridge_loop(), self.send(channel, message))
        state = self._state()
        if "!" in channel:
            client = _client_of(channel)
            if client == state.client:
                state.send_local(state.open_inbox(channel, own=True), state.copy(message))
                return None
            owner = self._owner(channel)
            if owner is not None:
                return await loops.run_on(owner.loop, self.send(channel, message))
            envelope = {"op": "send", "to": channel, "message": message}
            await state.front.apublish(PROCESS_TOPIC + client, envelope)
            return None
        copied = state.copy(message)
        inbox = state.open_inbox(channel, own=False)
        state.send_local(inbox, copied)  # drops the oldest instead when nobody receives here
        await state.front.apublish(
            NORMAL_TOPIC + channel, {"from": state.client, "message": message}
        )
        return None

    async def receive(self, channel: str) -> Message:
        """The next message on ``channel``, waiting for one."""
        self.require_valid_channel_name(channel)
        if loops.on_throwaway_loop():
            return await loops.run_on(loops.bridge_loop(), self.receive(channel))
        state = self._state()
        if "!" in channel:
            if _client_of(channel) != state.client:
                owner = self._owner(channel)
                if owner is None:
                    raise ValueError(
                        f"cannot receive on {channel!r}: a process-specific channel is "
                        "received by the process (and event loop) whose new_channel() made it"
                    )
                return await loops.run_on(owner.loop, self.receive(channel))
            inbox = state.open_inbox(channel, own=True)
        else:
            inbox = state.open_inbox(channel, own=False)
            if not inbox.claimed:
                inbox = await state.claim(inbox)
        return await state.receive(inbox)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``; returns once the group's subscription is live."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._group_op("group_add", group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (nothing happens if it is not in it)."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        await self._group_op("group_discard", group, channel)

    async def _group_op(self, op: str, group: str, channel: str) -> None:
        if loops.on_throwaway_loop():
            return await loops.run_on(loops.bridge_loop(), self._group_op(op, group, channel))
        state = self._state()
        own = "!" in channel
        if own and _client_of(channel) != state.client:
            owner = self._owner(channel)
            if owner is not None:
                return await loops.run_on(owner.loop, self._group_op(op, group, channel))
            # Its process applies it when the envelope arrives.
            envelope = {"op": op, "group": group, "to": channel}
            await state.front.apublish(PROCESS_TOPIC + _client_of(channel), envelope)
            return None
        if op == "group_add":
            await state.join(group, state.open_inbox(channel, own=own))
        else:
            inbox = state.inboxes.get(channel)
            if inbox is not None:
                await state.leave(group, inbox)
        return None

    async def group_send(self, group: str, message: Message) -> None:
        """Publish ``message`` on broadcast channel ``group``: every member channel on
        every host gets it (a member whose queue is full misses it), and so does every
        ``broadcast.subscribe(group)``."""
        self._check_message(message)
        self.require_valid_group_name(group)
        if loops.on_throwaway_loop():
            return await loops.run_on(loops.bridge_loop(), self.group_send(group, message))
        await self._front().apublish(group, message)
        return None

    # -- flush extension and shutdown ------------------------------------------

    async def _each_state(self, action: Callable[[_LoopLayer], Coroutine[Any, Any, None]]) -> None:
        current = asyncio.get_running_loop()
        with self._lock:
            states = list(self._states.values())
        for state in states:
            if state.loop is current:
                await action(state)
            elif state.loop.is_running():
                await loops.run_on(state.loop, action(state))

    async def flush(self) -> None:
        """Drop every queued message, group membership and unused channel of this
        layer, in this process (other processes keep theirs)."""
        await self._each_state(_LoopLayer.flush)

    async def close(self) -> None:
        """Release this layer's subscriptions and state on every event loop; a pending
        ``receive()`` raises `LayerClosed`. The layer can be used again afterwards.
        The broadcast connections are shared and stay open (see ``broadcasts``)."""
        await self._each_state(_LoopLayer.close)
        with self._lock:
            for state in [s for s in self._states.values() if s.closed or s.loop.is_closed()]:
                if self._states.get(state.loop) is state:
                    del self._states[state.loop]
                self._clients.pop(state.client, None)

    async def close_pools(self) -> None:
        """`close`, under the name channels_redis users call."""
        await self.close()

    def status(self) -> dict[str, int]:
        """Counters summed over event loops: channels, groups, memberships, subscriptions,
        queued messages, messages dropped on full queues and expired messages."""
        with self._lock:
            states = list(self._states.values())
        total = {"loops": len(states), **dict.fromkeys(_LoopLayer.STATUS_KEYS, 0)}
        for state in states:
            for key, value in state.status().items():
                total[key] = total.get(key, 0) + value
        return total
