"""What backends with history share: strict event ids and ``IDLE_RETENTION``.

Every id a caller passes (``since=``, an SSE ``Last-Event-ID``) reaches a
backend's ``id_order`` before the engine, so `integer_id` refuses anything
but plain ASCII digits in range: a hostile id never becomes an engine error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..options import is_seconds, option_error

#: The largest part of an id: Redis stream ids are two unsigned 64-bit integers.
MAX_ID_PART = 2**64 - 1
_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?", re.ASCII)
#: Characters of a refused id's repr shown in the error.
_SHOWN = 40

#: ``OPTIONS["IDLE_RETENTION"]`` by default: a channel's history is dropped after
#: a day without a publish.
IDLE_RETENTION = 86400
#: The longest ``IDLE_RETENTION`` (about 31 years); ``None`` keeps history forever.
MAX_IDLE_RETENTION = 10**9


def integer_id(event_id: object, owner: str, *, dashed: bool = True) -> tuple[int, ...]:
    """The parts of an id ``"N"`` (or ``"N-M"`` when ``dashed``): ASCII digits, each
    part at most 2**64 - 1. ``ValueError`` naming ``owner`` (the backend class) for
    anything else, showing at most the first 40 characters of its repr."""
    match = _ID.fullmatch(event_id) if isinstance(event_id, str) else None
    if match is not None and (dashed or match[2] is None):
        parts = tuple(int(part) for part in match.groups() if part is not None)
        if max(parts) <= MAX_ID_PART:
            return parts
    shown = repr(event_id)
    if len(shown) > _SHOWN:
        shown = f"{shown[:_SHOWN]}... ({len(shown):,} characters)"
    raise ValueError(
        f"{shown} is not an event id of {owner}: pass an Event.id this backend returned"
    )


def check_idle_retention(options: Mapping[str, Any]) -> None:
    """Raise the `ConfigError` for a bad ``OPTIONS["IDLE_RETENTION"]``."""
    value = options.get("IDLE_RETENTION")
    if value is not None and not (is_seconds(value) and value <= MAX_IDLE_RETENTION):
        raise option_error(
            "IDLE_RETENTION",
            f"a number of seconds > 0 and <= {MAX_IDLE_RETENTION:,}, or None (keep forever)",
            value,
        )
