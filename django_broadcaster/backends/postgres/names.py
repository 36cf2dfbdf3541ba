"""How a broadcast channel is named inside PostgreSQL.

Each channel has three names, all derived from ``KEY_PREFIX`` and the channel
name: the value of the history table's ``channel`` column, its ``NOTIFY``
channel (at most 63 bytes: readable tail plus a 128-bit hash, so long names
work and never collide), and the second key of its advisory lock.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

#: ``channel`` column width; longer ``KEY_PREFIX`` values are shortened with a hash.
CHANNEL_COLUMN = 255

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class ChannelNames:
    """The PostgreSQL names of one broadcast channel."""

    wire: str  # stored in the table's channel column
    notify: str  # the NOTIFY channel, at most 63 bytes
    lock_key: int  # second key of the channel's advisory lock


@functools.lru_cache(maxsize=8192)
def channel_names(prefix: str, channel: str) -> ChannelNames:
    """The names of ``channel`` under the (already shortened) ``prefix``."""
    wire = f"{prefix}:{channel}" if prefix else channel
    digest = hashlib.blake2b(wire.encode(), digest_size=16).digest()
    readable = _NOT_NAME.sub("", wire)[-30:]
    return ChannelNames(
        wire, f"{readable}#{digest.hex()}", int.from_bytes(digest[:4], "big", signed=True)
    )


def short_prefix(prefix: str) -> str:
    """``prefix``, shortened with a hash when ``prefix:<200 chars>`` would not fit the column."""
    room = CHANNEL_COLUMN - 201
    if len(prefix) <= room:
        return prefix
    digest = hashlib.blake2b(prefix.encode(), digest_size=8).hexdigest()
    return f"{prefix[: room - 17]}~{digest}"
