"""Validation of ``CHANNEL_LAYERS`` entries that use `BroadcastChannelLayer`.

One function, `config_problems`, serves both the system check registered here
and the layer's constructor, so ``manage.py check`` and runtime agree. This
module must not import Channels: the app works without it installed.

==========================  =====================================================
django_broadcaster.E010     a CONFIG of BroadcastChannelLayer is wrong: unknown
                            ``using`` alias, unknown key, bad value, encryption
                            keys without the ``cryptography`` package
django_broadcaster.W001     a channels_redis key (``hosts``, ``prefix``,
                            ``serializer_format``) that this layer ignores
==========================  =====================================================
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from typing import Any, NamedTuple

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from ..config import configured_backends
from ..exceptions import ConfigError
from ..front import Broadcast
from ..options import is_seconds, is_whole_number

#: The path settings name the layer by.
LAYER_PATH = "django_broadcaster.layers.BroadcastChannelLayer"
#: The module that defines it (loaded already when a subclass of it was imported).
LAYER_MODULE = f"{__package__}.layer"
#: The system check id of a wrong layer CONFIG.
CONFIG_CHECK_ID = "django_broadcaster.E010"
#: The system check id of an ignored channels_redis key.
IGNORED_KEY_CHECK_ID = "django_broadcaster.W001"

#: The CONFIG key of the secrets that encrypt the layer's messages.
ENCRYPTION_KEY = "symmetric_encryption_keys"
#: CONFIG keys the layer uses.
ACCEPTED = ("using", "capacity", "expiry", "group_expiry", "channel_capacity", ENCRYPTION_KEY)
#: channels_redis keys that are accepted and ignored, with what to do instead.
IGNORED = {
    "hosts": "connections come from BROADCAST_BACKENDS[using]; set its LOCATION instead",
    "prefix": "name-spacing comes from BROADCAST_BACKENDS[using]['KEY_PREFIX'] instead",
    "serializer_format": "the encoding is BROADCAST_BACKENDS[using]['OPTIONS']['SERIALIZER']"
    " ('json' or 'msgpack') instead",
}


class Problem(NamedTuple):
    """One thing wrong with a CONFIG: ``error`` or not (a warning), what, and a hint."""

    error: bool
    message: str
    hint: str | None = None


def config_problems(config: object, *, check_alias: bool = True) -> list[Problem]:
    """Everything wrong with one layer CONFIG (``[]`` when it is fine)."""
    if not isinstance(config, Mapping):
        return [Problem(True, f"CONFIG must be a dict, not {type(config).__name__}")]
    problems: list[Problem] = []
    unknown = sorted(str(key) for key in config if key not in (*ACCEPTED, *IGNORED))
    if unknown:
        problems.append(
            Problem(
                True,
                f"unknown CONFIG key(s): {', '.join(unknown)}",
                f"accepted: {', '.join(ACCEPTED)}",
            )
        )
    if config.get(ENCRYPTION_KEY) is not None:
        problems.extend(_encryption_problems(config[ENCRYPTION_KEY]))
    for key, instead in IGNORED.items():
        if key in config:
            problems.append(Problem(False, f"CONFIG key {key!r} is ignored", instead))
    using = config.get("using", "default")
    if isinstance(using, str):
        if check_alias:
            problems.extend(_alias_problems(using))
    elif not isinstance(using, Broadcast):  # an instance is fine when built in code
        problems.append(_must_be("'using'", "an alias string", using))
    capacity = config.get("capacity", 100)
    if not is_whole_number(capacity, 1):
        problems.append(_must_be("'capacity'", "a whole number >= 1", capacity))
    for key in ("expiry", "group_expiry"):
        if key in config and not is_seconds(config[key]):
            problems.append(_must_be(repr(key), "a number of seconds > 0", config[key]))
    capacities = config.get("channel_capacity") or {}
    if not isinstance(capacities, Mapping):
        problems.append(_must_be("'channel_capacity'", "a dict of pattern -> capacity", capacities))
    else:
        for pattern, value in capacities.items():
            if not (isinstance(pattern, str) or hasattr(pattern, "match")):
                problems.append(
                    Problem(
                        True,
                        f"channel_capacity pattern {pattern!r} must be a glob string or a "
                        "compiled regex",
                    )
                )
            if not is_whole_number(value, 1):
                problems.append(
                    _must_be(f"channel_capacity[{pattern!r}]", "a whole number >= 1", value)
                )
    return problems


def _encryption_problems(secrets: object) -> list[Problem]:
    if not (
        isinstance(secrets, (list, tuple))
        and secrets
        and all(isinstance(secret, (str, bytes)) and len(secret) >= 16 for secret in secrets)
    ):
        # Never echo the value: it is a secret.
        return [
            Problem(
                True,
                f"{ENCRYPTION_KEY} must be a non-empty list of secret keys (str or bytes, "
                "16 characters or more), newest first",
                "e.g. [os.environ['CHANNELS_ENCRYPTION_KEY']]; add a new key in front to rotate",
            )
        ]
    if find_spec("cryptography") is None:
        return [
            Problem(
                True,
                f"{ENCRYPTION_KEY} needs the 'cryptography' package, which is not installed",
                'pip install "django-broadcast-bus[crypto]"',
            )
        ]
    return []


def _must_be(name: str, requirement: str, value: object) -> Problem:
    """The error "<name> must be <requirement>, not <value>", worded like `option_error`."""
    return Problem(True, f"{name} must be {requirement}, not {value!r}")


def _alias_problems(using: str) -> list[Problem]:
    try:
        aliases = configured_backends()
    except ConfigError:
        return []  # BROADCAST_BACKENDS itself is wrong; its own check reports that
    if using in aliases:
        return []
    return [
        Problem(
            True,
            f"'using' names {using!r}, which is not a BROADCAST_BACKENDS alias",
            f"configured aliases: {', '.join(map(repr, aliases))}",
        )
    ]


def _is_broadcast_layer(path: object) -> bool:
    if path == LAYER_PATH:
        return True
    if not isinstance(path, str) or not path:
        return False
    try:
        backend = import_string(path)
    except ImportError:
        return False  # Channels reports it when it builds the layer
    layer = sys.modules.get(LAYER_MODULE)
    return (
        layer is not None
        and isinstance(backend, type)
        and issubclass(backend, layer.BroadcastChannelLayer)
    )


@register("django_broadcaster")
def check_channel_layers(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, Mapping):
        return []
    messages: list[CheckMessage] = []
    for alias, entry in layers.items():
        if not isinstance(entry, Mapping) or not _is_broadcast_layer(entry.get("BACKEND")):
            continue
        for key in ("CONFIG", "TEST_CONFIG"):
            if key not in entry:
                continue
            where = f"CHANNEL_LAYERS[{alias!r}][{key!r}]"
            for problem in config_problems(entry[key]):
                text = f"{where}: {problem.message}"
                if problem.error:
                    messages.append(Error(text, hint=problem.hint, id=CONFIG_CHECK_ID))
                else:
                    messages.append(Warning(text, hint=problem.hint, id=IGNORED_KEY_CHECK_ID))
    return messages
