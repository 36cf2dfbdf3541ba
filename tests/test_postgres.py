"""PostgresBackend beyond the conformance kit (tests/test_backend_conformance.py):
limits, wire junk, reconnects, processes.

Runs against the real PostgreSQL on loopback (the pytest-django test database,
migrated); nothing is mocked and nothing skips.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import override_settings
from django.utils.crypto import salted_hmac
from psycopg import sql

from django_broadcaster import BackendUnavailable, Broadcast, Event, models
from django_broadcaster.backends.base import RawEvent
from django_broadcaster.backends.postgres import HISTORY_TABLE, PostgresBackend, statements
from django_broadcaster.backends.postgres.connections import Connector
from django_broadcaster.backends.postgres.envelope import INLINE_MAX
from django_broadcaster.checks import check_backends
from django_broadcaster.config import create_broadcast
from django_broadcaster.exceptions import ConfigError, HistoryGap
from django_broadcaster.models import HISTORY_TABLE as MODEL_TABLE
from django_broadcaster.models import HistoryEvent, PrunedHistory

from .support.backends import make_bus

pytestmark = pytest.mark.usefixtures("postgres_table")

TIMEOUT = 20
BACKEND = "django_broadcaster.backends.postgres.PostgresBackend"
ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The migrated test database as a URL (what another process would configure)."""
    s = connections["default"].settings_dict
    return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
async def pg() -> AsyncIterator[Broadcast]:
    front = make_bus("postgres")
    yield front
    await front.aclose()
    front.close()


@pytest.fixture
async def admin() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain psycopg connection to the test database, playing psql."""
    conn = await psycopg.AsyncConnection.connect(database_url(), autocommit=True)
    yield conn
    await conn.close()


def backend_of(bus: Broadcast) -> PostgresBackend:
    backend = bus.hubs.current().backend
    assert isinstance(backend, PostgresBackend)
    return backend


async def drain(sub: Any, count: int) -> list[Event]:
    return [await sub.get(TIMEOUT) for _ in range(count)]


# -- limits PostgreSQL must not leak ---------------------------------------------


async def test_one_megabyte_message_round_trips(pg: Broadcast) -> None:
    big = {"blob": "x" * 1_000_000, "n": 1}
    async with pg.subscribe("big") as sub:
        event_id = await pg.apublish("big", big)
        await pg.apublish("big", "small after")
        first, second = await drain(sub, 2)
    assert first == Event("big", big, event_id)
    assert second.message == "small after"
    assert [e.message for e in await pg.ahistory("big")] == [big, "small after"]


async def insert_row(conn: psycopg.AsyncConnection[Any], wire: str, payload: bytes) -> str:
    """A row inserted by hand (no notification): its id."""
    cursor = await conn.execute(
        sql.SQL("INSERT INTO {} (channel, payload) VALUES (%s, %s) RETURNING id").format(
            sql.Identifier(HISTORY_TABLE)
        ),
        (wire, payload),
    )
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def expected_mac(bus: Broadcast, notify: str, event_id: str, payload: bytes) -> str:
    """The MAC of an inline notification, computed here from the documented recipe:
    HMAC-SHA256 of ``<notify>@<id>:<payload>`` under a key derived from SECRET_KEY."""
    key = salted_hmac(
        "django_broadcaster.backends.postgres.notify",
        f"{HISTORY_TABLE}\0{bus.config.key_prefix}",
        algorithm="sha256",
    ).digest()
    return hmac.new(key, f"{notify}@{event_id}:".encode() + payload, "sha256").hexdigest()


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
async def test_notifications_carry_small_events_with_their_mac_and_wake_for_large_ones(
    serializer: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    """Messages of any size and bytes arrive; a notification carries the event (base64,
    with the MAC the statement computed) when it fits NOTIFY's 8,000 bytes, else only
    its id and the listener reads the table."""
    bus = make_bus("postgres", OPTIONS={"SERIALIZER": serializer})
    try:
        messages: list[Any] = ["é" * 3400, "é" * 3600, "a" * 8000, {"k": "€" * 5000}, "\x00"]
        head = 2 if serializer == "json" else 3  # the quotes, msgpack's str16 header
        messages += ["a" * (INLINE_MAX - head), "a" * (INLINE_MAX + 1 - head)]  # the limit
        if serializer == "msgpack":
            messages += [b"\x00\xff" * 2000, b"\x00\xff" * 3000]
        backend = backend_of(bus)
        notify = backend.notify_channel("edge")
        await admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(notify)))
        async with bus.subscribe("edge") as sub:
            ids = [await bus.apublish("edge", message) for message in messages]
            assert [e.message for e in await drain(sub, len(messages))] == messages
        notes = admin.notifies(timeout=TIMEOUT, stop_after=len(messages))
        stored = {e.id: e.payload for e in await backend.history("edge", None, None)}
        expected = [
            f"@{i}:{expected_mac(bus, notify, str(i), stored[i])}:"
            + base64.b64encode(stored[i]).decode()
            if len(stored[i]) <= INLINE_MAX
            else f"@{i}"
            for i in ids
        ]
        assert [note.payload async for note in notes] == expected
        assert all(len(text.encode()) < 8000 for text in expected)
        sizes = [len(stored[i]) for i in ids]
        assert INLINE_MAX in sizes and INLINE_MAX + 1 in sizes
    finally:
        await bus.aclose()


async def test_long_channel_names_stay_separate(pg: Broadcast) -> None:
    shared = "a" * 63
    one, two = shared + "." + "x" * 136, shared + "." + "y" * 136
    assert len(one) == len(two) == 200
    backend = backend_of(pg)
    assert backend.notify_channel(one) != backend.notify_channel(two)
    assert all(len(backend.notify_channel(c).encode()) <= 63 for c in (one, two, "short"))
    async with pg.subscribe(one) as sub_one, pg.subscribe(two) as sub_two:
        await pg.apublish(one, "to one")
        await pg.apublish(two, "to two")
        await pg.apublish(one, "one again")
        assert [e.message for e in await drain(sub_one, 2)] == ["to one", "one again"]
        assert [e.message for e in await drain(sub_two, 1)] == ["to two"]
        await asyncio.sleep(0.1)
        assert sub_one.pending == sub_two.pending == 0
    assert [e.message for e in await pg.ahistory(one)] == ["to one", "one again"]
    assert [e.message for e in await pg.ahistory(two)] == ["to two"]


async def test_one_batch_of_notifications_on_several_channels(pg: Broadcast) -> None:
    """Concurrent publishes share one statement, so their notifications arrive together:
    the listener reads every channel's rows in one query and hands them out in order."""
    async with pg.subscribe("mix.a", "mix.b") as sub:
        channels = ["mix.a", "mix.b"] * 10
        ids = await asyncio.gather(*(pg.apublish(c, i) for i, c in enumerate(channels)))
        events = await drain(sub, len(channels))
        await asyncio.sleep(0.1)
        assert sub.pending == 0
    assert [(e.channel, e.message, e.id) for e in events] == [
        (c, i, ids[i]) for i, c in enumerate(channels)
    ]


async def test_names_never_reach_sql_as_text() -> None:
    """A KEY_PREFIX may hold anything; unquoted identifiers would also fold case."""
    bus = make_bus("postgres", KEY_PREFIX=f"x'; DROP TABLE {HISTORY_TABLE}; -- \"é{uuid.uuid4()}")
    try:
        async with bus.subscribe("Chat.Lobby") as upper, bus.subscribe("chat.lobby") as lower:
            await bus.apublish("Chat.Lobby", "upper")
            await bus.apublish("chat.lobby", "lower")
            assert (await upper.get(TIMEOUT)).message == "upper"
            assert (await lower.get(TIMEOUT)).message == "lower"
            await asyncio.sleep(0.1)
            assert upper.pending == lower.pending == 0
        assert [e.message for e in await bus.ahistory("Chat.Lobby")] == ["upper"]
    finally:
        await bus.aclose()


async def test_long_key_prefix_is_shortened_not_refused() -> None:
    a = make_bus("postgres", KEY_PREFIX="p" * 80 + uuid.uuid4().hex)
    b = make_bus("postgres", KEY_PREFIX="p" * 80 + uuid.uuid4().hex)
    try:
        name = "c" * 200
        assert len(backend_of(a).wire_name(name)) <= 255
        assert backend_of(a).wire_name(name) != backend_of(b).wire_name(name)
        await a.apublish(name, "a")
        await b.apublish(name, "b")
        assert [e.message for e in await a.ahistory(name)] == ["a"]
        assert [e.message for e in await b.ahistory(name)] == ["b"]
    finally:
        await a.aclose()
        await b.aclose()


# -- junk on the wire ------------------------------------------------------------


async def test_foreign_notifications_are_logged_and_skipped(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_of(pg)
    async with pg.subscribe("junk") as sub:
        target = sql.Identifier(backend.notify_channel("junk"))
        # What someone types in psql: a plain NOTIFY that is not JSON ...
        await admin.execute(sql.SQL("NOTIFY {}, 'this is not json'").format(target))
        # ... a row inserted by hand with a non-JSON payload, then its id notified ...
        junk_id = await insert_row(admin, backend.wire_name("junk"), b"\xff not json")
        await admin.execute(
            "SELECT pg_notify(%s, %s)", (backend.notify_channel("junk"), f"@{junk_id}")
        )
        # ... an id that is not in the table, and what only looks like a notification.
        await admin.execute(
            "SELECT pg_notify(%s, '@9223372036854775000')", (backend.notify_channel("junk"),)
        )
        await admin.execute(
            "SELECT pg_notify(%s, '@1:bnot base64!')", (backend.notify_channel("junk"),)
        )
        # A JSON value from SQL is delivered live, without an id.
        await admin.execute(sql.SQL("""NOTIFY {}, '{{"from": "sql"}}'""").format(target))
        event_id = await pg.apublish("junk", "good")
        events = await drain(sub, 2)
    assert events == [Event("junk", {"from": "sql"}, None), Event("junk", "good", event_id)]
    assert pg.stats()["undecodable"] == 3
    logged = caplog.text
    assert "skipped an undecodable json payload on channel 'junk'" in logged
    assert "refused 1 notification(s) on channel(s) 'junk'" in logged
    # The reader survived: the channel still works, history shows the raw row too.
    history = await backend.history("junk", None, None)
    assert [e.id for e in history] == [str(junk_id), event_id]


async def test_a_refused_notification_hands_out_no_event_ahead_of_its_turn(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    backend = backend_of(pg)
    notify = backend.notify_channel("turns")
    async with pg.subscribe("turns") as sub:
        # One transaction, so the event's row is in the table when the forged id
        # makes the listener read up to it: a forged id, a plain NOTIFY, then an
        # event and its wake-up.
        async with admin.transaction():
            await admin.execute("SELECT pg_notify(%s, '@9223372036854775000')", (notify,))
            await admin.execute("SELECT pg_notify(%s, %s)", (notify, '"plain"'))
            event_id = await insert_row(admin, backend.wire_name("turns"), b'"event"')
            await admin.execute("SELECT pg_notify(%s, %s)", (notify, f"@{event_id}"))
        events = await drain(sub, 2)
    assert events == [Event("turns", "plain", None), Event("turns", "event", event_id)]


@pytest.fixture
async def login_role(admin: psycopg.AsyncConnection[Any]) -> AsyncIterator[tuple[str, str]]:
    """A new role that may log in and nothing more, and its URL to the test database over
    127.0.0.1; dropped afterwards with whatever it was granted."""
    role = f"broadcaster_{uuid.uuid4().hex[:12]}"
    await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    s = connections["default"].settings_dict
    try:
        yield role, f"postgresql://{role}@127.0.0.1:{s['PORT'] or 5432}/{s['NAME']}"
    finally:
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused ")]


async def test_forged_notifications_deliver_nothing_and_block_nothing(
    pg: Broadcast,
    admin: psycopg.AsyncConnection[Any],
    login_role: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who can log in may NOTIFY: a role with no privilege on the history table
    forges notifications in the backend's format. None is delivered, none moves a
    position, and the genuine events around them all arrive."""
    backend = backend_of(pg)
    notify = backend.notify_channel("victim")
    forger = await psycopg.AsyncConnection.connect(login_role[1], autocommit=True)
    try:
        for statement in ("SELECT * FROM {}", "INSERT INTO {} (channel, payload) VALUES ('x', '')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await forger.execute(sql.SQL(statement).format(sql.Identifier(HISTORY_TABLE)))
        async with pg.subscribe("victim") as sub:
            first = await pg.apublish("victim", "first")
            assert await sub.get(TIMEOUT) == Event("victim", "first", first)
            elsewhere = await pg.apublish("elsewhere", "a real id, of another channel")
            # One burst: the event inline with a huge id (it used to be delivered, and its
            # id made every later event look like a duplicate), the same id alone, and a
            # real id of another channel.
            await forger.execute(
                "SELECT pg_notify(%(n)s, '@9223372036854775000:t{\"forged\": 1}'),"
                " pg_notify(%(n)s, '@9223372036854775000'), pg_notify(%(n)s, %(other)s)",
                {"n": notify, "other": f"@{elsewhere}"},
            )
            # A real id of this channel, before its row is committed, with another payload.
            async with admin.transaction():
                cursor = await admin.execute(
                    sql.SQL(
                        "INSERT INTO {} (channel, payload) VALUES (%s, %s) RETURNING id"
                    ).format(sql.Identifier(HISTORY_TABLE)),
                    (backend.wire_name("victim"), b'"real"'),
                )
                row = await cursor.fetchone()
                assert row is not None
                await forger.execute(
                    "SELECT pg_notify(%(n)s, %(id)s || ':t\"evil\"'), pg_notify(%(n)s, %(id)s)",
                    {"n": notify, "id": f"@{row[0]}"},
                )
                for _ in range(TIMEOUT * 100):  # refused before the row commits
                    if len(refusals(caplog)) == 2:
                        break
                    await asyncio.sleep(0.01)
                await admin.execute("SELECT pg_notify(%s, %s)", (notify, f"@{row[0]}"))
            after = await pg.apublish("victim", "after")
            events = await drain(sub, 2)
            await asyncio.sleep(0.1)
            assert sub.pending == 0
    finally:
        await forger.close()
    assert events == [Event("victim", "real", str(row[0])), Event("victim", "after", after)]
    assert [e.message for e in await pg.ahistory("victim")] == ["first", "real", "after"]
    # Logged once per batch, with no payload.
    assert refusals(caplog) == [
        "refused 2 notification(s) on channel(s) 'victim' of 'default': the ids they announce "
        "are no events of that channel in the history table (a forged NOTIFY, or pruned "
        "already); nothing was handed out for them",
        "refused 1 notification(s) on channel(s) 'victim' of 'default': the ids they announce "
        "are no events of that channel in the history table (a forged NOTIFY, or pruned "
        "already); nothing was handed out for them",
    ]


# -- events carried by notifications (a MAC from SECRET_KEY) -----------------------------


async def notes_of(conn: psycopg.AsyncConnection[Any], count: int) -> list[str]:
    return [note.payload async for note in conn.notifies(timeout=TIMEOUT, stop_after=count)]


async def test_an_event_with_a_valid_mac_is_handed_out_as_notified(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    """The listener takes an authenticated event from the notification (no table read):
    a row holding "table" notified inline as "inline" under the backend's key arrives
    as "inline". Under another key (another project, a rotated SECRET_KEY) the same
    notification is a wake-up: the row arrives as the table holds it."""
    backend = backend_of(pg)
    notify = backend.notify_channel("mac")
    inline = b'"inline"'
    body = base64.b64encode(inline).decode()
    async with pg.subscribe("mac") as sub:
        first = await insert_row(admin, backend.wire_name("mac"), b'"table"')
        mac = expected_mac(pg, notify, first, inline)
        await admin.execute("SELECT pg_notify(%s, %s)", (notify, f"@{first}:{mac}:{body}"))
        assert await sub.get(TIMEOUT) == Event("mac", "inline", first)
        second = await insert_row(admin, backend.wire_name("mac"), b'"table"')
        with override_settings(SECRET_KEY="another project"):
            mac = expected_mac(pg, notify, second, inline)
        assert mac != expected_mac(pg, notify, second, inline)
        await admin.execute("SELECT pg_notify(%s, %s)", (notify, f"@{second}:{mac}:{body}"))
        assert await sub.get(TIMEOUT) == Event("mac", "table", second)


async def test_forged_and_replayed_inline_events_deliver_nothing(
    pg: Broadcast,
    admin: psycopg.AsyncConnection[Any],
    login_role: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A role with no privilege on the history table listens to genuine notifications
    and sends them back altered: another id, another channel, a made-up MAC, or as they
    were. None is delivered, none moves a position; the genuine events all arrive."""
    backend = backend_of(pg)
    victim, elsewhere = backend.notify_channel("victim"), backend.notify_channel("elsewhere")
    spy = await psycopg.AsyncConnection.connect(login_role[1], autocommit=True)
    try:
        await spy.execute(
            sql.SQL("LISTEN {}; LISTEN {}").format(*map(sql.Identifier, [victim, elsewhere]))
        )
        async with pg.subscribe("victim") as sub:
            first = await pg.apublish("victim", "first")
            assert await sub.get(TIMEOUT) == Event("victim", "first", first)
            there = await pg.apublish("elsewhere", "of another channel")
            (genuine, other) = await notes_of(spy, 2)
            _, mac, body = genuine.split(":")
            forged_body = base64.b64encode(b'"forged"').decode()
            big = 2**62
            forgeries = [
                f"@{int(first) + 1}:{mac}:{body}",  # the next id (not issued yet)
                f"@{big}:{mac}:{body}",  # a far id: would block every later event
                other,  # another channel's event, as it was
                f"@{first}0:{mac}:{body}",  # the id's digits extended
                f"@{big}:{'0' * 64}:{forged_body}",  # a made-up MAC
                f"@{big}:{mac}:{forged_body}",  # a genuine MAC, another payload
                genuine,  # handed out already: skipped without a word
            ]
            notifications = (
                sql.SQL("pg_notify({}, {})").format(sql.Literal(victim), sql.Literal(text))
                for text in forgeries
            )
            await spy.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(notifications)))
            after = await pg.apublish("victim", "after")
            assert await sub.get(TIMEOUT) == Event("victim", "after", after)
            await asyncio.sleep(0.1)
            assert sub.pending == 0
    finally:
        await spy.close()
    assert there is not None and other.startswith(f"@{there}:")
    assert refusals(caplog) == [
        "refused 6 notification(s) on channel(s) 'victim' of 'default': the ids they announce "
        "are no events of that channel in the history table (a forged NOTIFY, or pruned "
        "already); nothing was handed out for them"
    ]
    assert [e.message for e in await pg.ahistory("victim")] == ["first", "after"]


async def test_inline_and_wake_only_events_of_one_statement_keep_their_order(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    """Concurrent publishes share one statement: small events go inline, large ones as a
    wake-up. Channel a (both kinds) is read from the table, channel b (small events
    only) taken from the notifications; together they arrive once each, in id order."""
    backend = backend_of(pg)
    listens = (
        sql.SQL("LISTEN {}").format(sql.Identifier(backend.notify_channel(c)))
        for c in ("order.a", "order.b")
    )
    await admin.execute(sql.SQL("; ").join(listens))
    large = "x" * INLINE_MAX
    plan = [("order.a", 0), ("order.a", large), ("order.a", 2), ("order.b", 3), ("order.a", 4)]
    plan += [("order.b", 5), ("order.b", 6), ("order.a", 7), ("order.a", large)]
    async with pg.subscribe("order.a", "order.b") as sub:
        ids = await asyncio.gather(*(pg.apublish(c, m) for c, m in plan))
        got = await drain(sub, len(plan))
        await asyncio.sleep(0.1)
        assert sub.pending == 0
    assert got == [Event(c, m, i) for (c, m), i in zip(plan, ids, strict=True)]
    notes = await notes_of(admin, len(plan))
    assert [note.count(":") == 2 for note in notes] == [m != large for _, m in plan]


async def test_replayed_notifications_at_or_before_a_resume_point_are_skipped(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    """A subscriber resumes after event 2 (since=): genuine notifications of events 1
    and 2, sent again, hand out nothing; the next event arrives once."""
    notify = backend_of(pg).notify_channel("resume")
    await admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(notify)))
    await pg.apublish("resume", 1)
    second = await pg.apublish("resume", 2)
    old = await notes_of(admin, 2)
    async with pg.subscribe("resume", since=second) as sub:
        for text in old:
            await admin.execute("SELECT pg_notify(%s, %s)", (notify, text))
        third = await pg.apublish("resume", 3)
        assert await sub.get(TIMEOUT) == Event("resume", 3, third)
        await asyncio.sleep(0.1)
        assert sub.pending == 0


@pytest.mark.parametrize(
    ("secret", "options"),
    [("", {}), ("a secret", {"NOTIFY_PAYLOADS": False})],
    ids=["no SECRET_KEY", "NOTIFY_PAYLOADS off"],
)
async def test_without_a_key_or_notify_payloads_notifications_only_wake(
    secret: str, options: dict[str, Any], admin: psycopg.AsyncConnection[Any]
) -> None:
    with override_settings(SECRET_KEY=secret):
        bus = make_bus("postgres", OPTIONS=options)
        backend = backend_of(bus)  # made here: reads SECRET_KEY
    try:
        notify = backend.notify_channel("keyless")
        await admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(notify)))
        async with bus.subscribe("keyless") as sub:
            ids = [await bus.apublish("keyless", n) for n in range(3)]
            ids += await asyncio.gather(*(bus.apublish("keyless", n) for n in range(3, 6)))
            assert [e.id for e in await drain(sub, 6)] == ids
        assert await notes_of(admin, 6) == [f"@{i}" for i in ids]
    finally:
        await bus.aclose()


MALFORMED_IDS = [
    *("-1", "+1", " 1", "1 ", "1_000", "1.0", "1e3", "0x1f", "1-0", ""),
    *("\u0661", "\uff11", "9223372036854775808", "9" * 5000),
]


async def test_malformed_ids_are_value_errors_before_any_sql() -> None:
    """since= and a SSE Last-Event-ID come from clients: anything but an id PostgreSQL
    takes as a bigint from 0 up is refused by id_order, before a connection opens."""
    bus = make_bus("postgres")
    try:
        backend = backend_of(bus)
        assert backend.id_order("0") == (0,)
        assert backend.id_order("9223372036854775807") == (2**63 - 1,)
        for bad in MALFORMED_IDS:
            with pytest.raises(ValueError, match="is not an event id of PostgresBackend"):
                backend.id_order(bad)
            with pytest.raises(ValueError, match="is not an event id of PostgresBackend"):
                await bus.ahistory("strict", since=bad)
            with pytest.raises(ValueError, match="is not an event id of PostgresBackend"):
                async with bus.subscribe("strict", since=bad):
                    pass
        assert backend._pub is None and backend._listener.connection is None
    finally:
        await bus.aclose()


async def test_a_refused_event_fails_alone_in_a_batch(
    admin: psycopg.AsyncConnection[Any], login_role: tuple[str, str]
) -> None:
    """Row-level security lets this role publish on every channel but 'private.*': the
    batch statement is refused as a whole (nothing stored), then each event is sent alone."""
    role, url = login_role
    table, ident = sql.Identifier(HISTORY_TABLE), sql.Identifier(role)
    grants = [
        "GRANT SELECT, INSERT ON {table} TO {role}",
        "CREATE POLICY broadcaster_read ON {table} FOR SELECT TO {role} USING (true)",
        "CREATE POLICY broadcaster_write ON {table} FOR INSERT TO {role}"
        " WITH CHECK (channel NOT LIKE '%%:private.%%')",
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
    ]
    for grant in grants:
        await admin.execute(sql.SQL(grant).format(table=table, role=ident))
    prefix = f"t{uuid.uuid4().hex[:12]}"
    bus = create_broadcast("rls", {"BACKEND": BACKEND, "LOCATION": url, "KEY_PREFIX": prefix})
    backend = PostgresBackend(bus.config)
    try:
        await backend.connect()
        results = await backend.publish_many(
            [("news", b"1"), ("private.x", b"2"), ("news", b"3"), ("private.x", b"4")]
        )
        assert isinstance(results[1], psycopg.errors.InsufficientPrivilege)
        assert isinstance(results[3], psycopg.errors.InsufficientPrivilege)
        stored = await backend.history("news", None, None)
        assert [(e.id, e.payload) for e in stored] == [(results[0], b"1"), (results[2], b"3")]
        # Through the public API: concurrent publishes share one batch.
        outcome = await asyncio.gather(
            bus.apublish("news", 5), bus.apublish("private.y", 6), return_exceptions=True
        )
        assert isinstance(outcome[0], str)
        assert isinstance(outcome[1], psycopg.errors.InsufficientPrivilege)
        assert [e.message for e in await bus.ahistory("news")] == [1, 3, 5]
    finally:
        await backend.close()
        await bus.aclose()
        await admin.execute(sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(table))
        for policy in ("broadcaster_read", "broadcaster_write"):
            await admin.execute(
                sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(policy), table)
            )


# -- connection loss ---------------------------------------------------------------


async def terminate(
    admin: psycopg.AsyncConnection[Any], conn: psycopg.AsyncConnection[Any]
) -> None:
    await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))


async def test_killing_the_listen_connection_loses_and_repeats_nothing(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    total = 3000
    other = make_bus("postgres", KEY_PREFIX=pg.config.key_prefix)
    try:
        async with pg.subscribe("stream") as sub, pg.subscribe("quiet") as quiet:
            backend = backend_of(pg)

            async def publisher() -> None:
                for i in range(total):
                    await pg.apublish("stream", i)
                    if i % 10 == 0:
                        await asyncio.sleep(0.001)

            task = asyncio.ensure_future(publisher())
            received: list[Event] = []
            for kill_at in (300, 1200, 2100):
                while len(received) < kill_at:
                    received.append(await sub.get(TIMEOUT))
                assert backend._listener.connection is not None
                await terminate(admin, backend._listener.connection)
                if kill_at == 1200:
                    # Published by another process while this one is reconnecting.
                    await other.apublish("quiet", "during the outage")
                if kill_at == 2100:
                    for _ in range(500):  # the hub's reconnect may be reopening it
                        if backend._pub is not None:
                            break
                        await asyncio.sleep(0.01)
                    assert backend._pub is not None
                    await terminate(admin, backend._pub)  # publishes retry
            while len(received) < total:
                received.append(await sub.get(TIMEOUT))
            await task
            assert [e.message for e in await drain(quiet, 1)] == ["during the outage"]
            await asyncio.sleep(0.2)
            assert sub.pending == quiet.pending == 0
    finally:
        await other.aclose()
    assert [e.message for e in received] == list(range(total))
    ids = [int(e.id or 0) for e in received]
    assert ids == sorted(set(ids))
    assert pg.stats()["reconnects"] >= 3


async def test_a_lost_publishing_connection_is_left_for_the_hub_to_heal(
    admin: psycopg.AsyncConnection[Any],
) -> None:
    """The backend reports the loss every time; only close() + connect() (the hub) reopen."""
    backend = PostgresBackend(make_bus("postgres").config)
    await backend.connect()
    try:
        await backend.publish("heal", b'"before"')
        assert backend._pub is not None
        await terminate(admin, backend._pub)
        for _ in range(2):
            with pytest.raises(backend.connection_errors):
                await backend.publish("heal", b'"lost"')
        with pytest.raises(backend.connection_errors):
            await backend.history("heal", None, None)
        await backend.close()
        await backend.connect()
        await backend.publish("heal", b'"after"')
        history = await backend.history("heal", None, None)
        assert [e.payload for e in history] == [b'"before"', b'"after"']
    finally:
        await backend.close()


async def test_resume_points_past_the_id_sequence_are_clamped(
    pg: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    """After a crash that lost WAL (or a failover) ids are reused: do not skip new events."""
    await pg.apublish("rewind", "before")
    async with pg.subscribe("rewind") as sub:
        backend = backend_of(pg)
        await backend.unsubscribe(["rewind"])
        await backend.subscribe({"rewind": str(10**15)})  # as if resuming after a rewind
        event_id = await pg.apublish("rewind", "after")
        assert await sub.get(TIMEOUT) == Event("rewind", "after", event_id)
    assert "went back from 1000000000000000" in caplog.text


async def test_a_subscriber_resumes_after_an_outage_with_since(pg: Broadcast) -> None:
    """The public since= path after losing a subscription altogether."""
    async with pg.subscribe("resume") as sub:
        await pg.apublish("resume", 1)
        seen = await sub.get(TIMEOUT)
    await pg.apublish("resume", 2)
    await pg.apublish("resume", 3)
    async with pg.subscribe("resume", since=seen.id) as sub:
        assert [e.message for e in await drain(sub, 2)] == [2, 3]


async def test_ids_are_committed_in_order_across_connections() -> None:
    """Concurrent publishers on other connections: per channel, ids arrive increasing."""
    first = make_bus("postgres")
    prefix = first.config.key_prefix
    buses = [first, *(make_bus("postgres", KEY_PREFIX=prefix) for _ in range(2))]
    try:
        async with buses[0].subscribe("race") as sub:

            async def flood(bus: Broadcast, tag: int) -> None:
                for start in range(0, 300, 30):
                    await asyncio.gather(
                        *(bus.apublish("race", [tag, i]) for i in range(start, start + 30))
                    )

            await asyncio.gather(*(flood(bus, tag) for tag, bus in enumerate(buses)))
            events = await drain(sub, 900)
        ids = [int(e.id or 0) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 900
        for tag in range(3):
            assert [e.message[1] for e in events if e.message[0] == tag] == list(range(300))
    finally:
        for bus in buses:
            await bus.aclose()


async def test_receive_waits_quietly_and_close_wakes_it() -> None:
    backend = PostgresBackend(make_bus("postgres").config)
    await backend.connect()
    try:
        idle = asyncio.ensure_future(backend.receive())
        started = time.process_time()
        await asyncio.sleep(0.5)
        assert not idle.done()
        assert time.process_time() - started < 0.2  # waiting, not polling
        await backend.subscribe({"w": None})
        await asyncio.sleep(0.2)
        assert not idle.done()
        begun = time.monotonic()
        await backend.close()
        with pytest.raises(psycopg.OperationalError):
            await asyncio.wait_for(idle, 2)
        assert time.monotonic() - begun < 0.5
    finally:
        await backend.close()


async def test_only_a_silent_listen_connection_is_probed(
    admin: psycopg.AsyncConnection[Any],
) -> None:
    bus = create_broadcast(
        "default",
        {
            "BACKEND": BACKEND,
            "LOCATION": database_url(),
            "KEY_PREFIX": f"t{uuid.uuid4().hex[:12]}",
            "OPTIONS": {"LIVENESS_INTERVAL": 0.3},
        },
    )
    backend = PostgresBackend(bus.config)
    await backend.connect()
    received: list[RawEvent] = []

    async def receiving() -> None:
        while True:
            received.extend(await backend.receive())

    async def last_statement() -> str:
        assert backend._listener.connection is not None
        pid = backend._listener.connection.pgconn.backend_pid
        cursor = await admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    reader = asyncio.ensure_future(receiving())
    try:
        await backend.subscribe({"steady": None})
        # A notification every 0.1 s: never silent for 0.3 s, never probed.
        for n in range(8):
            await backend.publish("steady", str(n).encode())
            await asyncio.sleep(0.1)
        assert await last_statement() != "SELECT 1"
        # Silent for two intervals: probed, and still receiving.
        await asyncio.sleep(0.6)
        assert await last_statement() == "SELECT 1"
        await backend.publish("steady", b"after")
        for _ in range(100):
            if len(received) == 9:
                break
            await asyncio.sleep(0.02)
        assert [event.payload for event in received] == [
            *(str(n).encode() for n in range(8)),
            b"after",
        ]
    finally:
        reader.cancel()
        await backend.close()


async def test_subscribing_while_receive_waits_keeps_every_channel() -> None:
    backend = PostgresBackend(make_bus("postgres").config)
    await backend.connect()
    received: list[tuple[str, bytes]] = []

    async def receiving() -> None:
        while True:
            received.extend((event.channel, event.payload) for event in await backend.receive())

    async def until(count: int) -> None:
        for _ in range(250):
            if len(received) >= count:
                return
            await asyncio.sleep(0.02)

    reader = asyncio.ensure_future(receiving())
    try:
        await backend.subscribe({"first": None})
        await backend.publish("first", b"1")
        await until(1)  # receive() waits on the connection again
        await backend.subscribe({"second": None})
        await backend.publish("second", b"2")
        await backend.publish("first", b"3")
        await until(3)
        await backend.unsubscribe(["second"])
        await backend.publish("second", b"not wanted")
        await backend.publish("first", b"4")
        await until(4)
        await asyncio.sleep(0.1)
        assert received == [("first", b"1"), ("second", b"2"), ("first", b"3"), ("first", b"4")]
    finally:
        reader.cancel()
        await backend.close()


async def prepared_on_publishing_connection(bus: Broadcast) -> list[str]:
    """The statements prepared on ``bus``'s publishing connection."""
    conn = backend_of(bus)._publisher()
    cursor = await conn.execute("SELECT name FROM pg_prepared_statements ORDER BY name")
    return [name for (name,) in await cursor.fetchall()]


async def test_the_publish_is_prepared_once_on_its_connection(pg: Broadcast) -> None:
    ids = [await pg.apublish("prepared", n) for n in range(3)]
    assert await prepared_on_publishing_connection(pg) == ["django_broadcaster_publish"]
    assert [e.id for e in await pg.ahistory("prepared")] == ids


async def test_prepare_threshold_none_in_databases_sends_the_publish_unprepared() -> None:
    options = connections["default"].settings_dict.setdefault("OPTIONS", {})
    options["prepare_threshold"] = None  # as behind a pooler that cannot keep them
    bus = make_bus("postgres")
    try:
        ids = [await bus.apublish("whole", n) for n in range(3)]
        assert await prepared_on_publishing_connection(bus) == []
        assert [e.message for e in await bus.ahistory("whole")] == [0, 1, 2]
        assert [e.id for e in await bus.ahistory("whole")] == ids
    finally:
        del options["prepare_threshold"]
        await bus.aclose()


async def test_a_publish_cancelled_in_flight_is_stored_and_the_next_one_follows(
    pg: Broadcast, admin: psycopg.AsyncConnection[Any]
) -> None:
    await pg.apublish("cancelled", "first")
    table = sql.Identifier(HISTORY_TABLE)
    async with admin.transaction():
        await admin.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
        publish = asyncio.ensure_future(pg.apublish("cancelled", "second"))
        for _ in range(250):  # until its INSERT waits for the table
            cursor = await admin.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
                (HISTORY_TABLE,),
            )
            if (await cursor.fetchone()) == (1,):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the publish never waited for the table")
        publish.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publish
    # The table is free again: the cancelled statement completes, then this one.
    await pg.apublish("cancelled", "third")
    history = await pg.ahistory("cancelled")
    assert [e.message for e in history] == ["first", "second", "third"]


async def test_synchronous_commit_can_be_turned_off() -> None:
    bus = make_bus("postgres", OPTIONS={"SYNCHRONOUS_COMMIT": False})
    try:
        async with bus.subscribe("fast") as sub:
            await bus.apublish("fast", 1)
            assert (await sub.get(TIMEOUT)).message == 1
        backend = backend_of(bus)
        assert backend._pub is not None
        cursor = await backend._pub.execute("SHOW synchronous_commit")
        assert await cursor.fetchone() == ("off",)
    finally:
        await bus.aclose()


async def test_publishing_alone_opens_no_listen_connection(pg: Broadcast) -> None:
    await pg.apublish("solo", 1)
    assert backend_of(pg)._listener.connection is None
    async with pg.subscribe("solo"):
        assert backend_of(pg)._listener.connection is not None


# -- two OS processes ----------------------------------------------------------------


async def test_two_processes_exchange_5000_events() -> None:
    count = 5000
    prefix = f"t{uuid.uuid4().hex[:12]}"
    url = database_url()
    bus = create_broadcast(
        "default",
        {
            "BACKEND": BACKEND,
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"MAX_QUEUE": count + 1},
        },
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "PYTHONPATH": str(ROOT),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.postgres_peer",
        url,
        prefix,
        str(count),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        async with bus.subscribe("to_parent") as sub:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.strip() == b"ready"

            async def send() -> None:
                for start in range(0, count, 10):
                    burst = range(start, min(start + 10, count))
                    await asyncio.gather(*(bus.apublish("to_child", i) for i in burst))

            sender = asyncio.ensure_future(send())
            received = [(await sub.get(60)).message for _ in range(count)]
            await sender
        result = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        # The child exits promptly once its work is done (no reader left hanging).
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await bus.aclose()
    assert received == list(range(count))
    assert result == {"in_order": True, "received": count}


# -- retention -----------------------------------------------------------------------


async def count_rows(admin: psycopg.AsyncConnection[Any], wire: str) -> int:
    cursor = await admin.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE channel = %s").format(sql.Identifier(HISTORY_TABLE)),
        (wire,),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_history_size_is_exact_for_readers_and_pruned_on_disk(
    admin: psycopg.AsyncConnection[Any],
) -> None:
    bus = make_bus("postgres", OPTIONS={"HISTORY_SIZE": 5, "HISTORY_MAX_AGE": None})
    try:
        ids = [await bus.apublish("kept", i) for i in range(7)]
        between = await bus.apublish("other", "x")  # ids are global: one of another channel
        ids += [await bus.apublish("kept", i) for i in range(7, 12)]
        backend = backend_of(bus)
        wire = backend.wire_name("kept")

        async def check() -> None:
            assert [e.message for e in await bus.ahistory("kept")] == [7, 8, 9, 10, 11]
            assert [e.message for e in await bus.ahistory("kept", since=ids[7])] == [8, 9, 10, 11]
            # Nothing after ids[6] (nor after the other channel's id) was dropped ...
            for since in (ids[6], between):
                assert [e.message for e in await bus.ahistory("kept", since=since)] == [
                    *(7, 8, 9, 10, 11)
                ]
            async with bus.subscribe("kept", since=ids[6]) as sub:
                assert [e.message for e in await drain(sub, 5)] == [7, 8, 9, 10, 11]
            # ... but 6 is beyond HISTORY_SIZE after ids[5], 3 to 6 after ids[2].
            for since in (ids[5], ids[2], "0"):
                with pytest.raises(HistoryGap):
                    await bus.ahistory("kept", since=since)

        await check()  # reads apply the size before the rows are deleted
        assert await count_rows(admin, wire) == 12
        await backend.prune()  # trims the channels it published to
        assert await count_rows(admin, wire) == 5
        assert await count_rows(admin, backend.wire_name("other")) == 1
        await check()  # and after
    finally:
        await bus.aclose()


async def backdate(admin: psycopg.AsyncConnection[Any], up_to: str | None) -> None:
    """Make the events up to ``up_to`` (of every channel, as time would) an hour older."""
    await admin.execute(
        sql.SQL("UPDATE {} SET created = created - interval '1 hour' WHERE id <= %s").format(
            sql.Identifier(HISTORY_TABLE)
        ),
        (int(up_to or 0),),
    )


async def test_history_max_age(admin: psycopg.AsyncConnection[Any]) -> None:
    bus = make_bus("postgres", OPTIONS={"HISTORY_SIZE": None, "HISTORY_MAX_AGE": 60})
    try:
        before = await bus.apublish("elsewhere", 0)
        old = await bus.apublish("aging", "old")
        gone = await bus.apublish("gone", "old too")
        new = await bus.apublish("aging", "new")
        await backdate(admin, gone)
        backend = backend_of(bus)

        async def check() -> None:
            assert [e.message for e in await bus.ahistory("aging")] == ["new"]
            assert [e.message for e in await bus.ahistory("aging", since=old)] == ["new"]
            assert await bus.ahistory("gone", since=gone) == []
            for channel, since in [("aging", before), ("gone", before), ("gone", "0")]:
                with pytest.raises(HistoryGap):
                    await bus.ahistory(channel, since=since)
            assert await bus.ahistory("aging", since=new) == []

        await check()  # reads apply the age before the rows are deleted
        for _ in range(100):  # each prune deletes among the table's oldest PRUNE_BATCH rows
            await backend.prune()
            if await count_rows(admin, backend.wire_name("gone")) == 0:
                break
        assert await count_rows(admin, backend.wire_name("aging")) == 1
        assert await count_rows(admin, backend.wire_name("gone")) == 0
        await check()  # and after: the prune recorded what it deleted
    finally:
        await bus.aclose()


async def test_pruning_runs_by_itself(monkeypatch: pytest.MonkeyPatch, admin: Any) -> None:
    monkeypatch.setattr("django_broadcaster.backends.postgres.retention.PRUNE_EVERY", 20)
    bus = make_bus("postgres", OPTIONS={"HISTORY_SIZE": 3})
    try:
        for i in range(20):
            await bus.apublish("auto", i)
        wire = backend_of(bus).wire_name("auto")
        for _ in range(200):  # the 20th publish started a prune in the background
            if await count_rows(admin, wire) == 3:
                break
            await asyncio.sleep(0.01)
        assert await count_rows(admin, wire) == 3
    finally:
        await bus.aclose()


# -- settings, checks, secrets ---------------------------------------------------------


def test_models_and_backend_agree_on_the_tables() -> None:
    assert HistoryEvent._meta.db_table == MODEL_TABLE == HISTORY_TABLE
    assert PrunedHistory._meta.db_table == models.PRUNED_TABLE == statements.PRUNED_TABLE


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("nope", "neither a DATABASES alias"),
        ("mysql://user:s3cr3t-pw@host/db", "not a PostgreSQL URL"),
        ("redis://127.0.0.1:6379/0", "not a PostgreSQL URL"),
        ("postgresql://user:s3cr3t-pw@host/db?no_such_option=1", "cannot be parsed"),
        ("lite", "is not PostgreSQL"),
    ],
)
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_bad_locations_are_config_errors(location: str, message: str) -> None:
    databases = {
        "default": connections["default"].settings_dict,
        "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    with override_settings(DATABASES=databases), pytest.raises(ConfigError) as info:
        create_broadcast("pg", {"BACKEND": BACKEND, "LOCATION": location})
    assert message in str(info.value)
    assert info.value.check_id == "django_broadcaster.E007"
    assert "s3cr3t-pw" not in str(info.value)


def test_good_locations() -> None:
    for location in ["", "default", "postgresql://u:p@h/db", "postgres://h/db?sslmode=disable"]:
        create_broadcast("pg", {"BACKEND": BACKEND, "LOCATION": location})


@pytest.mark.parametrize(
    "options",
    [
        {"HISTORY_SIZE": 0},
        {"HISTORY_SIZE": "10"},
        {"HISTORY_MAX_AGE": -1},
        {"HISTORY_MAX_AGE": True},
        {"HISTORY_SIZE": None, "HISTORY_MAX_AGE": None},
        {"SYNCHRONOUS_COMMIT": "off"},
        {"NOTIFY_PAYLOADS": "no"},
        {"RETENTION": 5},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        create_broadcast("pg", {"BACKEND": BACKEND, "OPTIONS": options})
    assert info.value.check_id == "django_broadcaster.E006"


@pytest.fixture
def empty_schema() -> Iterator[str]:
    """A URL to the test database whose search_path sees no history table."""
    schema = f"empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{database_url()}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.django_db
def test_missing_table_is_check_error_e008(empty_schema: str) -> None:
    backends = {
        "default": {"BACKEND": BACKEND, "LOCATION": "default"},
        "url": {"BACKEND": BACKEND, "LOCATION": empty_schema},
    }
    with override_settings(BROADCAST_BACKENDS=backends):
        # Without --database, checks do not query (as Django's database checks).
        assert check_backends(databases=None) == []
        # The table exists in the migrated test database; the URL's schema has none.
        errors = check_backends(databases=["default"])
        assert [e.id for e in errors] == ["django_broadcaster.E008"]
        assert "'url'" in errors[0].msg and "migrate" in (errors[0].hint or "")
        with connection.cursor() as cursor:  # rolled back with the test's transaction
            cursor.execute(f"DROP TABLE {HISTORY_TABLE}")
        errors = check_backends(databases=["default"])
        assert [e.id for e in errors] == ["django_broadcaster.E008"] * 2
        assert "migrate django_broadcaster --database default" in (errors[0].hint or "")
        # migrate itself runs the checks first: they must not stop it from creating the table.
        call_command("migrate", "django_broadcaster", skip_checks=False, verbosity=0)


async def test_missing_table_at_publish_time_says_migrate(empty_schema: str) -> None:
    bus = create_broadcast("pg", {"BACKEND": BACKEND, "LOCATION": empty_schema})
    try:
        with pytest.raises(ConfigError, match="does not exist") as info:
            await bus.apublish("c", 1)
        assert "migrate" in str(info.value)
        with pytest.raises(ConfigError, match="does not exist"):
            await bus.ahistory("c")
    finally:
        await bus.aclose()


async def test_passwords_never_show(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-pw"
    location = f"postgresql://postgres:{secret}@127.0.0.1:1/test"
    bus = create_broadcast(
        "pg", {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": {"TIMEOUT": 0.3}}
    )
    caplog.set_level(logging.DEBUG, logger="django_broadcaster")
    try:
        with pytest.raises(BackendUnavailable) as info:
            await bus.apublish("c", 1)
        assert secret not in str(info.value)
        assert "***" in str(info.value)
        assert secret not in repr(bus) and secret not in repr(backend_of(bus))
        with pytest.raises(BackendUnavailable) as info:
            async with bus.subscribe("c"):
                pass
        assert secret not in str(info.value)
    finally:
        await bus.aclose()
    assert secret not in caplog.text


def test_password_from_databases_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(connections["default"].settings_dict, "PASSWORD", "hunter2")
    connector = Connector("pg", "default", "<PostgresBackend 'pg'>")
    assert connector.params()[0]["password"] == "hunter2"
    scrubbed = connector.scrub(psycopg.OperationalError("bad conninfo: password=hunter2 x"))
    assert "hunter2" not in str(scrubbed) and isinstance(scrubbed, psycopg.OperationalError)
