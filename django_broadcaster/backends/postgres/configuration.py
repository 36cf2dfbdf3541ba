"""Checking a `PostgresBackend` entry of ``BROADCAST_BACKENDS``: ``LOCATION`` and ``OPTIONS``.

``LOCATION`` is a ``DATABASES`` alias (empty: ``"default"``) or a
``postgresql://`` URL; ``OPTIONS`` bound the history (``HISTORY_SIZE``,
``HISTORY_MAX_AGE``) and choose the durability of a publish
(``SYNCHRONOUS_COMMIT``). Errors are ``E007`` and ``E006`` respectively.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ...masking import mask_password, redact
from ...options import is_seconds, is_whole_number, option_error
from ..base import location_error
from ..liveness import check_liveness_interval

URL_SCHEMES = ("postgresql", "postgres")

_LOCATION_HINT = (
    "use a DATABASES alias of a PostgreSQL database (e.g. 'default'), or a URL "
    "such as postgresql://user:password@host:5432/dbname"
)


def is_url(location: str) -> bool:
    """Whether ``location`` is meant as a URL (rather than a ``DATABASES`` alias)."""
    return "://" in location or location.split(":", 1)[0] in URL_SCHEMES


def check_location(location: str) -> None:
    """Raise `ConfigError` (``E007``) unless ``location`` names a PostgreSQL database."""
    if is_url(location):
        _check_url(location)
        return
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS

    alias = location or DEFAULT_DB_ALIAS
    if alias not in settings.DATABASES:
        known = ", ".join(map(repr, settings.DATABASES)) or "none"
        raise location_error(
            f"LOCATION {alias!r} is neither a DATABASES alias (configured: {known}) "
            "nor a postgresql:// URL",
            _LOCATION_HINT,
        )
    engine = settings.DATABASES[alias].get("ENGINE", "")
    try:
        vendor = import_module(f"{engine}.base").DatabaseWrapper.vendor
    except Exception:
        vendor = None
    if vendor != "postgresql":
        raise location_error(
            f"LOCATION {alias!r} is a DATABASES alias whose ENGINE {engine!r} is not PostgreSQL",
            _LOCATION_HINT,
        )


def _check_url(location: str) -> None:
    shown = mask_password(location)
    try:
        scheme = urlsplit(location).scheme
    except ValueError:
        raise location_error(f"LOCATION {shown} is not a valid URL", _LOCATION_HINT) from None
    if scheme not in URL_SCHEMES:
        raise location_error(
            f"LOCATION {shown} is not a PostgreSQL URL (scheme {scheme!r})", _LOCATION_HINT
        )
    try:
        conninfo_to_dict(location)
    except psycopg.Error as exc:
        raise location_error(
            f"LOCATION {shown} cannot be parsed: {redact(str(exc), location)}", _LOCATION_HINT
        ) from None


def check_options(options: Mapping[str, Any]) -> None:
    """Raise `ConfigError` (``E006``) for a bad ``HISTORY_SIZE``, ``HISTORY_MAX_AGE``,
    ``SYNCHRONOUS_COMMIT``, ``NOTIFY_PAYLOADS`` or ``LIVENESS_INTERVAL``, or for a history
    bounded by neither count nor age."""
    size, age = options.get("HISTORY_SIZE"), options.get("HISTORY_MAX_AGE")
    if size is not None and not is_whole_number(size, 1):
        raise option_error("HISTORY_SIZE", "a whole number >= 1 or None", size)
    if age is not None and not is_seconds(age):
        raise option_error("HISTORY_MAX_AGE", "a number of seconds > 0 or None", age)
    for name in ("SYNCHRONOUS_COMMIT", "NOTIFY_PAYLOADS"):
        flag = options.get(name, True)
        if not isinstance(flag, bool):
            raise option_error(name, "True or False", flag)
    check_liveness_interval(options)
    if size is None and age is None:
        raise option_error(
            "HISTORY_MAX_AGE",
            "a number of seconds > 0 when HISTORY_SIZE is None (the history table would "
            "otherwise grow forever)",
            age,
            hint="bound the history by count, by age, or both",
        )
