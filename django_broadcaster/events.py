"""The value a subscriber receives, and the rules for channel names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidChannelName

MAX_CHANNEL_LENGTH = 200
_CHANNEL_NAME = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_CHANNEL_LENGTH}}}")
#: Channel names starting with this are django-broadcaster's own (the channel
#: layer's direct-message topics, say): the public API refuses them, so no
#: caller-chosen name reaches what travels there.
RESERVED_PREFIX = "_broadcaster:"


@dataclass(frozen=True, slots=True)
class Event:
    """One message received on a channel.

    ``id`` is the backend's event id (``None`` on backends without history);
    pass it as ``since=`` to resume after this event.
    """

    channel: str
    message: Any
    id: str | None = None


def validate_channel_name(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise `InvalidChannelName`.

    Names starting with `RESERVED_PREFIX` are refused too."""
    if isinstance(name, str) and _CHANNEL_NAME.fullmatch(name):
        if name.startswith(RESERVED_PREFIX):
            raise InvalidChannelName(
                f"invalid channel name {name!r}: names starting with {RESERVED_PREFIX!r} are "
                "reserved for django-broadcaster's internal use; choose another name"
            )
        return name
    raise InvalidChannelName(
        f"invalid channel name {name!r}: use 1-{MAX_CHANNEL_LENGTH} characters from "
        "ASCII letters, digits, '-', '_', '.' and ':'"
    )
