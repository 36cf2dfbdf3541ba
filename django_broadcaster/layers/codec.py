"""`Codec`: how the layer's messages cross the bus.

A message is encoded by the serializer of the layer's ``BROADCAST_BACKENDS``
alias. With ``symmetric_encryption_keys``, that encoding is encrypted into a
Fernet token (AES-128-CBC with an HMAC-SHA256, from the ``cryptography``
package) and the token travels as a string: the engine only ever holds
ciphertext, and a token that does not decrypt with one of the keys (forged,
altered, or written with another key) is dropped, counted and logged. The first
key encrypts and every key decrypts, so keys rotate like channels_redis's.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..events import Event
from ..exceptions import MessageTooLarge
from ..front import Broadcast
from .inbox import Message

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

logger = logging.getLogger("django_broadcaster.layers")

#: Mixed into every key before it becomes a Fernet key, so a secret also used
#: elsewhere (as a signing key, say) yields an unrelated key here.
KEY_CONTEXT = b"django-broadcaster channel layer encryption\x00"


def fernet_key(secret: str | bytes) -> bytes:
    """The Fernet key (32 url-safe base64 bytes) derived from one configured secret."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return base64.urlsafe_b64encode(hashlib.sha256(KEY_CONTEXT + raw).digest())


def fernet_for(secrets: Sequence[str | bytes]) -> MultiFernet:
    """A `MultiFernet` encrypting with the first of ``secrets`` and decrypting with any."""
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(fernet_key(secret)) for secret in secrets])


class Codec:
    """Encodes what one `LoopLayer` publishes and decodes what its subscriptions
    receive; ``secrets`` (``symmetric_encryption_keys``) turns encryption on."""

    def __init__(self, front: Broadcast, secrets: Sequence[str | bytes] = ()) -> None:
        self.serializer = front.serializer
        self.alias = front.alias
        self.max_message_bytes = front.max_message_bytes
        self._fernet = fernet_for(secrets) if secrets else None
        #: Messages dropped because they did not decrypt.
        self.undecryptable = 0

    @property
    def encrypts(self) -> bool:
        """Whether messages travel encrypted."""
        return self._fernet is not None

    def _dumps(self, value: object) -> bytes:
        serializer = self.serializer
        try:
            return serializer.dumps(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"the message cannot be encoded as {serializer.name} ({exc}); nothing was sent"
            ) from exc

    def copy(self, message: Message) -> Message:
        """``message`` through the serializer: the value a remote receiver would get,
        and an error now for what could not cross the bus."""
        copied: Message = self.serializer.loads(self._dumps(message))
        return copied

    def encode(self, value: object) -> bytes:
        """The payload to publish for ``value``; `MessageTooLarge` over the alias's
        ``MAX_MESSAGE_BYTES``."""
        payload = self._dumps(value)
        if self._fernet is not None:
            payload = self._dumps(self._fernet.encrypt(payload).decode("ascii"))
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(
                f"the channel layer message is {len(payload):,} bytes encoded, over "
                f"OPTIONS['MAX_MESSAGE_BYTES'] ({self.max_message_bytes:,}) of broadcast "
                f"backend {self.alias!r}; nothing was sent"
            )
        return payload

    def decode(self, event: Event) -> Any:
        """The value sent in ``event``, or ``None`` (logged without its content,
        counted) when it does not decrypt."""
        if self._fernet is None:
            return event.message
        from cryptography.fernet import InvalidToken

        token = event.message
        if not isinstance(token, str):
            return self._drop(event, "it is not encrypted")
        try:
            plaintext = self._fernet.decrypt(token)
        except InvalidToken:
            return self._drop(event, "no key of symmetric_encryption_keys decrypts it")
        try:
            return self.serializer.loads(plaintext)
        except Exception as exc:
            return self._drop(event, f"it decrypts but does not decode ({type(exc).__name__})")

    def _drop(self, event: Event, reason: str) -> None:
        self.undecryptable += 1
        logger.warning(
            "channel layer dropped a message on %r of %r (id %s): %s",
            event.channel,
            self.alias,
            event.id,
            reason,
        )
