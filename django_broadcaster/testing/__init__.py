"""Helpers for testing code that publishes.

``use_memory_backend()`` points every alias at a fresh in-memory bus;
``capture()`` records what this process publishes::

    from django_broadcaster.testing import capture, use_memory_backend

    @use_memory_backend()
    def test_notifies(client):
        with capture("chat.lobby") as events:
            client.post("/chat/lobby/", {"text": "hi"})
        assert [e.message["text"] for e in events] == ["hi"]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test.utils import override_settings

from ..config import MEMORY_BACKEND, configured_backends
from ..events import Event
from ..handler import broadcasts

_locations = itertools.count(1)


def use_memory_backend(*aliases: str) -> override_settings:
    """``override_settings`` replacing ``aliases`` (default: every configured alias) with
    memory backends sharing one fresh store. Works as decorator and context manager."""
    location = f"django_broadcaster.testing.{next(_locations)}"
    names = aliases or tuple(configured_backends())
    backends: dict[str, Any] = dict(configured_backends())
    for alias in names:
        backends[alias] = {"BACKEND": MEMORY_BACKEND, "LOCATION": location}
    return override_settings(BROADCAST_BACKENDS=backends)


@contextmanager
def capture(*channels: str, using: str = "default") -> Iterator[list[Event]]:
    """Collect the events this process publishes through ``using`` (on ``channels``,
    or on every channel when none are named), in publish order."""
    events: list[Event] = []
    front = broadcasts[using]

    def record(event: Event) -> None:
        if not channels or event.channel in channels:
            events.append(event)

    front.observers.append(record)
    try:
        yield events
    finally:
        front.observers.remove(record)
