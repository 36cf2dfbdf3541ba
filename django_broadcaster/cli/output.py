"""What ``manage.py broadcast`` prints: events (JSON or colored text) and the status table.

Whatever a message holds, what is printed is valid JSON and safe for a terminal:
characters a terminal would act on or that reorder what it shows are written as
``\\uXXXX`` escapes, which decode back to the same text.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from django.core.management.color import Style
from django.utils import timezone

from ..events import Event
from .status import StatusRow

#: C0 and C1 controls, DEL, bidirectional formatting (marks, embeddings,
#: overrides, isolates), and lone surrogates (which no output encoding accepts).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: Deeper parts of a message are printed as `TOO_DEEP` (the JSON encoder recurses).
MAX_DEPTH = 100
TOO_DEEP = "<nested too deeply to print>"
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def printable(text: str) -> str:
    """``text`` with every unsafe character written as a JSON-style ``\\uXXXX`` escape."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def one_line(text: str) -> str:
    """``text`` (an error message, say) on one printable line."""
    return printable(" ".join(text.split()))


def to_json(value: Any) -> str:
    """``value`` as compact, printable JSON on one line, whatever it holds.

    ``bytes`` (values and map keys, from msgpack) become base64 text, NaN and the
    infinities the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, any other
    value that is not JSON (a msgpack ``Timestamp``) its ``repr``.
    """
    return _dump(_plain(value, 0))


def _dump(plain: Any) -> str:
    """JSON types as compact, printable JSON."""
    return printable(json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":")))


def _plain(value: Any, depth: int) -> Any:
    """``value`` made of JSON types only."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _base64(value)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {_key(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return repr(value)


def _key(key: Any) -> str:
    """A map key as JSON's string key: ``bytes`` as base64, other non-strings by ``repr``."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        return _base64(key)
    return key if isinstance(key, str) else repr(key)


def _base64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def event_line(event: Event, as_json: bool, style: Style) -> str:
    """One received event: a JSON object, or "timestamp channel id message" in color."""
    now = timezone.now()
    if timezone.is_aware(now):
        now = timezone.localtime(now)
    if as_json:
        record = {
            "timestamp": now.isoformat(),
            "channel": event.channel,
            "id": event.id,
            "message": _plain(event.message, 0),
        }
        return _dump(record)
    return " ".join(
        (
            style.HTTP_NOT_MODIFIED(now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
            style.MIGRATE_LABEL(printable(event.channel)),
            style.SQL_KEYWORD(printable(event.id) if event.id is not None else "-"),
            to_json(event.message),
        )
    )


def status_table(rows: list[StatusRow], style: Style) -> list[str]:
    """The lines of the status table: a header, then one row per alias."""
    header = ("ALIAS", "BACKEND", "LOCATION", "HISTORY", "ROUND TRIP", "STATUS")
    cells = [
        (
            printable(row.alias),
            row.backend,
            printable(row.location or "-"),
            row.history,
            f"{row.round_trip * 1000:.1f} ms" if row.round_trip is not None else "-",
            "ok" if row.error is None else one_line(row.error),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]

    def padded(values: Sequence[str]) -> str:
        # Every column but the last (STATUS, which may be a long error) is padded.
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=False))

    lines = [style.MIGRATE_HEADING(f"{padded(header)}  {header[-1]}")]
    for row, values in zip(rows, cells, strict=True):
        status = style.SUCCESS if row.error is None else style.ERROR
        lines.append(f"{padded(values)}  {status(values[-1])}")
    return lines
