"""Settings for the test suite. Services are on loopback; override with env vars."""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "channels",
    "django_broadcaster",
]
REDIS_URL = os.environ.get("BROADCASTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "BROADCASTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        # Separate names let several test runs share one PostgreSQL server.
        "TEST": {"NAME": os.environ.get("BROADCASTER_TEST_DB_NAME", "test_django_broadcaster")},
    }
}
ROOT_URLCONF = "tests.support.urls"
ASGI_APPLICATION = "tests.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
