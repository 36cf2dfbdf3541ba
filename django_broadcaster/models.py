"""The tables of `PostgresBackend` (created by ``manage.py migrate``).

The schema is portable so ``migrate`` also succeeds on databases that never
hold broadcast history (SQLite, MySQL); only PostgreSQL databases named by a
``PostgresBackend`` ``LOCATION`` ever get rows.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

#: Also spelled out in ``backends/postgres/statements.py``, which must not import models.
HISTORY_TABLE = "django_broadcaster_event"
PRUNED_TABLE = "django_broadcaster_pruned"
QUEUE_TABLE = "django_broadcaster_queue"


class HistoryEvent(models.Model):
    """One published event: its id is the event id subscribers resume from."""

    id = models.BigAutoField(primary_key=True)
    #: The engine-side channel name (``KEY_PREFIX`` folded in).
    channel = models.CharField(max_length=255)
    #: The encoded message (JSON or msgpack bytes).
    payload = models.BinaryField()
    created = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = HISTORY_TABLE
        indexes = [models.Index(fields=["channel", "id"], name="django_broadcaster_chan_id")]
        verbose_name = "broadcast history event"

    def __str__(self) -> str:
        return f"{self.channel} #{self.id}"


class PrunedHistory(models.Model):
    """The highest event id retention deleted from one channel's history, written by
    the statement that deleted it: a ``since=`` position below it has lost events."""

    #: The engine-side channel name, as in `HistoryEvent.channel`.
    channel = models.CharField(max_length=255, primary_key=True)
    last_id = models.BigIntegerField()

    class Meta:
        db_table = PRUNED_TABLE
        verbose_name = "pruned broadcast history"

    def __str__(self) -> str:
        return f"{self.channel} pruned up to #{self.last_id}"


class QueuedMessage(models.Model):
    """One message waiting in a work queue (a channel layer's normal channel name):
    taken (deleted) by exactly one receiver, or dropped once past its deadline."""

    id = models.BigAutoField(primary_key=True)
    #: The engine-side queue name (``KEY_PREFIX`` folded in).
    queue = models.CharField(max_length=255)
    #: The encoded message.
    payload = models.BinaryField()
    deadline = models.DateTimeField()
    #: Messages given back to the queue (receiver gone) go first: highest ``ahead``
    #: first, then in ``id`` order.
    ahead = models.BigIntegerField(db_default=0)

    class Meta:
        db_table = QUEUE_TABLE
        indexes = [
            models.Index(fields=["queue", "-ahead", "id"], name="django_broadcaster_queue_next")
        ]
        verbose_name = "queued channel layer message"

    def __str__(self) -> str:
        return f"{self.queue} #{self.id}"
