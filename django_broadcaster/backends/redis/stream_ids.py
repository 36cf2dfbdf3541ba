"""Stream ids: parsing them strictly, the next one, and what ``XINFO STREAM`` says
about which of them a stream no longer holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..history import MAX_ID_PART, integer_id
from .wire import text

#: The id before every entry: the position of a channel without events.
ZERO = (0, 0)


def stream_id_order(event_id: str, owner: str) -> tuple[int, int]:
    """``(milliseconds, sequence)`` of a stream id ``"N-M"`` or ``"N"`` (``"N-0"``, as
    Redis reads it), each part at most 2**64 - 1; ``ValueError`` for anything else."""
    parts = integer_id(event_id, owner)
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def after(order: tuple[int, int]) -> str | None:
    """The smallest stream id after ``order``: an exclusive XRANGE start that works
    before Redis 6.2 too. ``None`` after the largest id (nothing can follow)."""
    ms, seq = order
    if seq < MAX_ID_PART:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms < MAX_ID_PART else None


def retains(info: Mapping[str, Any] | None, order: tuple[int, int]) -> bool:
    """Whether the stream described by ``info`` (the ``XINFO STREAM`` reply, keyed by
    field name; ``None`` when there is no such key) still holds every entry it was
    given after the id ``order``, an id it has generated: one after its
    ``last-generated-id`` is made up (the next entries would sort before it).

    ``entries-added`` and ``max-deleted-entry-id`` (Redis 7) make the answer exact
    except just before the oldest entry: trimming removes the oldest entries
    without recording their ids, so after a trim a position before the oldest
    entry counts as a gap (it is one unless it was the newest trimmed entry).
    Without them (Redis < 7) any position before the oldest entry counts as a
    gap. A missing key (expired by ``IDLE_RETENTION``, or never written) holds
    nothing after any position but the zero one.
    """
    if info is None:
        return order == ZERO
    last = _order(info["last-generated-id"])
    if order >= last:
        return order == last  # nothing was added after it; after it: no id given yet
    length = info["length"]
    added = info.get("entries-added")
    deleted = info.get("max-deleted-entry-id")
    if deleted is not None and _order(deleted) > order:
        return False  # an entry after it was deleted (XDEL)
    first = info["first-entry"]
    if length and order >= _order(first[0]):
        return True  # everything removed so far came before the oldest entry, or was XDELed
    # Before the oldest entry: only a stream that never lost an entry still holds
    # everything after the zero position.
    return order == ZERO and added is not None and added == length


def fields(reply: list[Any]) -> dict[str, Any]:
    """A RESP2 ``XINFO STREAM`` reply (name, value, name, value, ...) as a dict."""
    return {text(name): value for name, value in zip(reply[::2], reply[1::2], strict=True)}


def _order(stream_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = text(stream_id).partition("-")
    return (int(ms), int(seq or 0))
