"""django-broadcaster: publish on a named channel, every subscriber on every host receives it.

>>> from django_broadcaster import broadcast
>>> broadcast.publish("chat.lobby", {"text": "hi"})

Installed from PyPI as ``django-broadcast-bus``; imported as ``django_broadcaster``.
"""

from .events import Event
from .exceptions import (
    BackendUnavailable,
    BroadcastError,
    HistoryGap,
    HistoryNotSupported,
    InvalidChannelName,
    MessageTooLarge,
    QueuesNotSupported,
    SubscriberLagged,
)
from .front import Broadcast
from .handler import broadcast, broadcasts
from .subscription import Subscription

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Broadcast",
    "BroadcastError",
    "Event",
    "HistoryGap",
    "HistoryNotSupported",
    "InvalidChannelName",
    "MessageTooLarge",
    "QueuesNotSupported",
    "SubscriberLagged",
    "Subscription",
    "__version__",
    "broadcast",
    "broadcasts",
]
