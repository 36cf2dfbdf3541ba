"""Checks of the settings choosing how the Redis backends reach Redis: one server
(``LOCATION`` a server's URL), Sentinel (``OPTIONS["SENTINELS"]``, ``LOCATION``
naming the service) or Cluster (``OPTIONS["CLUSTER"]``, ``LOCATION`` a node).

The option checks run alone and together from ``check_options``; the checks of
``LOCATION`` against the options run from the system checks
(`deployment_errors`) and when a backend instance is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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


def check_cluster_location(location: str, backend: str) -> None:
    """With ``CLUSTER``, ``LOCATION`` must be ``redis://`` or ``rediss://`` nodes, database 0."""
    for url in location.split() or [""]:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or parts.path.strip("/") not in ("", "0"):
            raise location_error(
                f"LOCATION {mask_password(url)!r} of {backend} must be a redis:// or rediss:// "
                "URL of a cluster node, database 0, when OPTIONS['CLUSTER'] is True",
                "e.g. 'redis://10.0.0.1:7000/0' or a list of such URLs; Redis Cluster has only "
                "database 0",
            )


def check_cluster(options: Mapping[str, Any], supported: bool, backend: str) -> None:
    """``CLUSTER``: ``True`` or ``False``, never with ``SENTINELS``, and only on a
    backend with a cluster implementation (``supported``)."""
    cluster = options.get("CLUSTER", False)
    if not isinstance(cluster, bool):
        raise option_error("CLUSTER", "True or False", cluster)
    if cluster and options.get("SENTINELS") is not None:
        raise option_error(
            "CLUSTER",
            "False when OPTIONS['SENTINELS'] is set (a cluster has no sentinels)",
            cluster,
            hint="use CLUSTER with a node's URL as LOCATION, or SENTINELS, not both",
        )
    if cluster and not supported:
        raise option_error("CLUSTER", f"False: {backend} does not run on Redis Cluster", cluster)


def check_location_for(location: str, options: Mapping[str, Any], backend: str) -> None:
    """``LOCATION`` against the options: a service name with ``SENTINELS``, nodes
    (database 0) with ``CLUSTER``, one URL otherwise."""
    if options.get("CLUSTER"):
        check_cluster_location(location, backend)
        return
    if len(location.split()) > 1:
        raise location_error(
            f"LOCATION of {backend} lists several URLs ({mask_password(location)}): only a "
            "Redis Cluster takes more than one",
            "give one URL, or set OPTIONS['CLUSTER'] = True if they are nodes of a cluster",
        )
    if options.get("SENTINELS") is not None:
        check_service_location(location, backend)
