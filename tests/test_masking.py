"""Secrets in ``BROADCAST_BACKENDS`` stay out of ``repr``, system checks and Django's
debug page (``django_broadcaster.debug.SafeExceptionReporterFilter``)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.checks import run_checks
from django.test import RequestFactory, override_settings
from django.views.debug import (
    ExceptionReporter,
    get_default_exception_reporter_filter,
    technical_500_response,
)

from django_broadcaster import broadcasts
from django_broadcaster.backends.base import BackendConfig
from django_broadcaster.backends.redis import RedisStreamBackend
from django_broadcaster.config import create_broadcast
from django_broadcaster.masking import mask_options, mask_text

REDIS = "django_broadcaster.backends.redis.RedisStreamBackend"
POSTGRES = "django_broadcaster.backends.postgres.PostgresBackend"
SIGNING_KEY = "signing-s3cret-0123456789"
SECRETS = ("loc-s3cret", "kw-s3cret", "nested-s3cret", SIGNING_KEY, "query-s3cret")
UPSTREAM = "redis://:loc-s3cret@10.0.0.1"  # a request header (request.META)
BACKENDS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": REDIS,
        "LOCATION": "redis://:loc-s3cret@127.0.0.1:6379/0",
        "OPTIONS": {
            "CONNECTION_KWARGS": {
                "username": "bob",
                "password": "kw-s3cret",
                "credential_provider": {"token": "nested-s3cret"},
            },
            "SIGNING_KEYS": [SIGNING_KEY],
        },
    },
    "pg": {
        "BACKEND": POSTGRES,
        "LOCATION": "postgresql://postgres@127.0.0.1:5432/test?password=query-s3cret",
    },
}


def assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} in:\n{text}"


def test_backend_config_repr_masks_every_secret_option() -> None:
    options: dict[str, Any] = {
        "CONNECTION_KWARGS": {
            "username": "bob",
            "password": "kw-s3cret",
            "ssl_password": "kw-s3cret",
            "retry_settings": [{"api_token": "nested-s3cret"}],
            "sentinel_url": "redis://:loc-s3cret@sentinel:26379",
        },
        "SIGNING_KEYS": [SIGNING_KEY],
        "MAXLEN": 10,
    }
    config = BackendConfig(
        "default", RedisStreamBackend, "redis://:loc-s3cret@h:6379/0", options, "prefix"
    )
    text = repr(config)
    assert_no_secret(text)
    # What is not secret is still shown.
    for shown in ("'bob'", "'MAXLEN': 10", "redis://:***@h:6379/0", "sentinel:26379", "prefix"):
        assert shown in text, text
    assert options["CONNECTION_KWARGS"]["password"] == "kw-s3cret"  # masked copy only


def test_repr_of_a_configured_alias_and_its_backend() -> None:
    front = create_broadcast("default", BACKENDS["default"])
    backend = front.config.backend_class(front.config)
    for text in (repr(front), repr(front.config), repr(backend), repr(front.hubs.settings)):
        assert_no_secret(text)


def test_mask_text_and_mask_options() -> None:
    assert mask_text("at redis://u:p%40ss@[::1]:6379/0.") == "at redis://u:***@[::1]:6379/0."
    assert mask_text("host=h password=pw user=u") == "host=h password=*** user=u"
    assert mask_text("Conn(password='a b')") == "Conn(password=***)"
    assert mask_text("unix:///run/redis.sock plain text") == "unix:///run/redis.sock plain text"
    assert mask_options(({"Passwd": 1}, ["x"])) == ({"Passwd": "***"}, ["x"])


def test_system_check_messages_hold_no_secret() -> None:
    bad = {
        "default": {
            **BACKENDS["default"],
            "OPTIONS": {"CONNECTION_KWARGS": {"password": "kw-s3cret", "protocol": 3}},
        },
        "location": {"BACKEND": REDIS, "LOCATION": "redis://:loc-s3cret@h:port/0"},
        "keys": {"BACKEND": REDIS, "OPTIONS": {"SIGNING_KEYS": ["nested-s3cret"]}},
    }
    with override_settings(BROADCAST_BACKENDS=bad):
        messages = run_checks(tags=["django_broadcaster"])
    # "keys" has two problems: its SIGNING_KEYS and its missing LOCATION.
    assert len(messages) == 4, messages
    assert_no_secret("\n".join(f"{m.msg} {m.hint}" for m in messages))


# -- the debug page ------------------------------------------------------------------


def failing_view() -> None:
    """A view's frame holding a configuration in local variables."""
    entry = BACKENDS["default"]
    location = entry["LOCATION"]
    config = broadcasts["pg"].config
    kwargs = dict(entry["OPTIONS"]["CONNECTION_KWARGS"])
    raise RuntimeError(f"boom ({len(location)}, {config.alias}, {len(kwargs)})")


def debug_pages(filter_path: str) -> tuple[str, str]:
    """The technical 500 page (HTML) and the plain-text report of `failing_view`'s error."""
    request = RequestFactory().get("/", HTTP_X_UPSTREAM=UPSTREAM)
    with override_settings(
        DEBUG=True, BROADCAST_BACKENDS=BACKENDS, DEFAULT_EXCEPTION_REPORTER_FILTER=filter_path
    ):
        get_default_exception_reporter_filter.cache_clear()  # type: ignore[attr-defined]
        try:
            failing_view()
        except RuntimeError:
            exc_info = sys.exc_info()
            html = technical_500_response(request, *exc_info).content.decode()
            text = ExceptionReporter(request, *exc_info).get_traceback_text()
        finally:  # Django caches the filter of DEFAULT_EXCEPTION_REPORTER_FILTER
            get_default_exception_reporter_filter.cache_clear()  # type: ignore[attr-defined]
    return html, text


def test_debug_page_shows_no_broadcast_secret() -> None:
    # Django's own filter hides CONNECTION_KWARGS["password"], not a password in LOCATION.
    html, _ = debug_pages("django.views.debug.SafeExceptionReporterFilter")
    assert "loc-s3cret" in html

    html, text = debug_pages("django_broadcaster.debug.SafeExceptionReporterFilter")
    for page in (html, text):
        assert_no_secret(page)
        assert "BROADCAST_BACKENDS" in page
        assert "127.0.0.1:6379/0" in page  # the masked LOCATION is still shown
        assert "boom" in page
    assert "failing_view" in html and "kwargs" in html  # the frame's variables are shown
