"""The ``stats()`` counters of every alias, for Prometheus (``prometheus-client``).

``register()`` adds one collector to a registry (the default one unless
given); each scrape then reads ``Broadcast.stats()`` of every configured alias,
labelled ``alias``: counters as ``django_broadcaster_<name>_total``, the
current numbers of subscribers and upstream channels as gauges. Reading opens
no connection. Needs the ``prometheus`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigError
from .front import Broadcast
from .hub_settings import HubStats

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

PREFIX = "django_broadcaster"
#: ``stats()`` keys that are current values (gauges); every other one only grows.
GAUGES = frozenset({"subscribers", "upstream_channels"})
DESCRIPTIONS = {
    "published": "Events published.",
    "received": "Events received from the backend and handed to subscribers.",
    "undecodable": "Received events dropped because they did not decode.",
    "forged": "Received events dropped for a missing or wrong signature.",
    "lagged": "Subscribers dropped because their queue was full.",
    "disconnects": "Outages: connections to the backend lost.",
    "reconnects": "Outages ended: connections to the backend restored.",
    "outage_seconds": "Seconds spent without a connection to the backend.",
    "subscribers": "Local subscribers now.",
    "upstream_channels": "Channels subscribed at the backend now.",
}


def configured() -> list[Broadcast]:
    """The `Broadcast` of every configured alias that is configured correctly (the
    system checks report the others); creating one opens no connection."""
    from .handler import broadcasts

    found = []
    for alias in broadcasts:
        try:
            found.append(broadcasts[alias])
        except ConfigError:
            continue
    return found


class BroadcastCollector:
    """A ``prometheus_client`` collector of ``stats()`` per alias."""

    def __init__(self, sources: Callable[[], Iterable[Broadcast]] = configured) -> None:
        #: Called at each scrape: the `Broadcast` instances to report.
        self.sources = sources

    def describe(self) -> Iterable[Any]:
        return list(self._families({}))

    def collect(self) -> Iterator[Any]:
        stats = {bus.alias: bus.stats() for bus in self.sources()}
        return iter(self._families(stats))

    def _families(self, stats: dict[str, dict[str, Any]]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for field in fields(HubStats):
            name = field.name
            text = DESCRIPTIONS.get(name, f"stats()[{name!r}] of each alias.")
            family: CounterMetricFamily | GaugeMetricFamily
            if name in GAUGES:
                family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["alias"])
            else:
                family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["alias"])
            for alias, values in sorted(stats.items()):
                family.add_metric([alias], float(values[name]))
            yield family


def register(registry: CollectorRegistry | None = None) -> BroadcastCollector:
    """Add a `BroadcastCollector` to ``registry`` (``prometheus_client.REGISTRY`` when
    ``None``) and return it. Call it once, e.g. in your ``AppConfig.ready()``."""
    from prometheus_client import REGISTRY

    collector = BroadcastCollector()
    (REGISTRY if registry is None else registry).register(collector)
    return collector
