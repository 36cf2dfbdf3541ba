"""`BroadcastChannelLayer`: the public Channels layer, routing each call to a `LoopLayer`.

Calls made on asgiref's throwaway loops (``async_to_sync`` outside a server) run
on the process's bridge loop instead (`loops.on_lasting_loop`), like the rest of
the broadcast API. A process-specific channel belongs to this layer in this
process (its ``<client>`` part) and lives on one event loop, its home
(`Homes`): operations on it from another loop run on the home's loop or adopt
the channel; from another process they travel over the bus as envelopes on the
layer's `PROCESS_TOPIC` channel. A normal channel is a work queue in the
engine (`feed`).
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.core.exceptions import ImproperlyConfigured

from .. import loops
from ..exceptions import QueuesNotSupported
from ..front import Broadcast
from ..handler import broadcasts
from . import feed
from .checks import config_problems
from .codec import Codec
from .homes import Homes
from .inbox import Message
from .loop_state import LoopLayer
from .names import PROCESS_TOPIC, client_of

#: The counters `BroadcastChannelLayer.status` adds up over event loops.
STATUS_KEYS = (
    "channels",
    "groups",
    "memberships",
    "subscriptions",
    "queued",
    "dropped_full",
    "expired",
    "undecryptable",
)


class BroadcastChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels layer whose groups are broadcast channels of ``BROADCAST_BACKENDS[using]``.

    CONFIG: ``using`` (alias, default ``"default"``; a `Broadcast` also works when
    built in code), ``capacity``, ``channel_capacity``, ``expiry``, ``group_expiry``
    as in channels_redis; ``symmetric_encryption_keys`` (secrets, newest first)
    encrypts every message on the bus (needs the ``cryptography`` package).
    ``hosts``, ``prefix`` and ``serializer_format`` are ignored with a warning.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        using: str | Broadcast = "default",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        **channels_redis_options: Any,
    ) -> None:
        config = {
            "using": using,
            "expiry": expiry,
            "group_expiry": group_expiry,
            "capacity": capacity,
            "channel_capacity": channel_capacity,
            "symmetric_encryption_keys": symmetric_encryption_keys,
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
        # Secrets: kept out of every attribute shown by repr().
        self._secrets = tuple(symmetric_encryption_keys or ())
        self._states: loops.PerLoop[LoopLayer] = loops.PerLoop(self._new_state, LoopLayer.park)
        #: This layer's ``<client>`` in this process (from `secrets`: unique after
        #: ``random.seed()``), in every process-specific channel name it makes.
        self.client_prefix = secrets.token_hex(6)
        self._homes = Homes(self._states.values)

    def __repr__(self) -> str:
        alias = self.using.alias if isinstance(self.using, Broadcast) else self.using
        return f"<{type(self).__name__} using={alias!r}>"

    # -- per-loop state ----------------------------------------------------------

    def _new_state(self, loop: asyncio.AbstractEventLoop) -> LoopLayer:
        # An alias's `Broadcast` is replaced (the old one marked ``retired``) when
        # BROADCAST_BACKENDS changes: the state made then takes the new one.
        front = self.using if isinstance(self.using, Broadcast) else broadcasts[self.using]
        return LoopLayer(self, front, Codec(front, self._secrets), loop, self.client_prefix)

    def _state(self) -> LoopLayer:
        """The running loop's state, made anew if it was closed or its `Broadcast`
        was replaced (``BROADCAST_BACKENDS`` changed)."""
        state = self._states.get()
        if state.closed or state.front.retired:
            state.retire()
            self._states.discard(state.loop, state)
            state = self._states.get()
        elif state.stale:
            state.resync()
        return state

    def home(self, channel: str, state: LoopLayer) -> LoopLayer:
        """The state holding process-specific ``channel`` of ours: its live home, or
        ``state`` after adopting it (see `Homes`)."""
        return self._homes.of(channel, state)

    def park(self, channel: str, messages: Iterable[tuple[float, Message]]) -> None:
        """Keep the queued messages of ``channel`` of a closing state (see `Homes`)."""
        self._homes.park(channel, messages)

    async def _home_of(self, channel: str, state: LoopLayer) -> LoopLayer:
        """The home of ``channel`` of ours (see `home`); when ``state`` adopted it,
        once it also receives the layer's remote messages on this loop."""
        home = self.home(channel, state)
        if home is state and not state.wants_process_topic:
            state.wants_process_topic = True
            await state.subscribe(state.process_topic)
        return home

    # -- channel layer API -------------------------------------------------------

    def _check_message(self, message: object) -> None:
        if not isinstance(message, dict):
            raise TypeError(f"channel layer messages are dicts, not {type(message).__name__}")

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new process-specific channel name: ``<prefix>.<client>!<random>``."""
        return await loops.on_lasting_loop(self._new_channel(prefix))

    async def _new_channel(self, prefix: str) -> str:
        state = self._state()
        separator = "" if prefix.endswith(".") else "."
        name = f"{prefix}{separator}{state.client}!{secrets.token_hex(8)}"
        self.require_valid_channel_name(name)
        state.wants_process_topic = True
        await state.subscribe(state.process_topic)
        state.open_inbox(name, own=True)
        return name

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``; `ChannelFull` if its queue is full (a normal
        channel's queue is shared by every process; a process-specific channel's is
        checked where it lives: in this process only)."""
        self._check_message(message)
        self.require_valid_channel_name(channel)
        await loops.on_lasting_loop(self._send(channel, message))

    async def _send(self, channel: str, message: Message) -> None:
        state = self._state()
        if "!" in channel:
            client = client_of(channel)
            if client == state.client:
                if channel not in state.inboxes:  # the usual case skips the lookup
                    home = await self._home_of(channel, state)
                    if home is not state:
                        return await loops.run_on(home.loop, self._send(channel, message))
                state.send_local(state.open_inbox(channel, own=True), state.codec.copy(message))
                return
            envelope = {"op": "send", "to": channel, "message": message}
            await state.publish(PROCESS_TOPIC + client, envelope)
            return
        self._require_queues(state)
        capacity = self.get_capacity(channel)
        if not await feed.send(state.front, state.codec, channel, message, capacity, self.expiry):
            raise ChannelFull(channel)

    def _require_queues(self, state: LoopLayer) -> None:
        """`QueuesNotSupported` unless the backend keeps work queues (normal channels)."""
        config = state.front.config
        if not config.backend_class.supports_queues:
            raise QueuesNotSupported.on(config.alias, config.backend_class)

    async def receive(self, channel: str) -> Message:
        """The next message on ``channel``, waiting for one."""
        # The usual case, inline: a channel received on here before (its name was
        # checked then), on a loop whose state can be used as it is (see `_state`).
        # A loop with a state is a lasting one: states are made only by calls that
        # `loops.on_lasting_loop` ran there, and a loop never becomes a throwaway one.
        state = self._states.find(asyncio.get_running_loop())
        if state is not None and not (state.closed or state.stale or state.front.retired):
            try:
                inbox = state.inboxes.get(channel)
            except TypeError:  # unhashable: not a name; refused below
                inbox = None
            if inbox is not None and (inbox.own or inbox.claimed):
                return await state.receive(inbox)
        self.require_valid_channel_name(channel)
        return await loops.on_lasting_loop(self._receive(channel))

    async def _receive(self, channel: str) -> Message:
        state = self._state()
        if "!" in channel:
            if client_of(channel) != state.client:
                raise ValueError(
                    f"cannot receive on {channel!r}: a process-specific channel is received "
                    "through the layer, in the process, whose new_channel() made it"
                )
            if channel not in state.inboxes:  # the usual case skips the lookup
                home = await self._home_of(channel, state)
                if home is not state:
                    return await loops.run_on(home.loop, self._receive(channel))
            inbox = state.open_inbox(channel, own=True)
        else:
            self._require_queues(state)
            inbox = state.open_inbox(channel, own=False)
            if not inbox.claimed:
                inbox = await state.claim(inbox)
        return await state.receive(inbox)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``; returns once the group's subscription is live."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await loops.on_lasting_loop(self._group_op("group_add", group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (nothing happens if it is not in it)."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        await loops.on_lasting_loop(self._group_op("group_discard", group, channel))

    async def _group_op(self, op: str, group: str, channel: str) -> None:
        state = self._state()
        own = "!" in channel
        if own and client_of(channel) == state.client:
            home = await self._home_of(channel, state)
            if home is not state:
                return await loops.run_on(home.loop, self._group_op(op, group, channel))
        elif own and client_of(channel) != state.client:
            # Its process applies it when the envelope arrives.
            envelope = {"op": op, "group": group, "to": channel}
            await state.publish(PROCESS_TOPIC + client_of(channel), envelope)
            return
        if op == "group_add":
            await state.join(group, state.open_inbox(channel, own=own))
        else:
            inbox = state.inboxes.get(channel)
            if inbox is not None:
                await state.leave(group, inbox)

    async def group_send(self, group: str, message: Message) -> None:
        """Publish ``message`` on broadcast channel ``group``: every member channel on
        every host gets it (a member whose queue is full misses it), and so does every
        ``broadcast.subscribe(group)`` (an encrypted layer's messages are tokens to it)."""
        self._check_message(message)
        self.require_valid_group_name(group)
        await loops.on_lasting_loop(self._group_send(group, message))

    async def _group_send(self, group: str, message: Message) -> None:
        state = self._state()
        if self._secrets:
            await state.publish(group, message)
        else:
            await state.front.apublish(group, message)
            state.expiring.published(group)

    # -- flush extension and shutdown ------------------------------------------

    async def _each_state(self, action: Callable[[LoopLayer], Coroutine[Any, Any, None]]) -> None:
        current = asyncio.get_running_loop()
        for state in self._states.values():
            if state.loop is current:
                await action(state)
            elif state.loop.is_running():
                await loops.run_on(state.loop, action(state))

    async def flush(self) -> None:
        """Drop every queued message, group membership and unused channel of this
        layer, in this process (other processes keep theirs)."""
        await self._each_state(LoopLayer.flush)

    async def close(self) -> None:
        """Release this layer's subscriptions and state on every event loop; a pending
        ``receive()`` raises `LayerClosed`. The layer can be used again afterwards.
        The broadcast connections are shared and stay open (see ``broadcasts``)."""
        await self._each_state(LoopLayer.close)
        for loop, state in self._states.items():
            if state.closed or loop.is_closed():
                self._states.discard(loop, state)

    async def close_pools(self) -> None:
        """`close`, under the name channels_redis users call."""
        await self.close()

    def status(self) -> dict[str, int]:
        """Counters summed over event loops: channels, groups, memberships, subscriptions,
        queued messages, messages dropped on full queues, expired messages, messages
        dropped because they did not decrypt, and messages parked by ``close()``."""
        states = self._states.values()
        total = {"loops": len(states), "parked": self._homes.parked}
        total.update(dict.fromkeys(STATUS_KEYS, 0))
        for state in states:
            # May run on another thread than the state's: copy before iterating.
            inboxes, groups = list(state.inboxes.values()), list(state.groups.values())
            counts = {
                "channels": len(inboxes),
                "groups": len(groups),
                "memberships": sum(len(members) for members in groups),
                "subscriptions": sum(1 for sink in list(state.sinks.values()) if sink.confirmed),
                "queued": sum(inbox.queued for inbox in inboxes),
                "dropped_full": state.dropped_full,
                "expired": state.expired,
                "undecryptable": state.codec.undecryptable,
            }
            for key, value in counts.items():
                total[key] += value
        return total
