"""The ``NOTIFY`` payload of an event, and the event ids it carries.

A notification is ``@<id>``: the row's ``bigserial`` id, added by the publish
statement itself. It only says "this channel has news": the listener reads
the channel's rows after its position from the table and hands out those, so
a notification anyone may send (``NOTIFY`` needs no privilege) never delivers
an event nor moves a position by itself. Anything else on a backend's
channel (someone's plain ``NOTIFY``) is a foreign payload, handed over
without an id.
"""

from __future__ import annotations

from ..history import integer_id

#: The largest event id (a ``bigint``).
MAX_ID = 2**63 - 1


def notified_id(text: str) -> int | None:
    """The id a notification announces; ``None`` for a foreign payload."""
    if text[:1] != "@":
        return None
    try:
        return event_number(text[1:])
    except ValueError:
        return None


def event_number(event_id: object) -> int:
    """The row id behind an event id this backend returned; `ValueError` for anything
    else: only ASCII digits of a ``bigint`` from 0 up, so nothing PostgreSQL would
    refuse ever reaches it."""
    (number,) = integer_id(event_id, "PostgresBackend", dashed=False)
    if number > MAX_ID:
        raise ValueError(
            f"{event_id!r} is not an event id of PostgresBackend: ids are at most {MAX_ID} "
            "(a bigint); pass an Event.id this backend returned"
        )
    return number
