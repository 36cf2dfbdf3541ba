"""What a room is on the bus: its channel name and the messages published on it.

Every chat event is a dict with a ``type`` (``chat.message`` or
``chat.presence``): Channels dispatches on it to the consumer's
``chat_message`` / ``chat_presence`` handler, and the page's JavaScript uses
it to tell messages from joins and leaves.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from django_broadcaster import broadcast

MAX_ROOM_LENGTH = 50
RECENT_MESSAGES = 50


def is_valid_room(room: str) -> bool:
    """Room names come from the ``<slug:room>`` URL converter; this bounds their length."""
    return 0 < len(room) <= MAX_ROOM_LENGTH


def room_channel(room: str) -> str:
    """The broadcast channel of a room, which is also its Channels group name."""
    return f"chat.{room}"


def server_label(host: object, port: object) -> str:
    """``host:port`` of the server process that handled a request or socket, so the
    page can show which host published what."""
    return f"{host}:{port}" if port else str(host or "unknown")


def chat_message(room: str, author: str, text: str, via: str) -> dict[str, Any]:
    return {
        "type": "chat.message",
        "room": room,
        "uid": uuid.uuid4().hex,
        "author": author,
        "text": text,
        "sent_at": timezone.now().isoformat(),
        "via": via,
    }


def chat_presence(room: str, author: str, action: str, via: str) -> dict[str, Any]:
    return {
        "type": "chat.presence",
        "room": room,
        "uid": uuid.uuid4().hex,  # the page shows it once, from its socket or its feed
        "author": author,
        "action": action,
        "sent_at": timezone.now().isoformat(),
        "via": via,
    }


def recent_messages(room: str, limit: int = RECENT_MESSAGES) -> list[dict[str, Any]]:
    """The room's last ``limit`` chat messages from the backend's history, oldest first,
    each with its event ``id``. Empty on a backend without history."""
    if not broadcast.supports_history:
        return []
    events = broadcast.history(room_channel(room), limit=limit * 2)
    messages = [
        {**event.message, "id": event.id}
        for event in events
        if isinstance(event.message, dict) and event.message.get("type") == "chat.message"
    ]
    return messages[-limit:]
