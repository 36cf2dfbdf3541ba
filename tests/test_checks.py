"""System checks report every ``BROADCAST_BACKENDS`` problem of every alias in one run."""

from __future__ import annotations

import pytest
from django.core.checks import Error, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_broadcaster import broadcasts

MEMORY = "django_broadcaster.backends.memory.MemoryBackend"
REDIS = "django_broadcaster.backends.redis.RedisBackend"


def check_errors(backends: object) -> list[Error]:
    with override_settings(BROADCAST_BACKENDS=backends):
        return [m for m in run_checks(tags=["django_broadcaster"]) if isinstance(m, Error)]


def test_every_problem_of_one_entry_is_reported_at_once() -> None:
    options = {"TIMEOUT": 0, "MAX_QUEUE": "many", "HISTORY_SIZE": -1, "COLOUR": "blue"}
    errors = check_errors({"default": {"BACKEND": MEMORY, "OPTIONS": options, "PORT": 1}})
    texts = [error.msg for error in errors]
    assert len(errors) == 5, texts
    assert all(text.startswith("BROADCAST_BACKENDS['default']") for text in texts)
    for name in ("PORT", "COLOUR", "'TIMEOUT'", "'MAX_QUEUE'", "'HISTORY_SIZE'"):
        assert sum(name in text for text in texts) == 1, (name, texts)
    assert [error.id for error in errors] == [
        "django_broadcaster.E005",
        "django_broadcaster.E006",
        "django_broadcaster.E006",
        "django_broadcaster.E006",
        "django_broadcaster.E006",
    ]
    assert errors[0].hint and "allowed keys" in errors[0].hint


def test_every_alias_is_checked() -> None:
    errors = check_errors(
        {
            "default": {"BACKEND": MEMORY, "LOCATION": 5, "KEY_PREFIX": 7},
            "cache": {"BACKEND": "no.such.Backend", "OPTIONS": {"TIMEOUT": -1}},
            "live": {"BACKEND": REDIS, "LOCATION": "http://127.0.0.1/"},
            "fine": {"BACKEND": MEMORY},
        }
    )
    found = sorted((error.msg.split("]")[0], error.id) for error in errors)
    assert found == [
        ("BROADCAST_BACKENDS['cache'", "django_broadcaster.E002"),
        ("BROADCAST_BACKENDS['cache'", "django_broadcaster.E006"),
        ("BROADCAST_BACKENDS['default'", "django_broadcaster.E005"),
        ("BROADCAST_BACKENDS['default'", "django_broadcaster.E007"),
        ("BROADCAST_BACKENDS['live'", "django_broadcaster.E007"),
    ]


def test_first_use_raises_the_first_problem() -> None:
    backends = {"default": {"BACKEND": MEMORY, "OPTIONS": {"TIMEOUT": 0, "MAX_QUEUE": 0}}}
    first = r"\['default'\]: OPTIONS\['MAX_QUEUE'\]"
    with (
        override_settings(BROADCAST_BACKENDS=backends),
        pytest.raises(ImproperlyConfigured, match=first),
    ):
        broadcasts["default"]


def test_every_bad_option_of_one_backend_is_reported_at_once() -> None:
    """A backend's own check_options stops at its first problem; each option is
    checked on its own, so all of them show in one run."""
    streams = "django_broadcaster.backends.redis.RedisStreamBackend"
    options = {"MAXLEN": 0, "IDLE_RETENTION": "a day", "CONNECTION_KWARGS": "x"}
    errors = check_errors({"default": {"BACKEND": streams, "OPTIONS": options}})
    texts = [error.msg for error in errors]
    for name in ("'MAXLEN'", "'IDLE_RETENTION'", "CONNECTION_KWARGS"):
        assert sum(name in text for text in texts) == 1, (name, texts)


def test_options_wrong_only_together_are_still_reported() -> None:
    postgres = "django_broadcaster.backends.postgres.PostgresBackend"
    options = {"HISTORY_SIZE": None, "HISTORY_MAX_AGE": None}  # each fine alone
    location = "postgresql://u@127.0.0.1/db"
    errors = check_errors(
        {"default": {"BACKEND": postgres, "LOCATION": location, "OPTIONS": options}}
    )
    assert [error.id for error in errors] == ["django_broadcaster.E006"], errors
