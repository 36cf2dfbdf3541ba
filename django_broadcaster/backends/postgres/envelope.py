"""The ``NOTIFY`` payload of an event, and the event ids it carries.

A notification is ``@<id>`` (a wake-up) or ``@<id>:<mac>:<payload>`` (the
event inline): the row's ``bigserial`` id, added by the publish statement
itself, then the HMAC-SHA256 in hex and the payload in base64 (see `sealing`;
inline when the backend has a key and the notification stays under
``NOTIFY``'s 8,000 bytes). A wake-up only says "this channel has news": the
listener reads the channel's rows after its position from the table and hands
out those, so a notification anyone may send (``NOTIFY`` needs no privilege)
never delivers an event nor moves a position by itself; an inline event is
handed out as it is only when its MAC checks out, and is a wake-up otherwise.
Anything else on a backend's channel (someone's plain ``NOTIFY``) is a
foreign payload, handed over without an id.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from ..history import integer_id

#: The largest event id (a ``bigint``).
MAX_ID = 2**63 - 1
#: The largest payload sent inline: ``@``, 19 digits, ``:``, 64 hex digits, ``:``
#: and its base64 stay below ``NOTIFY``'s limit of 8,000 bytes.
INLINE_MAX = 5_900
_MAC_HEX = 64
_DIGITS = 20  # the longest id `event_number` reads (leading zeros allowed)


class Notified(NamedTuple):
    """What a notification in the backend's format says."""

    id: int
    digits: str  # the id as notified (what the MAC covers)
    mac: str | None  # hex; ``None`` for a wake-up
    payload: bytes | None  # ``None`` for a wake-up


def inline(payload: bytes) -> str | None:
    """``payload`` as a notification carries it (base64); ``None`` when too large."""
    if len(payload) > INLINE_MAX:
        return None
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


def notified(text: str) -> Notified | None:
    """What ``text`` announces; ``None`` for a foreign payload. An inline event whose
    MAC or base64 is malformed is a wake-up (it is no valid inline event either way)."""
    if text[:1] != "@":
        return None
    digits, colon, rest = text[1:].partition(":")
    mac, colon_, body = rest.partition(":")
    if colon and (not colon_ or len(mac) != _MAC_HEX):
        return None
    # What `event_number` accepts, without building its error for junk: this runs
    # for every notification.
    if not (len(digits) <= _DIGITS and digits.isascii() and digits.isdigit()):
        return None
    number = int(digits)
    if number > MAX_ID:
        return None
    if colon and mac.isascii():
        try:
            return Notified(number, digits, mac, base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            pass
    return Notified(number, digits, None, None)


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
