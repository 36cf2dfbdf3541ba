"""The layer's own broadcast channels, and what a process-specific name says.

They are in the reserved namespace (``events.RESERVED_PREFIX``): the public API
refuses their names, so no caller-chosen channel name reaches them. ``:``
cannot occur in a Channels name, so they never collide with a group either.
"""

from __future__ import annotations

from ..events import RESERVED_PREFIX

#: The broadcast channel of one layer's process-specific channels in one process: + client.
PROCESS_TOPIC = RESERVED_PREFIX + "layer:p:"
#: The work queue (and wake-up channel) of a normal channel: + its name.
QUEUE_TOPIC = RESERVED_PREFIX + "layer:q:"


def client_of(channel: str) -> str:
    """The ``<client>`` of a process-specific name ``<prefix>.<client>!<token>``."""
    return channel.partition("!")[0].rpartition(".")[2]
