"""The JSON serializer's two paths (orjson and the standard library) are one format.

Every value either encodes to the very same bytes on both paths or is refused on
both with the same exception type; every payload decodes to the same value (same
types too) on both or is refused on both. Hypothesis draws the values; a table
pins the cases each path handles specially.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from django.utils.functional import lazy
from django.utils.safestring import mark_safe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_broadcaster.serializers import JSONSerializer, get_serializer

STDLIB = JSONSerializer(fast=False)
FAST = JSONSerializer()


class Colour(enum.Enum):
    RED = "red"
    HALF = 0.5
    TINY = 1e-9


class Size(enum.IntEnum):
    SMALL = 1


@dataclasses.dataclass
class Point:
    x: int


lazy_text = lazy(lambda text: text, str)
UTC = datetime.timezone.utc
PARIS_SUMMER = datetime.timezone(datetime.timedelta(hours=2))


def outcome(serializer: JSONSerializer, method: str, value: Any) -> tuple[str, Any]:
    try:
        return "ok", getattr(serializer, method)(value)
    except Exception as exc:
        return "error", type(exc)


def typed(value: Any) -> Any:
    """``value`` with every leaf tagged by its type (and floats by their repr), so
    ``1 == 1.0`` and ``0.0 == -0.0`` no longer compare equal."""
    if isinstance(value, dict):
        return ("dict", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    return (type(value).__name__, repr(value))


def assert_same_encoding(value: Any) -> None:
    fast, slow = outcome(FAST, "dumps", value), outcome(STDLIB, "dumps", value)
    assert fast == slow, value
    if fast[0] == "ok":
        assert_same_decoding(fast[1])


def assert_same_decoding(payload: bytes) -> None:
    fast, slow = outcome(FAST, "loads", payload), outcome(STDLIB, "loads", payload)
    assert fast[0] == slow[0], payload
    if fast[0] == "ok":
        assert typed(fast[1]) == typed(slow[1]), payload
    else:
        assert issubclass(fast[1], ValueError) and issubclass(slow[1], ValueError), payload


def test_the_configured_json_serializer_uses_orjson() -> None:
    """orjson is in the test extra: the suite's other tests run the orjson path."""
    assert get_serializer("json").fast  # type: ignore[attr-defined]
    assert not STDLIB.fast


moments = st.datetimes(
    timezones=st.sampled_from(
        [None, UTC, PARIS_SUMMER, datetime.timezone(-datetime.timedelta(hours=9, minutes=30))]
    )
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.text()
    | st.characters().map(lambda c: c * 3)
    | st.decimals(allow_nan=False)
    | moments
    | moments.map(lambda moment: moment.date())
    | st.times(timezones=st.sampled_from([None, UTC]))
    | st.timedeltas()
    | st.uuids()
    | st.text().map(lazy_text)
    | st.text().map(mark_safe)
    | st.sampled_from([*Colour, *Size])
    | st.builds(Point, st.integers())
    | st.binary(max_size=4)
)
keys = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=3)
        | st.dictionaries(st.text(), inner, max_size=3).map(OrderedDict)
    ),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_both_paths_write_the_same_bytes_or_refuse_alike(value: Any) -> None:
    assert_same_encoding(value)


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
).map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@settings(max_examples=1000, deadline=None)
@given(
    json_texts | json_texts.map(lambda text: text.replace(b"1", b"1e-9")) | st.binary(max_size=12)
)
def test_both_paths_read_the_same_values_or_refuse_alike(payload: bytes) -> None:
    assert_same_decoding(payload)


WRITTEN = [
    # What orjson writes differently on its own, and what Django's encoder writes.
    (1e-05, b"1e-05"),
    (1.2345e-7, b"1.2345e-07"),
    ([0.00012345, 5e-324], b"[0.00012345,5e-324]"),
    (1e16, b"1e+16"),
    (2**64, b"18446744073709551616"),
    (-(2**63) - 1, b"-9223372036854775809"),
    ({1: "a", None: "b", 2.5: "c", False: "d"}, b'{"1":"a","null":"b","2.5":"c","false":"d"}'),
    (decimal.Decimal("1.10"), b'"1.10"'),
    (lazy_text("lazy ✓"), '"lazy ✓"'.encode()),
    (mark_safe("<b>"), b'"<b>"'),
    (uuid.UUID(int=7), b'"00000000-0000-0000-0000-000000000007"'),
    (datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), b'"2026-01-02T03:04:05.678Z"'),
    (datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=PARIS_SUMMER), b'"2026-01-02T03:04:05+02:00"'),
    (datetime.datetime(2026, 1, 2, 3, 4, 5, 1000), b'"2026-01-02T03:04:05.001"'),
    (datetime.date(2026, 1, 2), b'"2026-01-02"'),
    (datetime.time(3, 4, 5, 123456), b'"03:04:05.123"'),
    (datetime.timedelta(days=1, seconds=5), b'"P1DT00H00M05S"'),
    ([Colour.RED, Colour.HALF, Colour.TINY, Size.SMALL], b'["red",0.5,1e-09,1]'),
    (
        {"ünï": "✓\u2028", "c": "\x00\x1f\x7f"},
        '{"ünï":"✓\u2028","c":"\\u0000\\u001f\x7f"}'.encode(),
    ),
    ((1, [True, None]), b"[1,[true,null]]"),
]


@pytest.mark.parametrize("serializer", [FAST, STDLIB], ids=["orjson", "stdlib"])
@pytest.mark.parametrize(("value", "payload"), WRITTEN, ids=[repr(p) for _, p in WRITTEN])
def test_each_path_writes_what_djangos_encoder_writes(
    serializer: JSONSerializer, value: Any, payload: bytes
) -> None:
    assert serializer.dumps(value) == payload


REFUSED: list[tuple[Any, type[Exception]]] = [
    (math.nan, ValueError),
    ({"v": [1.0, -math.inf]}, ValueError),
    (Point(1), TypeError),
    (b"bytes", TypeError),
    ({1, 2}, TypeError),
    ("\ud800", UnicodeEncodeError),
]


@pytest.mark.parametrize("serializer", [FAST, STDLIB], ids=["orjson", "stdlib"])
@pytest.mark.parametrize(("value", "error"), REFUSED, ids=repr)
def test_each_path_refuses_alike(serializer: JSONSerializer, value: Any, error: type) -> None:
    with pytest.raises(error):
        serializer.dumps(value)


def test_circular_values_are_refused_alike() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert outcome(FAST, "dumps", loop) == outcome(STDLIB, "dumps", loop) == ("error", ValueError)


READ = [
    (b'{"v":NaN}', None),
    (b"[Infinity]", None),
    (b"-Infinity", None),
    (b"18446744073709551616", 18446744073709551616),
    (b"-9223372036854775809", -9223372036854775809),
    (b"1e400", math.inf),  # as the standard library has always read it
    (b"1E-7", 1e-7),
    (b'"\\ud800"', "\ud800"),
    (b'{"a":1,"a":2}', {"a": 2}),
    ('"ünï"'.encode(), "ünï"),
    (b"\xff", None),
]


@pytest.mark.parametrize("serializer", [FAST, STDLIB], ids=["orjson", "stdlib"])
@pytest.mark.parametrize(("payload", "value"), READ, ids=repr)
def test_each_path_reads_alike(serializer: JSONSerializer, payload: bytes, value: Any) -> None:
    if value is None:
        with pytest.raises(ValueError):
            serializer.loads(payload)
    else:
        assert typed(serializer.loads(payload)) == typed(value)
