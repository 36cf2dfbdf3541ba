"""``broadcasts``: alias → `Broadcast`, shaped like ``django.core.cache.caches``.

Unlike Django's connection handlers, instances are shared by every thread and
async context of the process (not kept in an asgiref ``Local``): a per-request
instance would open a subscription per request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.connection import ConnectionProxy

from .config import DEFAULT_ALIAS, configured_backends, create_broadcast
from .front import Broadcast


class BroadcastHandler:
    """``broadcasts["alias"]`` returns the process-wide `Broadcast` for that alias."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, Broadcast] = {}
        self._settings: dict[str, Any] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        if self._settings is None:
            self._settings = configured_backends()
        return self._settings

    def __getitem__(self, alias: str) -> Broadcast:
        instance = self._instances.get(alias)
        if instance is not None:
            return instance
        with self._lock:
            if alias not in self._instances:
                if alias not in self.settings:
                    raise KeyError(
                        f"no broadcast backend {alias!r}: BROADCAST_BACKENDS defines "
                        f"{', '.join(map(repr, self.settings))}"
                    )
                self._instances[alias] = create_broadcast(alias, self.settings[alias])
            return self._instances[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(self.settings)

    def all(self) -> list[Broadcast]:
        """Every configured alias's `Broadcast`."""
        return [self[alias] for alias in self]

    def close_all(self) -> None:
        """Close the connections of every alias created so far."""
        with self._lock:
            instances = list(self._instances.values())
        for instance in instances:
            instance.close()

    def reset(self) -> None:
        """Close everything and re-read settings on next use (tests' ``override_settings``);
        the `Broadcast` instances dropped are marked ``retired``."""
        self.close_all()
        with self._lock:
            for instance in self._instances.values():
                instance.retired = True
            self._instances.clear()
            self._settings = None


broadcasts = BroadcastHandler()
broadcast: Broadcast = ConnectionProxy(broadcasts, DEFAULT_ALIAS)  # type: ignore[assignment,arg-type]


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "BROADCAST_BACKENDS":
        broadcasts.reset()
