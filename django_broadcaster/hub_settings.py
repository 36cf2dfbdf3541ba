"""What a `Hub` is given (`HubSettings`) and what it counts (`HubStats`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends.base import BackendConfig
from .masking import mask_password
from .serializers import Serializer


@dataclass(frozen=True)
class HubSettings:
    """What a hub is given: one validated ``BROADCAST_BACKENDS`` entry."""

    config: BackendConfig
    serializer: Serializer
    max_queue: int
    timeout: float
    max_message_bytes: int = 1024 * 1024
    #: ``OPTIONS["SIGNING_KEYS"]``, newest first; empty when events are not signed.
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)  # secrets

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def safe_location(self) -> str:
        """``LOCATION`` with its password masked."""
        return mask_password(self.config.location)


@dataclass
class HubStats:
    """Counters of one hub; `Broadcast.stats` adds them up over event loops."""

    published: int = 0
    received: int = 0
    undecodable: int = 0
    #: Events dropped for a missing or wrong signature (with ``SIGNING_KEYS``).
    forged: int = 0
    lagged: int = 0
    disconnects: int = 0
    reconnects: int = 0
    outage_seconds: float = 0.0
    subscribers: int = 0
    upstream_channels: int = 0
