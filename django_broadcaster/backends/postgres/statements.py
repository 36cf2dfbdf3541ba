"""The SQL of `PostgresBackend`, composed once.

Channel names reach PostgreSQL only as parameters or quoted identifiers,
never as SQL text. The statements taking per-channel advisory locks use the
class key `LOCK_CLASS` and a channel's `ChannelNames.lock_key`. Fixed
statements are kept as the bytes psycopg sends (see `rendered`): a composed
one would be rendered again at every execute.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

#: The tables of ``django_broadcaster.models.HistoryEvent`` and ``PrunedHistory`` (not
#: imported: this package may be imported before the app registry is ready).
HISTORY_TABLE = "django_broadcaster_event"
PRUNED_TABLE = "django_broadcaster_pruned"
#: First key of the per-channel advisory locks ("BRDC").
LOCK_CLASS = 0x42524443

_TABLE = sql.Identifier(HISTORY_TABLE)
_PRUNED = sql.Identifier(PRUNED_TABLE)


def rendered(statement: sql.Composable) -> bytes:
    """``statement`` as psycopg sends it, rendered once. Only for fixed text (table
    names, literals, placeholders): ASCII, so the same bytes in any client encoding."""
    text = statement.as_bytes(None)
    if not text.isascii():
        raise ValueError("only an ASCII statement is rendered ahead of its connection")
    return text


_LOCK_CHANNELS = sql.SQL(
    "SELECT count(pg_advisory_xact_lock({cls}::int4, k)) FROM"
    " (SELECT DISTINCT k FROM unnest(%(keys)s::int4[]) AS k ORDER BY k) AS s"
).format(cls=sql.Literal(LOCK_CLASS))
#: Take the publish locks of ``keys`` until the transaction ends.
LOCK_CHANNELS = rendered(_LOCK_CHANNELS)


def _notification(event_id: str, payload: str, inline: str, head: str, outer: str) -> sql.Composed:
    """The notification of event ``event_id``: ``@<id>`` when ``inline`` (the payload's
    base64) is ``NULL``, else ``@<id>:<mac>:<inline>``, the MAC being the HMAC-SHA256
    of ``<notify>@<id>:<payload>``: ``sha256(outer || sha256(head || id || ':' ||
    payload))``, ``head`` being the inner key and ``<notify>@`` (see `sealing`)."""
    return sql.SQL(
        "CASE WHEN {inline}::text IS NULL THEN '@' || {id} ELSE '@' || {id} || ':' ||"
        " encode(sha256({outer}::bytea || sha256({head}::bytea"
        " || convert_to({id} || ':', 'UTF8') || {payload})), 'hex') || ':' || {inline} END"
    ).format(
        id=sql.SQL(event_id),
        payload=sql.SQL(payload),
        inline=sql.SQL(inline),
        head=sql.SQL(head),
        outer=sql.SQL(outer),
    )


#: Insert one event under its channel's lock and notify it: ``(id, _)``. Sent by
#: `round_trip.Statement`, so its parameters are numbered: the lock key, the
#: channel, the payload, the ``NOTIFY`` channel, then ``inline`` (the payload's
#: base64), ``head`` and ``outer``, all three ``NULL`` for a wake-up.
PUBLISH = rendered(
    sql.SQL(
        "WITH lock AS MATERIALIZED"
        " (SELECT pg_advisory_xact_lock({cls}::int4, $1::int4)), "
        "row AS (INSERT INTO {table} (channel, payload) "
        "SELECT $2::text, $3::bytea FROM lock RETURNING id) "
        "SELECT id, pg_notify($4::text, {note}) FROM row"
    ).format(
        table=_TABLE,
        cls=sql.Literal(LOCK_CLASS),
        note=_notification("id", "$3::bytea", "$5::text", "$6::bytea", "$7::bytea"),
    )
)

#: Several events in one statement: locks are taken in key order (no deadlock
#: between batches), rows inserted in batch order, notifications sent in id order.
#: ``inlines`` and ``heads`` are per event, as in `PUBLISH`.
PUBLISH_MANY = rendered(
    sql.SQL(
        "WITH lock AS MATERIALIZED ({lock}), "
        "rows AS (INSERT INTO {table} (channel, payload)"
        " SELECT u.channel, u.payload FROM lock,"
        " unnest(%(channels)s::text[], %(payloads)b::bytea[]) WITH ORDINALITY"
        " AS u(channel, payload, n) ORDER BY u.n RETURNING id), "
        "numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM rows) "
        "SELECT x.id, pg_notify(x.notify, {note}) FROM"
        " (SELECT numbered.id, b.notify, b.payload, b.inline, b.head FROM numbered JOIN"
        " unnest(%(notifies)s::text[], %(payloads)b::bytea[], %(inlines)s::text[],"
        " %(heads)b::bytea[]) WITH ORDINALITY AS b(notify, payload, inline, head, n)"
        " ON b.n = numbered.n ORDER BY numbered.n) AS x"
    ).format(
        table=_TABLE,
        lock=_LOCK_CHANNELS,
        note=_notification("x.id", "x.payload", "x.inline", "x.head", "%(outer)b"),
    )
)

#: The last id the table's sequence handed out (``NULL``: never used).
LAST_ISSUED_ID = rendered(
    sql.SQL(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence({table}, 'id')::regclass)"
    ).format(table=sql.Literal(HISTORY_TABLE))
)

#: ``(channel, newest id or NULL)`` of each of ``channels``.
NEWEST_IDS = rendered(
    sql.SQL(
        "SELECT p.channel, (SELECT max(id) FROM {table} WHERE channel = p.channel)"
        " FROM unnest(%(channels)s::text[]) AS p(channel)"
    ).format(table=_TABLE)
)

# Each deletion also records, per channel, the highest id it deleted (in the
# same statement): `retained` needs it to tell a position before deleted
# events from one before the channel's first event.
_RECORD_PRUNED = sql.SQL(
    " INSERT INTO {pruned} AS p (channel, last_id)"
    " SELECT channel, max(id) FROM gone GROUP BY channel ORDER BY channel"
    " ON CONFLICT (channel) DO UPDATE SET last_id = GREATEST(p.last_id, EXCLUDED.last_id)"
).format(pruned=_PRUNED)

#: Delete all but the newest ``keep`` rows of each of ``channels``.
PRUNE_SIZE = rendered(
    sql.SQL(
        "WITH gone AS (DELETE FROM {table} AS t USING (SELECT p.channel, (SELECT id FROM {table}"
        " WHERE channel = p.channel ORDER BY id DESC OFFSET %(keep)s LIMIT 1) AS cutoff"
        " FROM unnest(%(channels)s::text[]) AS p(channel)) AS c"
        " WHERE t.channel = c.channel AND t.id <= c.cutoff RETURNING t.channel, t.id)"
        "{record}"
    ).format(table=_TABLE, record=_RECORD_PRUNED)
)

# Rows are (nearly) in created order along the primary key: look at the oldest
# one, and only when it is too old delete among the oldest rows. Both walk the
# primary key index from its start (a plain "id < cutoff" with the cutoff from
# a subquery is planned as a sequential scan).

#: Whether the oldest row is older than ``age`` seconds.
OLDEST_EXPIRED = rendered(
    sql.SQL(
        "SELECT created < now() - make_interval(secs => %(age)s) FROM {table} ORDER BY id LIMIT 1"
    ).format(table=_TABLE)
)

#: Delete rows older than ``age`` seconds among the oldest ``batch`` rows.
PRUNE_AGE = rendered(
    sql.SQL(
        "WITH gone AS (DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM (SELECT id, created "
        "FROM {table} ORDER BY id LIMIT %(batch)s) AS oldest "
        "WHERE created < now() - make_interval(secs => %(age)s))) RETURNING channel, id)"
        "{record}"
    ).format(table=_TABLE, record=_RECORD_PRUNED)
)


def _cutoff(max_age: float) -> sql.Composable:
    """The ``created`` time before which a row is past ``HISTORY_MAX_AGE``."""
    return sql.SQL("now() - make_interval(secs => {})").format(sql.Literal(float(max_age)))


def _newest_first(max_age: float | None) -> sql.Composable:
    """The tail of a read applying retention exactly: ``HISTORY_MAX_AGE`` here,
    ``HISTORY_SIZE`` (or a smaller limit) as the ``limit`` parameter."""
    age: sql.Composable = sql.SQL("")
    if max_age is not None:
        age = sql.SQL("AND created >= {}").format(_cutoff(max_age))
    return sql.SQL("{age} ORDER BY id DESC LIMIT %(limit)s").format(age=age)


def history(max_age: float | None) -> bytes:
    """``(id, payload)`` of ``channel`` after ``after``, oldest first, at most ``limit``."""
    return rendered(
        sql.SQL(
            "SELECT id, payload FROM (SELECT id, payload FROM {table}"
            " WHERE channel = %(channel)s AND id > %(after)s {recent}) AS s ORDER BY id"
        ).format(table=_TABLE, recent=_newest_first(max_age))
    )


def page(max_age: float | None, size: int | None) -> bytes:
    """``(id, payload)`` of the oldest ``limit`` rows of ``channel`` after ``after`` among
    those `history` reads (``HISTORY_MAX_AGE`` and the newest ``size``), oldest first."""
    age: sql.Composable = sql.SQL("")
    if max_age is not None:
        age = sql.SQL(" AND created >= {}").format(_cutoff(max_age))
    window: sql.Composable = sql.SQL("")
    if size is not None:  # from the size-th newest row on
        window = sql.SQL(
            " AND id >= coalesce((SELECT id FROM {table} WHERE channel = %(channel)s{age}"
            " ORDER BY id DESC OFFSET {skip} LIMIT 1), 0)"
        ).format(table=_TABLE, age=age, skip=sql.Literal(size - 1))
    return rendered(
        sql.SQL(
            "SELECT id, payload FROM {table} WHERE channel = %(channel)s AND id > %(after)s"
            "{age}{window} ORDER BY id LIMIT %(limit)s"
        ).format(table=_TABLE, age=age, window=window)
    )


def replay(max_age: float | None) -> bytes:
    """What a resume hands out: ``(channel, id, payload)`` after each channel's ``after``,
    in id order, retention applied as by `history`."""
    return rendered(
        sql.SQL(
            "SELECT p.channel, e.id, e.payload FROM unnest(%(channels)s::text[], %(after)s::int8[])"
            " AS p(channel, after) CROSS JOIN LATERAL (SELECT id, payload FROM {table}"
            " WHERE channel = p.channel AND id > p.after {recent}) AS e ORDER BY e.id"
        ).format(table=_TABLE, recent=_newest_first(max_age))
    )


# What a listener hands out when notified: the rows of each notified channel after
# its last event handed out, up to the highest id notified (later rows wait for their
# own notification, so events come in commit order across channels too). A channel's
# rows up to a committed id are all committed (the publish lock): this skips nothing.

#: ``(channel, id, payload)`` of each of ``channels`` in ``(after, upto]``, in id order.
FOLLOW = rendered(
    sql.SQL(
        "SELECT p.channel, e.id, e.payload FROM"
        " unnest(%(channels)s::text[], %(after)s::int8[], %(upto)s::int8[])"
        " AS p(channel, after, upto)"
        " CROSS JOIN LATERAL (SELECT id, payload FROM {table}"
        " WHERE channel = p.channel AND id > p.after AND id <= p.upto) AS e ORDER BY e.id"
    ).format(table=_TABLE)
)
#: `FOLLOW` for one channel (the usual batch), at half its cost: ``(id, payload)``.
FOLLOW_ONE = rendered(
    sql.SQL(
        "SELECT id, payload FROM {table} WHERE channel = %(channel)s"
        " AND id > %(after)s AND id <= %(upto)s ORDER BY id"
    ).format(table=_TABLE)
)


#: The last id issued to any channel (ids are global): the sequence's, where this role
#: may read it, at least the newest row's.
_LAST_ISSUED = sql.SQL(
    "greatest(CASE WHEN has_sequence_privilege({seq}, 'SELECT,USAGE')"
    " THEN pg_sequence_last_value({seq}) END, (SELECT max(id) FROM {table}))"
).format(
    seq=sql.SQL("pg_get_serial_sequence({}, 'id')::regclass").format(sql.Literal(HISTORY_TABLE)),
    table=_TABLE,
)


def retained(max_age: float | None) -> bytes:
    """``(highest id pruned from channel or NULL, its rows after ``after`` up to
    ``limit``, whether one of those is past ``max_age``, whether ``after`` is past the
    last id issued)``: what `retains` decides on."""
    expired: sql.Composable = sql.SQL("false")
    column = sql.SQL("id")
    if max_age is not None:
        expired = sql.SQL("coalesce(bool_or(created < {}), false)").format(_cutoff(max_age))
        column = sql.SQL("created")
    return rendered(
        sql.SQL(
            "SELECT (SELECT last_id FROM {pruned} WHERE channel = %(channel)s), count(*),"
            " {expired}, %(after)s > coalesce({issued}, 0)"
            " FROM (SELECT {column} FROM {table} WHERE channel = %(channel)s AND id > %(after)s"
            " ORDER BY id LIMIT %(limit)s) AS s"
        ).format(pruned=_PRUNED, table=_TABLE, expired=expired, column=column, issued=_LAST_ISSUED)
    )


def listen(notify_channels: Iterable[str]) -> sql.Composed:
    """``LISTEN`` to each of ``notify_channels``, in one round trip."""
    return sql.SQL("; ").join(
        sql.SQL("LISTEN {}").format(sql.Identifier(name)) for name in notify_channels
    )


def unlisten(notify_channels: Iterable[str]) -> sql.Composed:
    """``UNLISTEN`` each of ``notify_channels``, in one round trip."""
    return sql.SQL("; ").join(
        sql.SQL("UNLISTEN {}").format(sql.Identifier(name)) for name in notify_channels
    )


def set_role(role: str) -> sql.Composed:
    """``SET ROLE`` (Django's ``assume_role``)."""
    return sql.SQL("SET ROLE {}").format(sql.Identifier(role))
