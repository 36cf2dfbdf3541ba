"""The contract every backend implements.

A backend instance is one set of connections to one engine, used from one
event loop. The hub above it (``django_broadcaster.hub``) owns fan-out,
bounded queues, reconnection with backoff (after a failed publish too), resume
positions and the replay seam, so a backend only moves bytes: connect, close,
publish, subscribe, unsubscribe, receive the next raw events, and (optionally)
read history; and (optionally) keep work queues for the channel layer.
``django_broadcaster.testing.conformance`` checks a backend against this
contract.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from django.core.checks import CheckMessage

from ..exceptions import ConfigError, HistoryNotSupported, QueuesNotSupported
from ..masking import mask_options, mask_password, redact
from ..options import is_seconds, is_whole_number, option_error
from .history import integer_id

__all__ = [
    "BackendConfig",
    "BaseBackend",
    "RawEvent",
    # A backend author's toolkit, defined where the core uses them:
    "is_seconds",
    "is_whole_number",
    "location_error",
    "mask_password",
    "option_error",
    "redact",
]


class RawEvent(NamedTuple):
    """An event as it comes off the wire: channel name, encoded payload, event id."""

    channel: str
    payload: bytes
    id: str | None


@dataclass(frozen=True)
class BackendConfig:
    """One ``BROADCAST_BACKENDS`` entry, validated."""

    alias: str
    backend_class: type[BaseBackend]
    location: str = ""  # may hold a password
    options: Mapping[str, Any] = field(default_factory=dict)  # may hold secrets
    key_prefix: str = ""

    def __repr__(self) -> str:
        # Passwords masked: the location's, and every secret-looking option at any depth.
        return (
            f"BackendConfig(alias={self.alias!r}, backend_class={self.backend_class.__name__}, "
            f"location={mask_password(self.location)!r}, "
            f"options={mask_options(self.options)!r}, key_prefix={self.key_prefix!r})"
        )


class BaseBackend:
    """Subclass this to add an engine. Override what your engine supports.

    ``OPTIONS`` keys the backend understands are declared in ``default_options``;
    ``connection_errors`` lists the exceptions that mean "the connection is gone,
    retry later" (anything else is a bug and is logged with a traceback).
    """

    supports_history: ClassVar[bool] = False
    #: Whether `enqueue`, `dequeue` and `restore` are implemented.
    supports_queues: ClassVar[bool] = False
    default_options: ClassVar[Mapping[str, Any]] = {}
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def __init__(self, config: BackendConfig) -> None:
        self.alias = config.alias
        self.location = config.location
        self.key_prefix = config.key_prefix
        self.options = {**self.default_options, **config.options}

    @classmethod
    def check_location(cls, location: str) -> None:
        """Raise `ConfigError` when ``location`` cannot work with this backend."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise `ConfigError` for a backend option with a wrong value."""

    @classmethod
    def deployment_checks(
        cls, config: BackendConfig, databases: Sequence[str] | None
    ) -> list[CheckMessage]:
        """Extra system checks needing more than the settings (a database table, say);
        ``databases`` are the aliases the check run may query (Django's ``--database``)."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r} {mask_password(self.location)}>"

    # -- names ---------------------------------------------------------------

    def wire_name(self, channel: str) -> str:
        """The engine-side name of ``channel`` (``KEY_PREFIX`` applied)."""
        return f"{self.key_prefix}:{channel}" if self.key_prefix else channel

    def channel_name(self, wire_name: str) -> str:
        """Inverse of `wire_name`."""
        return wire_name[len(self.key_prefix) + 1 :] if self.key_prefix else wire_name

    # -- connection ----------------------------------------------------------

    async def connect(self) -> None:
        """Open connections. Called again after any connection error (a failed
        publish, history read or ``receive()``), always after ``close()``: the hub
        heals every connection this way, so no method needs to repair one itself."""

    async def close(self) -> None:
        """Close every connection; must not raise for connections already broken."""

    # -- traffic -------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Send one event; return its id (``None`` without history)."""
        raise NotImplementedError

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        """Send several events in order; override to pipeline them in one round trip.

        Return one entry per event: its id, or the exception that event alone met
        (an error reply for one key, say) while the others went out — so one bad
        event fails only its own publish. Raise for what fails the whole batch (a
        connection error: the hub heals and retries the batch)."""
        results: list[str | Exception | None] = []
        for channel, payload in events:
            try:
                results.append(await self.publish(channel, payload))
            except self.connection_errors:
                raise
            except Exception as exc:
                results.append(exc)
        return results

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        """Start receiving these channels; return their baselines.

        ``positions`` maps each channel to the id of the last event already
        received (after a reconnect) or ``None`` (start from now). A backend with
        history resumes after that id so a reconnect loses nothing.

        A backend with history returns, for each channel given ``None``, the id
        it started from (the newest retained event's id then, or the id that
        sorts before every event of an empty channel): the hub keeps it and
        passes it back after a reconnect, so events published during an outage
        are not missed on a channel that had no event yet. Without history,
        return ``{}``.
        """
        raise NotImplementedError

    async def unsubscribe(self, channels: Collection[str]) -> None:
        """Stop receiving these channels."""
        raise NotImplementedError

    async def receive(self) -> Sequence[RawEvent]:
        """Wait for the next events on subscribed channels and return them in order.

        Called in a loop by one reader task, also while nothing is subscribed
        (then it waits). Raise one of ``connection_errors`` when the connection
        is lost; the hub reconnects and calls `subscribe` again with positions.
        """
        raise NotImplementedError

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        """Events of ``channel`` after ``since`` (all retained if ``None``), oldest
        first, at most the ``limit`` newest of them."""
        raise HistoryNotSupported.on(self.alias, type(self))

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        """The oldest ``count`` retained events of ``channel`` after ``since`` (from the
        oldest retained if ``None``), oldest first: one page of a forward read, which
        ``ahistory(oldest_first=True)`` and an SSE replay go through. This default
        reads every retained event after ``since`` with `history` and keeps the first
        ``count``: right, but its cost grows with the history; override it with a
        bounded read (an exclusive start and a count)."""
        if count <= 0:
            return []
        return (await self.history(channel, since, None))[:count]

    async def retains(self, channel: str, event_id: str) -> bool:
        """Whether every event of ``channel`` published after ``event_id`` is still in
        its history (retention has dropped none of them), so resuming there misses
        nothing; and ``False`` for a position after the newest id issued for the channel
        (made up: later events would sort before it and be skipped as duplicates).
        ``since=`` and ``history(since=)`` ask and raise `HistoryGap` when not. This
        default reads the whole history and refuses positions before its oldest event
        or after its newest; override it with a bounded lookup (the engine's record of
        what it dropped and of the last id it issued)."""
        order = self.id_order(event_id)
        retained = await self.history(channel, None, None)
        if not retained or retained[0].id is None or retained[-1].id is None:
            return True
        return self.id_order(retained[0].id) <= order <= self.id_order(retained[-1].id)

    async def expire(self, channel: str, seconds: float) -> None:
        """Let the engine drop everything ``channel`` retains ``seconds`` from now (``0``:
        now), however long its history would last otherwise. The channel layer calls it
        after publishing on a group or on its own channels, whose messages nobody needs
        past the layer's ``expiry``. This default keeps the backend's own retention."""

    # -- work queues (optional: the channel layer's normal channel names) -----

    async def enqueue(
        self, queue: str, payload: bytes, *, capacity: int, expiry: float, wake: bytes
    ) -> bool:
        """Append ``payload`` to work queue ``queue``, expiring ``expiry`` seconds from
        now; return ``False`` (nothing queued) when the queue already holds ``capacity``
        unexpired messages. Then publish ``wake`` on channel ``queue`` (the same name),
        so receivers subscribed to it look for work: a spurious wake-up is harmless,
        a missing one delays the message until a receiver looks anyway.

        The queue lives in the engine, shared by every process: each message goes to
        exactly one `dequeue` caller, whichever process it runs in."""
        raise QueuesNotSupported.on(self.alias, type(self))

    async def dequeue(self, queue: str, count: int) -> list[bytes]:
        """Remove and return up to ``count`` of the oldest unexpired messages of
        ``queue``, oldest first (``[]`` when there is none), without waiting. Atomic in
        the engine: no message is ever returned twice, to this process or another."""
        raise QueuesNotSupported.on(self.alias, type(self))

    async def restore(
        self, queue: str, payloads: Sequence[bytes], *, expiry: float, wake: bytes
    ) -> None:
        """Put ``payloads`` (taken by `dequeue`, oldest first) back at the head of
        ``queue`` in that order, whatever its capacity, each expiring ``expiry``
        seconds from now, and publish ``wake`` on channel ``queue``: a receiver that
        was handed them went away before using them."""
        raise QueuesNotSupported.on(self.alias, type(self))

    def id_order(self, event_id: str) -> tuple[int, ...]:
        """A sortable key for an event id; ids are ``"N"`` or ``"N-M"`` integers by default.

        Raise ``ValueError`` for anything that is not an id of this backend — also
        for what parses but the engine would refuse (out of range, say): every id a
        caller passes (``since=``, an SSE ``Last-Event-ID``) goes through here before
        it reaches the engine. The default takes ASCII digits, each part at most
        2**64 - 1 (`django_broadcaster.backends.history.integer_id`)."""
        return integer_id(event_id, type(self).__name__)


def location_error(message: str, hint: str) -> ConfigError:
    """The `ConfigError` for a bad ``LOCATION``."""
    return ConfigError(message, check_id="django_broadcaster.E007", hint=hint)
