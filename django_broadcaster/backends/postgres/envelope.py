"""The ``NOTIFY`` payload of an event, and the event ids it carries.

A notification is ``@<id>`` (the row's ``bigserial`` id, added by the publish
statement itself) followed by the event when its *encoded* notification stays
well under PostgreSQL's 8000-byte limit: ``:t`` and the payload as text, or
``:b`` and the payload in base64. Otherwise nothing follows the id and the
listener reads the row. Anything else on a backend's channel (someone's plain
``NOTIFY``) is a foreign payload, handed over without an id.
"""

from __future__ import annotations

import base64
import binascii
from contextlib import suppress

#: PostgreSQL rejects notification payloads of 8000 bytes or more (server encoding).
NOTIFY_LIMIT = 8000
#: Events whose encoded notification would exceed this travel as an id only.
INLINE_LIMIT = 7000
#: The largest event id (a ``bigint``).
MAX_ID = 2**63 - 1
#: "@" + up to 19 digits of id + ":t" / ":b".
_HEADER = 22


def notification_body(payload: bytes, utf8_server: bool) -> str:
    """What follows ``@<id>`` in the notification of ``payload``: the event when its
    *encoded* form fits comfortably, else nothing (the listener reads the row).

    ``utf8_server`` says whether the server encoding is UTF-8: UTF-8 bytes are
    what the server counts; other server encodings get ASCII text only (one
    byte per character, nothing to convert).
    """
    size = len(payload)
    if size + _HEADER <= INLINE_LIMIT and b"\x00" not in payload:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            pass
        else:
            if utf8_server or text.isascii():
                return ":t" + text
    if (size + 2) // 3 * 4 + _HEADER <= INLINE_LIMIT:
        return ":b" + base64.b64encode(payload).decode("ascii")
    return ""


def parse_notification(text: str) -> tuple[int | None, bytes | None]:
    """``(id, payload)`` of a notification: ``payload`` is ``None`` when only the id
    came; ``id`` is ``None`` for a foreign payload (someone's plain ``NOTIFY``)."""
    if text[:1] == "@":
        sep = text.find(":", 1)
        digits = text[1:] if sep < 0 else text[1:sep]
        if 0 < len(digits) <= 19 and digits.isascii() and digits.isdigit():
            event_id = int(digits)
            if sep < 0:
                return event_id, None
            kind, body = text[sep + 1 : sep + 2], text[sep + 2 :]
            if kind == "t":
                return event_id, body.encode()
            if kind == "b":
                with suppress(binascii.Error, ValueError):
                    return event_id, base64.b64decode(body, validate=True)
    return None, text.encode()


def event_number(event_id: str) -> int:
    """The row id behind an event id this backend returned; `ValueError` for anything else."""
    try:
        number = int(event_id)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= MAX_ID:
        raise ValueError(
            f"{event_id!r} is not an event id of PostgresBackend: pass an Event.id "
            "this backend returned"
        )
    return number
