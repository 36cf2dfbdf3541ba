"""Message authenticity (``OPTIONS["SIGNING_KEYS"]``) and the decoding of what arrives.

With signing keys, every payload leaves as `MARK`, a 44-character base64
HMAC-SHA256 tag and the payload itself. The tag covers the channel name and
the payload, so an event replayed onto another channel fails too; the newest
key signs and every listed key verifies, so keys rotate without a flag day.
The header is ASCII: a text payload stays text (PostgreSQL's ``NOTIFY`` carries
it as is) and a binary one (msgpack) travels as the backend carries any bytes.

A hub decodes each raw payload through its `Decoder`: verified first (when keys
are set), then deserialized. What fails either step is dropped, counted and
logged with its channel, alias and id, never its content.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
from collections.abc import Sequence

from .events import Event
from .serializers import Serializer

logger = logging.getLogger("django_broadcaster")

#: What a signed payload starts with (format version 1).
MARK = b"#1"
#: Size of the base64 tag (a 32-byte HMAC-SHA256) that follows `MARK`.
TAG_SIZE = 44
_HEADER = len(MARK) + TAG_SIZE


class Unverified(Exception):
    """A payload failed verification; the message says why, never what it held."""


#: HMAC-SHA256 of one key, as its two padded-key hash states (RFC 2104): copying
#: them is about a third cheaper per event than copying an ``hmac.HMAC``.
_Mac = tuple["hashlib._Hash", "hashlib._Hash"]


def _mac(key: bytes) -> _Mac:
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    return inner, outer


class Signer:
    """Signs with the first of ``keys`` (the newest) and verifies with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._macs = [_mac(key) for key in keys]

    @staticmethod
    def _tag(mac: _Mac, channel: str, payload: bytes) -> bytes:
        inner, outer = mac[0].copy(), mac[1].copy()
        # A channel name never holds NUL: the boundary is unambiguous.
        inner.update(channel.encode() + b"\x00")
        inner.update(payload)
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False)

    def sign(self, channel: str, payload: bytes) -> bytes:
        """``payload`` as it travels on ``channel``: `MARK`, tag, payload."""
        return MARK + self._tag(self._macs[0], channel, payload) + payload

    def verify(self, channel: str, signed: bytes) -> bytes:
        """The payload `sign` wrapped for ``channel``; `Unverified` when any key
        would not have produced it on this channel."""
        if len(signed) < _HEADER or not signed.startswith(MARK):
            raise Unverified("it carries no signature")
        tag, payload = signed[len(MARK) : _HEADER], signed[_HEADER:]
        for mac in self._macs:
            if hmac.compare_digest(self._tag(mac, channel, payload), tag):
                return payload
        raise Unverified(
            "its signature matches none of SIGNING_KEYS (forged, altered, replayed from "
            "another channel, or signed with a key not listed)"
        )


class Decoder:
    """Turns one hub's raw payloads into `Event` values, counting what it drops:
    ``forged`` (failed verification) and ``undecodable`` (failed deserialization)."""

    def __init__(self, alias: str, serializer: Serializer, signer: Signer | None) -> None:
        self.alias = alias
        self.serializer = serializer
        self.signer = signer
        self._loads = serializer.loads
        self.forged = 0
        self.undecodable = 0

    def decode(self, channel: str, payload: bytes, event_id: str | None) -> Event | None:
        """The `Event` for a raw payload, or ``None`` (logged, counted) when it fails
        verification or does not decode."""
        if self.signer is not None:
            try:
                payload = self.signer.verify(channel, payload)
            except Unverified as exc:
                self.forged += 1
                logger.warning(
                    "dropped an event on channel %r of %r (id %s): %s",
                    channel,
                    self.alias,
                    event_id,
                    exc,
                )
                return None
        try:
            message = self._loads(payload)
        except Exception as exc:
            self.undecodable += 1
            logger.warning(
                "skipped an undecodable %s payload on channel %r of %r (id %s, %d bytes): %s",
                self.serializer.name,
                channel,
                self.alias,
                event_id,
                len(payload),
                exc,
            )
            return None
        return Event(channel, message, event_id)
