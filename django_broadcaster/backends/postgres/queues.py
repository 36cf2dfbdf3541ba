"""The SQL of `PostgresBackend`'s work queues (the channel layer's normal channels).

A queue is the rows of ``django_broadcaster_queue`` with its name, taken in
order (given-back rows first: highest ``ahead``, then ``id``). Taking deletes
the rows under ``FOR UPDATE SKIP LOCKED``: concurrent takers never get the
same row and never wait for each other. Sending inserts the row and, in the
same statement, publishes the wake-up on the queue's channel exactly as
``PUBLISH`` does (a history row, under the channel's lock, and a ``NOTIFY``),
so receivers learn of it through the listener they already have. Expired rows
are skipped by takers and deleted by retention (`PRUNE_EXPIRED`).

Capacity is counted in the statement's snapshot: senders racing on a nearly
full queue from several connections may together exceed it by one each.
"""

from __future__ import annotations

from psycopg import sql

from .statements import HISTORY_TABLE, LOCK_CLASS, rendered

#: The table of ``django_broadcaster.models.QueuedMessage`` (not imported: see statements).
QUEUE_TABLE = "django_broadcaster_queue"

_QUEUE = sql.Identifier(QUEUE_TABLE)
_LIVE = sql.SQL("queue = %(queue)s AND deadline > clock_timestamp()")
_DEADLINE = sql.SQL("clock_timestamp() + make_interval(secs => %(expiry)s)")

#: Append a message unless the queue holds ``capacity`` live ones, and publish the
#: wake-up: one row ``(id, _)`` when queued, none when full.
ENQUEUE = rendered(
    sql.SQL(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({cls}::int4, %(key)s::int4)), "
        "live AS MATERIALIZED (SELECT count(*) AS n FROM"
        " (SELECT 1 FROM {queue}, lock WHERE {live} LIMIT %(capacity)s) AS counted), "
        "item AS (INSERT INTO {queue} (queue, payload, deadline)"
        " SELECT %(queue)s, %(payload)b, {deadline} FROM live WHERE n < %(capacity)s"
        " RETURNING id), "
        "wake AS (INSERT INTO {table} (channel, payload) SELECT %(queue)s, %(wake)b FROM item"
        " RETURNING id) "
        "SELECT id, pg_notify(%(notify)s, '@' || id) FROM wake"
    ).format(
        cls=sql.Literal(LOCK_CLASS),
        queue=_QUEUE,
        live=_LIVE,
        deadline=_DEADLINE,
        table=sql.Identifier(HISTORY_TABLE),
    )
)

#: Take (delete) up to ``count`` live messages in queue order: ``(ahead, id, payload)``.
DEQUEUE = rendered(
    sql.SQL(
        "DELETE FROM {queue} WHERE id = ANY(ARRAY(SELECT id FROM {queue} WHERE {live}"
        " ORDER BY ahead DESC, id LIMIT %(count)s FOR UPDATE SKIP LOCKED))"
        " RETURNING ahead, id, payload"
    ).format(queue=_QUEUE, live=_LIVE)
)

#: Put ``payloads`` back ahead of everything queued, in their order.
RESTORE = rendered(
    sql.SQL(
        "INSERT INTO {queue} (queue, payload, deadline, ahead)"
        " SELECT %(queue)s, u.payload, {deadline},"
        " (extract(epoch FROM statement_timestamp()) * 1000000)::int8"
        " FROM unnest(%(payloads)b::bytea[]) WITH ORDINALITY AS u(payload, n) ORDER BY u.n"
    ).format(queue=_QUEUE, deadline=_DEADLINE)
)

#: Delete up to ``batch`` messages past their deadline, from any queue.
PRUNE_EXPIRED = rendered(
    sql.SQL(
        "DELETE FROM {queue} WHERE id = ANY(ARRAY(SELECT id FROM {queue}"
        " WHERE deadline <= clock_timestamp() LIMIT %(batch)s))"
    ).format(queue=_QUEUE)
)
