"""Redis Sentinel: finding the master through the sentinels (``OPTIONS["SENTINELS"]``).

``LOCATION`` names the service instead of a server (``redis://mymaster/0``, the
django-redis convention): its host is the service name the sentinels monitor,
its path the database, its user and password those of the master. Every
``connect()`` asks the sentinels for the master's address, so the reconnect
that follows a failover finds the new master, as it would a restarted server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.sentinel import Sentinel


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
