"""Settings for the chat demo.

Everything that changes between runs comes from the environment:

``BROADCAST_URL``
    unset: the in-memory backend (one process, no service needed);
    ``redis://...``: Redis Streams (several hosts, history);
    ``postgresql://...``: PostgreSQL LISTEN/NOTIFY (several hosts, history); this
    database also becomes Django's database, where ``migrate`` creates the history table.
``BROADCAST_KEY_PREFIX``
    namespaces channel names on the backend (default ``testproject``).
``DJANGO_SQLITE_PATH``
    the SQLite file used when the database is not PostgreSQL (default ``db.sqlite3`` here).
``DJANGO_DEBUG``
    ``1`` turns ``DEBUG`` on (off by default). The debug page then goes through
    ``django_broadcaster.debug.SafeExceptionReporterFilter``, which masks the
    password in ``LOCATION``; the URL itself is kept in a lowercase variable,
    which Django does not list among the settings.
``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS``
    the usual; the defaults suit a demo on loopback, not production.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "testproject-insecure-demo-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
DEFAULT_EXCEPTION_REPORTER_FILTER = "django_broadcaster.debug.SafeExceptionReporterFilter"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "channels",
    "django_broadcaster",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# -- the broadcast backend, chosen by BROADCAST_URL ---------------------------


def postgres_database(url: str) -> dict[str, object]:
    """A ``DATABASES`` entry for a ``postgresql://user:password@host:port/name?options`` URL."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


# Lowercase: not settings, so the debug page does not list them (the URL may hold a password).
broadcast_url = os.environ.get("BROADCAST_URL", "").strip()
key_prefix = os.environ.get("BROADCAST_KEY_PREFIX", "testproject")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

if not broadcast_url:
    BROADCAST_BACKENDS = {
        "default": {"BACKEND": "django_broadcaster.backends.memory.MemoryBackend"},
    }
elif broadcast_url.startswith(("redis://", "rediss://", "unix://")):
    BROADCAST_BACKENDS = {
        "default": {
            "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
            "LOCATION": broadcast_url,
            "KEY_PREFIX": key_prefix,
        },
    }
elif broadcast_url.startswith(("postgresql://", "postgres://")):
    # The history table is created by `manage.py migrate`, so this database is
    # also Django's: the backend's LOCATION names the DATABASES alias.
    DATABASES["default"] = postgres_database(broadcast_url)
    BROADCAST_BACKENDS = {
        "default": {
            "BACKEND": "django_broadcaster.backends.postgres.PostgresBackend",
            "LOCATION": "default",
            "KEY_PREFIX": key_prefix,
        },
    }
else:
    raise ImproperlyConfigured(
        "BROADCAST_URL must be empty (memory), redis://... or postgresql://..., "
        f"not {broadcast_url.split('://', 1)[0]}://..."
    )

# Channels rides on the same bus: a group name is a broadcast channel name.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "django_broadcaster.layers.BroadcastChannelLayer",
        "CONFIG": {"using": "default"},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_broadcaster": {"handlers": ["console"], "level": "INFO"}},
}
