"""Message encodings: JSON (Django's encoder, orjson's speed when installed) by default,
msgpack on request. Never pickle."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder

from .exceptions import ConfigError
from .options import option_error


class Serializer(Protocol):
    name: str

    def dumps(self, message: Any) -> bytes: ...

    def loads(self, payload: bytes) -> Any: ...


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (browsers' JSON.parse refuses it)")


class _Encoder(DjangoJSONEncoder):
    """Django's encoder, plus enum members as their value (as orjson writes them)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, enum.Enum):
            return o.value
        return super().default(o)


#: orjson writes floats below 1e-4 unlike ``float.__repr__`` (``1e-7`` for
#: ``1e-07``, ``0.00001`` for ``1e-05``), NaN and the infinities as ``null``, and
#: reads integers beyond 64 bits as floats: a message holding such a float goes
#: the standard library's way, both ways.
_SMALL, _LARGE = 1e-4, 2.0**63


def _unusual_float(value: Any) -> bool:
    """Whether ``value`` holds a float other than 0 and finite ones from 1e-4 to 2**63 in size."""
    try:
        return _has_unusual_float(value)
    except RecursionError:
        return True  # nested deeper than Python recurses: the standard library decides


def _has_unusual_float(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return not (_SMALL <= abs(value) < _LARGE or value == 0.0)  # NaN: True
    items: Iterable[Any]
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, enum.Enum):
        return _has_unusual_float(value.value)
    else:
        return False  # text, numbers, None, and what Django's encoder turns into text
    for item in items:  # noqa: SIM110 (a loop: twice as fast as any() over a generator)
        if type(item) not in _PLAIN and _has_unusual_float(item):
            return True
    return False


#: Types skipped without a call (the common leaves of a message).
_PLAIN = frozenset({str, int, bool, type(None)})


class JSONSerializer:
    """JSON values; datetimes, decimals, UUIDs and lazy strings as Django encodes them.

    Compact (``,`` and ``:`` without spaces), non-ASCII text as UTF-8, enum
    members as their value. Strict JSON both ways: ``NaN`` and the infinities
    are refused at publish (``ValueError``) and make a received payload
    undecodable (skipped and counted), so every ``data:`` an SSE client gets
    parses with ``JSON.parse``.

    With orjson installed (the ``orjson`` extra) both ways run through it and
    give the same bytes and values as the standard library: whatever orjson
    refuses or would write or read differently (NaN, floats below 1e-4,
    integers beyond 64 bits, non-text keys, ...) goes the standard library's
    way. ``fast=False`` keeps to the standard library."""

    name = "json"

    def __init__(self, *, fast: bool = True) -> None:
        self._encode = _Encoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        self._fast_dumps: Callable[[Any], bytes] | None = None
        self._fast_loads: Callable[[bytes], Any] | None = None
        if fast:
            try:
                import orjson
            except ImportError:
                return
            # Dates and times go to Django's encoder (orjson writes microseconds
            # and "+00:00" where Django writes milliseconds and "Z"); dataclasses
            # too, which refuses them as the standard library does.
            options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            self._fast_dumps = functools.partial(
                orjson.dumps, default=_Encoder().default, option=options
            )
            self._fast_loads = orjson.loads

    @property
    def fast(self) -> bool:
        """Whether orjson does the work."""
        return self._fast_dumps is not None

    def dumps(self, message: Any) -> bytes:
        if self._fast_dumps is not None:
            try:
                data = self._fast_dumps(message)
            except TypeError:
                pass  # what orjson refuses: the standard library decides
            else:
                if type(message) is str or not _unusual_float(message):
                    return data
        return self._encode(message).encode()

    def loads(self, payload: bytes) -> Any:
        if self._fast_loads is not None:
            try:
                message = self._fast_loads(payload)
            except ValueError:
                pass  # what orjson refuses: the standard library decides
            else:
                if not _unusual_float(message):
                    return message
        return json.loads(payload, parse_constant=_refuse_constant)


class MsgpackSerializer:
    """msgpack values; ``bytes`` allowed, other types as `DjangoJSONEncoder` turns them to text."""

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._packer_default = DjangoJSONEncoder().default
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def dumps(self, message: Any) -> bytes:
        try:
            data: bytes = self._packb(message, default=self._packer_default, use_bin_type=True)
        except (ValueError, OverflowError) as exc:
            raise TypeError(str(exc)) from exc
        return data

    def loads(self, payload: bytes) -> Any:
        return self._unpackb(payload, raw=False)


SERIALIZERS: dict[str, type[JSONSerializer] | type[MsgpackSerializer]] = {
    "json": JSONSerializer,
    "msgpack": MsgpackSerializer,
}


def get_serializer(name: object) -> Serializer:
    """Return the serializer registered as ``name``; a clear `ConfigError` otherwise."""
    if name not in SERIALIZERS:
        raise option_error("SERIALIZER", f"one of {', '.join(map(repr, SERIALIZERS))}", name)
    try:
        return SERIALIZERS[name]()  # type: ignore[index]
    except ImportError as exc:
        raise ConfigError(
            f"SERIALIZER {name!r} needs the {exc.name} package, which is not installed",
            check_id="django_broadcaster.E004",
            hint='pip install "django-broadcast-bus[msgpack]"',
        ) from exc
