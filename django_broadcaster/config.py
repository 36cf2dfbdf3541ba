"""Reading ``BROADCAST_BACKENDS``: one validation used by the handler and the system checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.conf import settings
from django.utils.module_loading import import_string

from .backends.base import BackendConfig, BaseBackend
from .exceptions import ConfigError
from .front import Broadcast
from .masking import mask_text
from .options import is_seconds, is_whole_number, option_error
from .serializers import get_serializer

T = TypeVar("T")

DEFAULT_ALIAS = "default"
MEMORY_BACKEND = "django_broadcaster.backends.memory.MemoryBackend"
ENTRY_KEYS = ("BACKEND", "LOCATION", "OPTIONS", "KEY_PREFIX")
#: OPTIONS every backend accepts, with their defaults.
COMMON_OPTIONS: Mapping[str, Any] = {
    "MAX_QUEUE": 1000,
    "SERIALIZER": "json",
    "TIMEOUT": 5.0,
    "MAX_MESSAGE_BYTES": 1024 * 1024,
    "SIGNING_KEYS": None,
}
#: Which extra installs the client library a backend module imports.
EXTRAS = {"redis": "redis", "psycopg": "postgres", "msgpack": "msgpack", "channels": "channels"}


def _error(message: str, check_id: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, check_id=f"django_broadcaster.{check_id}", hint=hint)


def configured_backends() -> dict[str, Any]:
    """``settings.BROADCAST_BACKENDS``, or one memory backend when it is not set."""
    backends = getattr(settings, "BROADCAST_BACKENDS", None)
    if backends is None:
        return {DEFAULT_ALIAS: {"BACKEND": MEMORY_BACKEND}}
    if not isinstance(backends, dict):
        raise _error(
            f"BROADCAST_BACKENDS must be a dict of aliases, not {type(backends).__name__}",
            "E001",
            f'e.g. BROADCAST_BACKENDS = {{"default": {{"BACKEND": "{MEMORY_BACKEND}"}}}}',
        )
    if DEFAULT_ALIAS not in backends:
        raise _error(
            "BROADCAST_BACKENDS has no 'default' alias",
            "E009",
            "add a 'default' entry; broadcast and subscribe() without an alias use it",
        )
    return backends


def import_backend(path: object) -> type[BaseBackend]:
    if not isinstance(path, str) or not path:
        raise _error(
            f"BACKEND must be a dotted path, not {path!r}", "E002", f"e.g. {MEMORY_BACKEND!r}"
        )
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        missing = exc.name or ""
        if missing in EXTRAS:
            raise _error(
                f"BACKEND {path!r} needs the {missing!r} package, which is not installed",
                "E004",
                f'pip install "django-broadcast-bus[{EXTRAS[missing]}]"',
            ) from exc
        raise _error(
            f"BACKEND {path!r} cannot be imported: {exc}",
            "E002",
            "check the spelling; shipped backends live in django_broadcaster.backends",
        ) from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, BaseBackend)):
        raise _error(
            f"BACKEND {path!r} is not a subclass of django_broadcaster.backends.base.BaseBackend",
            "E003",
        )
    return backend_class


def create_broadcast(alias: str, entry: object) -> Broadcast:
    """Validate one ``BROADCAST_BACKENDS`` entry and build its `Broadcast`.

    Raises the first of the entry's problems as a `ConfigError` (an
    ``ImproperlyConfigured``) naming what is wrong; the system check
    (`read_entry`) reports all of them.
    """
    front, problems = read_entry(alias, entry)
    if front is None:
        raise problems[0]
    return front


def read_entry(alias: str, entry: object) -> tuple[Broadcast | None, list[ConfigError]]:
    """One ``BROADCAST_BACKENDS`` entry: its `Broadcast`, or ``None`` and every problem
    found (each a `ConfigError` naming the entry, with its check id and hint)."""
    where = f"BROADCAST_BACKENDS[{alias!r}]"
    if not isinstance(entry, dict):
        return None, [_error(f"{where} must be a dict, not {type(entry).__name__}", "E001")]
    problems = _Problems(where)
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        problems.add(
            _error(
                f"{where} has unknown key(s): {', '.join(map(str, unknown))}",
                "E005",
                f"allowed keys: {', '.join(ENTRY_KEYS)}",
            )
        )
    backend_class = problems.attempt(lambda: import_backend(entry.get("BACKEND")))
    location = entry.get("LOCATION", "")
    if (
        isinstance(location, (list, tuple))
        and location
        and all(
            isinstance(url, str) and url and not any(c.isspace() for c in url) for url in location
        )
    ):
        # Several URLs (a Redis Cluster's seed nodes): one space-separated string.
        location = " ".join(location)
    if not isinstance(location, str):
        problems.add(
            _error(
                f"{where}['LOCATION'] must be a string (or a list of URLs without spaces), "
                f"not {mask_text(repr(location))}",
                "E007",
            )
        )
    key_prefix = entry.get("KEY_PREFIX", "")
    if not isinstance(key_prefix, str):
        problems.add(_error(f"{where}['KEY_PREFIX'] must be a string, not {key_prefix!r}", "E005"))
    options = entry.get("OPTIONS", {})
    if not isinstance(options, dict):
        problems.add(
            _error(f"{where}['OPTIONS'] must be a dict, not {type(options).__name__}", "E006")
        )
        options = {}
    allowed = {**COMMON_OPTIONS, **(backend_class.default_options if backend_class else {})}
    unknown = sorted(set(options) - set(allowed))
    if backend_class is not None and unknown:
        problems.add(
            _error(
                f"{where}['OPTIONS'] has unknown key(s) for {backend_class.__name__}: "
                f"{', '.join(map(str, unknown))}",
                "E006",
                f"allowed: {', '.join(sorted(allowed))}",
            )
        )
    common = {**COMMON_OPTIONS, **{k: v for k, v in options.items() if k in COMMON_OPTIONS}}
    max_queue, timeout = common["MAX_QUEUE"], common["TIMEOUT"]
    max_message_bytes = common["MAX_MESSAGE_BYTES"]
    if not is_whole_number(max_queue, 1):
        problems.add(option_error("MAX_QUEUE", "a whole number >= 1", max_queue))
    if not is_seconds(timeout):
        problems.add(option_error("TIMEOUT", "a number of seconds > 0", timeout))
    if not is_whole_number(max_message_bytes, 1):
        problems.add(
            option_error("MAX_MESSAGE_BYTES", "a whole number of bytes >= 1", max_message_bytes)
        )
    signing_keys = problems.attempt(lambda: signing_keys_of(common["SIGNING_KEYS"]))
    serializer = problems.attempt(lambda: get_serializer(common["SERIALIZER"]))
    backend_options = {k: v for k, v in options.items() if k not in COMMON_OPTIONS}
    if backend_class is not None:
        if isinstance(location, str):
            problems.attempt(lambda: backend_class.check_location(location))
        known = {k: v for k, v in backend_options.items() if k in allowed}
        defaults = backend_class.default_options
        found = len(problems.errors)
        # Each option on its own first (check_options stops at its first problem),
        # then, when each is fine alone, all of them together (combinations).
        for key, value in known.items():
            problems.attempt(
                lambda key=key, value=value: backend_class.check_options(  # type: ignore[misc]
                    {**defaults, key: value}
                )
            )
        if len(problems.errors) == found:
            problems.attempt(lambda: backend_class.check_options({**defaults, **known}))
    if problems.errors or backend_class is None or signing_keys is None or serializer is None:
        return None, problems.errors
    config = BackendConfig(alias, backend_class, location, backend_options, key_prefix)
    front = Broadcast(
        config,
        serializer=serializer,
        max_queue=max_queue,
        timeout=float(timeout),
        max_message_bytes=max_message_bytes,
        signing_keys=signing_keys,
    )
    return front, []


class _Problems:
    """The problems found in one entry, each named with the entry (``where``)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        named = error.naming(self.where)
        named.__cause__ = error.__cause__
        self.errors.append(named)

    def attempt(self, check: Callable[[], T]) -> T | None:
        """``check()``, or ``None`` with its `ConfigError` added."""
        try:
            return check()
        except ConfigError as exc:
            self.add(exc)
            return None


def signing_keys_of(value: object) -> tuple[bytes, ...]:
    """``OPTIONS["SIGNING_KEYS"]`` as bytes, newest first; ``()`` when not set."""
    if value is None:
        return ()
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(key, (str, bytes)) and len(key) >= 16 for key in value)
    ):
        return tuple(key.encode() if isinstance(key, str) else key for key in value)
    # Never echo the value: it is a secret.
    raise option_error(
        "SIGNING_KEYS",
        "a non-empty list of secret keys (str or bytes, 16 characters or more), newest first",
        "<hidden>" if isinstance(value, (list, tuple, str, bytes)) else type(value).__name__,
        hint="e.g. [os.environ['BROADCAST_SIGNING_KEY']]; add a new key in front to rotate",
    )
