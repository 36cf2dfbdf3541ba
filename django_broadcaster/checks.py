"""System checks: every ``BROADCAST_BACKENDS`` mistake is reported with an id and a hint.

One run reports every problem of every alias, not just the first.

=====================  ==================================================
django_broadcaster.E001  BROADCAST_BACKENDS or an entry is not a dict
django_broadcaster.E002  BACKEND missing or cannot be imported
django_broadcaster.E003  BACKEND is not a BaseBackend subclass
django_broadcaster.E004  a client library (redis, psycopg, msgpack) is missing
django_broadcaster.E005  unknown key in an entry, or a bad KEY_PREFIX
django_broadcaster.E006  OPTIONS is not a dict, has an unknown key or a bad value
django_broadcaster.E007  LOCATION is not usable by the backend
django_broadcaster.E008  the history table is missing (run migrate)
django_broadcaster.E009  no 'default' alias
=====================  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, register

from .config import configured_backends, read_entry
from .exceptions import ConfigError


def _as_error(exc: ConfigError) -> Error:
    return Error(exc.message, hint=exc.hint, id=exc.check_id)


@register("django_broadcaster")
def check_backends(
    app_configs: Sequence[Any] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    try:
        backends = configured_backends()
    except ConfigError as exc:
        return [_as_error(exc)]
    messages: list[CheckMessage] = []
    for alias, entry in backends.items():
        front, problems = read_entry(alias, entry)
        messages.extend(_as_error(problem) for problem in problems)
        if front is not None:
            messages.extend(front.config.backend_class.deployment_checks(front.config, databases))
    return messages
