"""A Django Channels channel layer on the broadcast bus: `BroadcastChannelLayer`.

Names map onto broadcast channels like this::

    group G                    -> broadcast channel G, carrying the message dict as is
    process-specific channel   -> "_broadcaster:layer:p:<client>", one per layer per process
    normal channel N           -> work queue "_broadcaster:layer:q:N" in the engine

so ``group_send(G, msg)`` is ``apublish(G, msg)`` and anything published on G
reaches the group's consumers, while each message sent to N goes to one
receiver. ``:`` cannot occur in a Channels name, so the layer's own broadcast
channels never collide with a group; they are in the
reserved namespace (``events.RESERVED_PREFIX``), which the public API refuses,
so the layer publishes and subscribes them through the hub directly. With
``symmetric_encryption_keys`` every message travels encrypted (`codec`).

A channel whose ``receive()`` was cancelled (a consumer that went away) and is
not received on again within ``expiry`` seconds is released with its group
memberships; so is a channel in which a message expired unread, and one that
has been empty and unread for ``expiry``.
See docs/channel-layer.rst for the semantics and the channels_redis migration.

The modules:

- `layer`: `BroadcastChannelLayer`, the public API; routes each call to the
  right event loop's state;
- `loop_state`: `LoopLayer`, the layer's queues, groups and subscriptions on one
  event loop, and their housekeeping;
- `inbox`: `Inbox`, one channel's bounded queue;
- `housekeeping`: `sweep`, which expires messages and memberships and releases
  idle channels;
- `feed`: `Feed`, what takes a normal channel's messages from its work queue;
- `homes`: `Homes`, which loop holds each process-specific channel;
- `expiring`: `Expiring`, the engine's copies of layer messages dropped after ``expiry``;
- `names`: the layer's own broadcast channel names;
- `sink`: `Sink`, the hub subscriber that feeds one broadcast channel to a loop;
- `codec`: `Codec`, how messages are encoded (and encrypted) for the bus;
- `checks`: validation of the layer's ``CONFIG``, shared by the constructor and
  the system check.

The names below are imported on first use: the app loads `checks` for its
system check even when Channels is not installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.exceptions import ChannelFull

    from .layer import BroadcastChannelLayer
    from .loop_state import LayerClosed

__all__ = ["BroadcastChannelLayer", "ChannelFull", "LayerClosed"]

#: Where each exported name is defined.
_HOMES = {
    "BroadcastChannelLayer": f"{__name__}.layer",
    "ChannelFull": "channels.exceptions",
    "LayerClosed": f"{__name__}.loop_state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
