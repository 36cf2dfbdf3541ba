"""Command-line text into arguments of the broadcast API."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from django.core.management.base import CommandError

from ..events import validate_channel_name

#: Text that is meant as JSON: an object, array, string, number or literal
#: (``True``, ``NULL``... included), however it is broken.
_JSON_ATTEMPT = re.compile(r"\s*([{\[\"]|[-+]?\.?\d|(true|false|null)\s*$)", re.IGNORECASE)


def parse_message(text: str) -> Any:
    """``text`` as a JSON value when it parses, else the string itself.

    Text that looks like JSON (it starts like an object, array, string, number
    or ``true``/``false``/``null``) but does not parse is a `CommandError`, not
    a string sent by mistake; ``--text`` sends it as a string.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # an integer too long to convert
        reason = str(exc)
    if not _JSON_ATTEMPT.match(text):
        return text
    raise CommandError(
        f"MESSAGE looks like JSON but does not parse: {reason}; "
        "fix it, or pass --text to send it as a string"
    )


def extra_words_error(message: str, extra: Sequence[str]) -> CommandError:
    """The error for ``publish CHANNEL hello world``: MESSAGE is one argument."""
    whole = shlex.quote(" ".join([message, *extra]))
    return CommandError(f"publish takes one MESSAGE, got {len(extra) + 1} words; quote it: {whole}")


def parse_since(values: Sequence[str], channels: Sequence[str]) -> str | dict[str, str] | None:
    """``--since`` values (``ID`` for every channel, or ``CHANNEL=ID``) as ``since=``."""
    default: str | None = None
    explicit: dict[str, str] = {}
    for value in values:
        channel, sep, event_id = value.rpartition("=")
        if not sep:
            if default is not None and default != value:
                raise CommandError(
                    f"--since given twice ({default!r}, {value!r}); "
                    "use --since CHANNEL=ID to give each channel its own id"
                )
            default = value
        elif channel not in channels:
            raise CommandError(f"--since {value!r} names a channel that is not tailed")
        elif not event_id:
            raise CommandError(f"--since {value!r} has no event id after '='")
        else:
            explicit[channel] = event_id
    if default is None and not explicit:
        return None
    if len(channels) == 1 and not explicit:
        return default
    since = {c: explicit.get(c, default) for c in channels}
    return {c: i for c, i in since.items() if i is not None}


def check_channel_name(channel: str) -> None:
    """`CommandError` unless ``channel`` is a valid channel name."""
    try:
        validate_channel_name(channel)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def whole_number(text: str) -> int:
    """An argparse ``type``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
