"""What ``manage.py broadcast`` prints: events (JSON or colored text) and the status table."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from django.core.management.color import Style
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from ..events import Event
from .status import StatusRow


class _Encoder(DjangoJSONEncoder):
    """Django's JSON encoder; ``bytes`` (msgpack messages) as base64 text."""

    def default(self, o: Any) -> Any:
        if isinstance(o, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(o)).decode("ascii")
        return super().default(o)


def to_json(value: Any) -> str:
    """``value`` as compact JSON on one line."""
    return json.dumps(value, cls=_Encoder, ensure_ascii=False, separators=(",", ":"))


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
            "message": event.message,
        }
        return to_json(record)
    return " ".join(
        (
            style.HTTP_NOT_MODIFIED(now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
            style.MIGRATE_LABEL(event.channel),
            style.SQL_KEYWORD(event.id if event.id is not None else "-"),
            to_json(event.message),
        )
    )


def status_table(rows: list[StatusRow], style: Style) -> list[str]:
    """The lines of the status table: a header, then one row per alias."""
    header = ("ALIAS", "BACKEND", "LOCATION", "HISTORY", "ROUND TRIP", "STATUS")
    cells = [
        (
            row.alias,
            row.backend,
            row.location or "-",
            row.history,
            f"{row.round_trip * 1000:.1f} ms" if row.round_trip is not None else "-",
            "ok" if row.error is None else row.error,
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
