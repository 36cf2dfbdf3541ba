"""django-broadcaster: publish on a named channel, every subscriber on every host receives it.

>>> from django_broadcaster import broadcast
>>> broadcast.publish("chat.lobby", {"text": "hi"})
"""

from .events import Event
from .exceptions import (
    BackendUnavailable,
    BroadcastError,
    HistoryGap,
    HistoryNotSupported,
    InvalidChannelName,
    MessageTooLarge,
    SubscriberLagged,
)
from .front import Broadcast
from .handler import broadcast, broadcasts
from .subscription import Subscription

__all__ = [
    "BackendUnavailable",
    "Broadcast",
    "BroadcastError",
    "Event",
    "HistoryGap",
    "HistoryNotSupported",
    "InvalidChannelName",
    "MessageTooLarge",
    "SubscriberLagged",
    "Subscription",
    "broadcast",
    "broadcasts",
]
