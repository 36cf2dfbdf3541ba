"""Redis Sentinel: the ``SENTINELS`` option, and finding the master through them.

``LOCATION`` names the service instead of a server (``redis://mymaster/0``, the
django-redis convention): its host is the service name the sentinels monitor,
its path the database, its user and password those of the master. Every
``connect()`` asks the sentinels for the master's address, so the reconnect
that follows a failover finds the new master, as it would a restarted server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio.sentinel import Sentinel

from ...masking import mask_password
from ...options import is_whole_number, option_error
from ..base import location_error

#: How a sentinel is named in ``SENTINELS``.
SENTINEL_HINT = "e.g. [('10.0.0.1', 26379), ('10.0.0.2', 26379), ('10.0.0.3', 26379)]"


def check_sentinels(options: Mapping[str, Any]) -> None:
    """``SENTINELS``: ``None`` or a non-empty list of ``(host, port)`` pairs;
    ``SENTINEL_KWARGS``: a dict of redis-py connection arguments for the sentinels."""
    sentinels = options.get("SENTINELS")
    if sentinels is not None:
        requirement = "a non-empty list of (host, port) pairs, one per sentinel"
        if not isinstance(sentinels, (list, tuple)) or not sentinels:
            raise option_error("SENTINELS", requirement, sentinels, hint=SENTINEL_HINT)
        for sentinel in sentinels:
            if not (
                isinstance(sentinel, (list, tuple))
                and len(sentinel) == 2
                and isinstance(sentinel[0], str)
                and sentinel[0]
                and is_whole_number(sentinel[1], 1)
                and sentinel[1] <= 65535
            ):
                raise option_error("SENTINELS", requirement, sentinel, hint=SENTINEL_HINT)
    kwargs = options.get("SENTINEL_KWARGS", {})
    # Its values may hold a password: errors show only the type and the keys.
    if not isinstance(kwargs, dict):
        raise option_error(
            "SENTINEL_KWARGS", "a dict of redis-py connection arguments", type(kwargs)
        )
    for key in kwargs:
        if not isinstance(key, str):
            raise option_error("SENTINEL_KWARGS", "keyed by argument names (str)", key)


def check_service_location(location: str, backend: str) -> None:
    """With ``SENTINELS``, ``LOCATION`` must name the service: ``redis://<service>/<db>``."""
    parts = urlsplit(location)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.port:
        raise location_error(
            f"LOCATION {mask_password(location)!r} of {backend} must name the Sentinel "
            "service as redis://<service>/<db> (or rediss://) when OPTIONS['SENTINELS'] is set",
            "e.g. 'redis://mymaster/0'; the sentinels' addresses go in SENTINELS",
        )


async def master_address(
    sentinels: Sequence[tuple[str, int]], service: str, kwargs: Mapping[str, Any]
) -> tuple[str, int]:
    """The address the sentinels give for ``service``'s master: one they see up,
    asked of each sentinel in turn. Raises `MasterNotFoundError` (a redis-py
    ``ConnectionError``: the hub retries) while none does, as during a failover."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [tuple(address) for address in sentinels], sentinel_kwargs=dict(kwargs)
    )
    try:
        host, port = await sentinel.discover_master(service)
    finally:
        for client in sentinel.sentinels:
            await client.aclose()
    return str(host), int(port)
