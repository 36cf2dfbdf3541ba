"""Message encodings: JSON (Django's encoder) by default, msgpack on request. Never pickle."""

from __future__ import annotations

import json
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


class JSONSerializer:
    """JSON values; datetimes, decimals, UUIDs and lazy strings as Django encodes them.

    Strict JSON both ways: ``NaN`` and the infinities are refused at publish
    (``ValueError``) and make a received payload undecodable (skipped and
    counted), so every ``data:`` an SSE client gets parses with ``JSON.parse``."""

    name = "json"

    def __init__(self) -> None:
        self._encode = DjangoJSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode

    def dumps(self, message: Any) -> bytes:
        return self._encode(message).encode()

    def loads(self, payload: bytes) -> Any:
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
