"""Exceptions raised by django-broadcaster."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured


class BroadcastError(Exception):
    """Base class of every error django-broadcaster raises on purpose."""


class InvalidChannelName(BroadcastError, ValueError):
    """A channel name is empty, too long, or holds a character outside ``A-Za-z0-9-_.:``."""


class HistoryNotSupported(BroadcastError):
    """``since=``/``history=`` or ``history()`` was used on a backend that keeps no history."""

    @classmethod
    def on(cls, alias: str, backend_class: type) -> HistoryNotSupported:
        """The error for alias ``alias``, served by ``backend_class``."""
        return cls(
            f"broadcast backend {alias!r} ({backend_class.__name__}) keeps no history, so "
            "since=, history= and history() cannot be used with it; choose a backend with "
            "history (memory, Redis Streams, PostgreSQL)"
        )


class QueuesNotSupported(BroadcastError):
    """The backend has no work queues, which the channel layer's normal channels need."""

    @classmethod
    def on(cls, alias: str, backend_class: type) -> QueuesNotSupported:
        """The error for alias ``alias``, served by ``backend_class``."""
        return cls(
            f"broadcast backend {alias!r} ({backend_class.__name__}) has no work queues, so "
            "the channel layer cannot send() to or receive() from a normal channel name on "
            "it (groups and new_channel() names work); choose a backend with queues "
            "(memory, Redis, Redis Streams, PostgreSQL)"
        )


class HistoryGap(BroadcastError):
    """``since=`` names a position from which the history no longer holds every later
    event (the oldest were dropped by retention): resuming there would skip some.

    ``channels`` lists the channels concerned. Resubscribe without ``since=`` (with
    ``history=N`` to show recent events) and tell the user some were missed.
    """

    def __init__(self, alias: str, channels: list[str]) -> None:
        self.channels = channels
        super().__init__(
            f"broadcast backend {alias!r} no longer retains every event after the given "
            f"since= position of {', '.join(map(repr, channels))}: resubscribe without since= "
            "(history=N shows the latest events)"
        )


class MessageTooLarge(BroadcastError, ValueError):
    """A message is larger, encoded, than its alias's ``OPTIONS["MAX_MESSAGE_BYTES"]``."""


class BackendUnavailable(BroadcastError, ConnectionError):
    """The backend could not be reached within the configured ``TIMEOUT``."""


class SubscriberLagged(BroadcastError):
    """The subscriber read too slowly and its queue (``MAX_QUEUE``) overflowed.

    ``last_ids`` maps each channel to the id of the last event this subscriber
    received; ``since`` is ready to pass back to ``subscribe(..., since=...)`` to
    resume without a gap on a backend with history.
    """

    def __init__(self, last_ids: Mapping[str, str | None], channels: tuple[str, ...]) -> None:
        self.last_ids = dict(last_ids)
        self.channels = channels
        super().__init__(
            f"subscriber of {', '.join(channels)} fell more than MAX_QUEUE events behind "
            f"and was dropped; resubscribe with since={self.since!r} to resume"
        )

    @property
    def since(self) -> str | dict[str, str | None] | None:
        """The ``since=`` value that resumes right after the last event received."""
        if len(self.channels) == 1:
            return self.last_ids.get(self.channels[0])
        return {channel: self.last_ids.get(channel) for channel in self.channels}


class ConfigError(ImproperlyConfigured):
    """A ``BROADCAST_BACKENDS`` entry is wrong; ``check_id`` and ``hint`` feed the system check."""

    def __init__(self, message: str, *, check_id: str, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} HINT: {hint}")
        self.message = message
        self.check_id = check_id
        self.hint = hint

    def naming(self, where: str) -> ConfigError:
        """This error with ``where`` (the entry, e.g. ``BROADCAST_BACKENDS['default']``) in
        front, unless the message already starts with it."""
        if self.message.startswith(where):
            return self
        return ConfigError(f"{where}: {self.message}", check_id=self.check_id, hint=self.hint)
