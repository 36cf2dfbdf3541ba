"""``OPTIONS["LIVENESS_INTERVAL"]``: checked like every option, on the backends that probe."""

from __future__ import annotations

import pytest

from django_broadcaster.config import create_broadcast
from django_broadcaster.exceptions import ConfigError

PROBING = {
    "redis": ("django_broadcaster.backends.redis.RedisBackend", "redis://127.0.0.1:6379/0"),
    "postgres": (
        "django_broadcaster.backends.postgres.PostgresBackend",
        "postgresql://postgres@127.0.0.1:5432/test",
    ),
}


@pytest.mark.parametrize("backend", list(PROBING))
@pytest.mark.parametrize("value", [0, -1, "5", True, [5]])
def test_a_bad_interval_is_one_clear_error(backend: str, value: object) -> None:
    path, location = PROBING[backend]
    entry = {"BACKEND": path, "LOCATION": location, "OPTIONS": {"LIVENESS_INTERVAL": value}}
    with pytest.raises(ConfigError) as raised:
        create_broadcast("default", entry)
    message = str(raised.value)
    assert "OPTIONS['LIVENESS_INTERVAL'] must be a number of seconds > 0, or None" in message
    assert repr(value) in message


@pytest.mark.parametrize("backend", list(PROBING))
@pytest.mark.parametrize("value", [None, 0.25, 30])
def test_seconds_or_none_are_accepted(backend: str, value: object) -> None:
    path, location = PROBING[backend]
    entry = {"BACKEND": path, "LOCATION": location, "OPTIONS": {"LIVENESS_INTERVAL": value}}
    assert create_broadcast("default", entry).config.options["LIVENESS_INTERVAL"] == value


def test_redis_streams_has_its_own_deadline() -> None:
    entry = {
        "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
        "LOCATION": "redis://127.0.0.1:6379/0",
        "OPTIONS": {"LIVENESS_INTERVAL": 1},
    }
    with pytest.raises(ConfigError, match="unknown key"):
        create_broadcast("default", entry)
