"""Checking ``OPTIONS`` values: the predicates and the one error every check raises.

Shared by the common options (``MAX_QUEUE``, ``TIMEOUT``), every backend's
``check_options`` and the channel layer's ``CONFIG`` checks, so a mistake reads
the same wherever it is made.
"""

from __future__ import annotations

from .exceptions import ConfigError

#: The system check id of a bad ``OPTIONS`` entry.
OPTION_CHECK_ID = "django_broadcaster.E006"


def is_whole_number(value: object, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_seconds(value: object) -> bool:
    """Whether ``value`` is a number (not a ``bool``) greater than zero."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def option_error(
    name: str, requirement: str, value: object, hint: str | None = None
) -> ConfigError:
    """The `ConfigError` for ``OPTIONS[name]``: "must be <requirement>, not <value>".

    Raised from a backend's ``check_options``, it reaches the user prefixed with
    the alias (``BROADCAST_BACKENDS['default']: OPTIONS['MAXLEN'] must be ...``).
    """
    return ConfigError(
        f"OPTIONS[{name!r}] must be {requirement}, not {value!r}",
        check_id=OPTION_CHECK_ID,
        hint=hint,
    )
