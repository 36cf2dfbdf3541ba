"""The key that lets a notification carry its event, and the check of what it carries.

The publish statement computes, inside PostgreSQL (the event id exists only
there), an HMAC-SHA256 (RFC 2104, from the built-in ``sha256()``) of the
``NOTIFY`` channel, the id and the payload under a key derived from Django's
``SECRET_KEY``; the listener hands out such an event without reading the
table only when the MAC checks out. Nobody without the key can make one up or
move one to another id or channel. The two padded keys travel to the server
as statement parameters. No ``SECRET_KEY``: no key, every notification is a
wake-up as before.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac

#: Names this use of ``SECRET_KEY``: a key derived for anything else never matches.
SALT = "django_broadcaster.backends.postgres.notify"
_BLOCK = 64  # SHA-256's block size, in bytes


def _pad(key: bytes, byte: int) -> bytes:
    return bytes(k ^ byte for k in key.ljust(_BLOCK, b"\0"))


class NotifyKey:
    """The HMAC key of one backend's notifications (derived from ``SECRET_KEY``,
    the history table and the ``KEY_PREFIX``)."""

    __slots__ = ("_inner_hash", "_outer_hash", "inner", "outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            raise ValueError("an HMAC-SHA256 key longer than 64 bytes would be hashed first")
        #: ``K XOR ipad`` and ``K XOR opad``: the statement computes
        #: ``sha256(outer || sha256(inner || message))``.
        self.inner = _pad(key, 0x36)
        self.outer = _pad(key, 0x5C)
        # The same, with each padded key hashed once: `verify` copies these (an
        # ``hmac.digest()`` sets up its key again at every call).
        self._inner_hash = hashlib.sha256(self.inner)
        self._outer_hash = hashlib.sha256(self.outer)

    def __repr__(self) -> str:
        return "NotifyKey(***)"

    @classmethod
    def from_settings(cls, table: str, prefix: str) -> NotifyKey | None:
        """The key for ``table`` and ``prefix``; ``None`` without a ``SECRET_KEY``."""
        try:
            secret = settings.SECRET_KEY
        except ImproperlyConfigured:  # empty, or settings not configured
            return None
        if not secret:
            return None
        return cls(salted_hmac(SALT, f"{table}\0{prefix}", secret, algorithm="sha256").digest())

    def head(self, notify: str) -> bytes:
        """``inner`` and the start of the message for the ``NOTIFY`` channel ``notify``;
        the statement appends the id, ``:`` and the payload."""
        return self.inner + notify.encode() + b"@"

    def verify(self, notify: str, event_id: str, mac: str, payload: bytes) -> bool:
        """Whether ``mac`` (hex) is the MAC of ``payload`` as event ``event_id`` (the
        digits as notified) on the ``NOTIFY`` channel ``notify``."""
        inner = self._inner_hash.copy()
        inner.update(b"".join((notify.encode(), b"@", event_id.encode(), b":", payload)))
        outer = self._outer_hash.copy()
        outer.update(inner.digest())
        return hmac.compare_digest(outer.hexdigest(), mac)
