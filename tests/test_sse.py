"""EventStreamResponse through real ASGI servers (uvicorn in a thread, Daphne in a
subprocess) and a real HTTP client, on the memory and Redis backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.test import AsyncRequestFactory, RequestFactory
from django.test.utils import override_settings

from django_broadcaster import broadcasts
from django_broadcaster.http import EventStreamResponse

from .support.backends import POSTGRES_URL, REDIS_URL
from .support.command_helpers import private_database
from .support.sse_client import EventStream, Message, open_stream
from .support.sse_counting import CountsHistory
from .support.sse_servers import DaphneProcess, UvicornThread, rss

PREFIX = f"sse{uuid.uuid4().hex[:8]}"
MEMORY = "django_broadcaster.backends.memory.MemoryBackend"
BACKENDS: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": MEMORY, "LOCATION": f"{PREFIX}-default"},
    "memory": {"BACKEND": MEMORY, "LOCATION": f"{PREFIX}-memory"},
    "small": {"BACKEND": MEMORY, "LOCATION": f"{PREFIX}-small", "OPTIONS": {"HISTORY_SIZE": 3}},
    "paging": {
        "BACKEND": MEMORY,
        "LOCATION": f"{PREFIX}-paging",
        "OPTIONS": {"HISTORY_SIZE": 300},
    },
    "tiny_queue": {"BACKEND": MEMORY, "LOCATION": f"{PREFIX}-tiny", "OPTIONS": {"MAX_QUEUE": 5}},
    "streams": {
        "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": PREFIX,
    },
    "pubsub": {
        "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": PREFIX,
    },
    "counting_streams": {
        "BACKEND": "tests.support.sse_counting.CountingRedisStreamBackend",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": PREFIX,
    },
    "counting_memory": {
        "BACKEND": "tests.support.sse_counting.CountingMemoryBackend",
        "LOCATION": f"{PREFIX}-counting",
        "OPTIONS": {"HISTORY_SIZE": 5000},
    },
    "down": {  # nothing listens on port 1
        "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
        "LOCATION": "redis://:hunter2@127.0.0.1:1/0",
        "OPTIONS": {"TIMEOUT": 0.3},
    },
}
POSTGRES = {"BACKEND": "django_broadcaster.backends.postgres.PostgresBackend", "KEY_PREFIX": PREFIX}
COUNTING_POSTGRES = {
    "BACKEND": "tests.support.sse_counting.CountingPostgresBackend",
    "KEY_PREFIX": PREFIX,
    "OPTIONS": {"HISTORY_SIZE": 5000},
}
WITH_HISTORY = ["memory", "streams", "postgres"]
ALL = [*WITH_HISTORY, "pubsub"]
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with private_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def server(
    request: pytest.FixtureRequest, postgres_url: str
) -> Iterator[UvicornThread | DaphneProcess]:
    instance: UvicornThread | DaphneProcess
    backends = {**BACKENDS, "postgres": {**POSTGRES, "LOCATION": postgres_url}}
    override = override_settings(BROADCAST_BACKENDS=backends)
    override.enable()
    try:
        instance = UvicornThread() if request.param == "uvicorn" else DaphneProcess()
        instance.start(backends)
        try:
            yield instance
        finally:
            instance.stop()
    finally:
        override.disable()


@pytest.fixture
async def http(server: UvicornThread | DaphneProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def channel(name: str = "news") -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}"


def stream_url(server: Any, alias: str, *channels: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{server.url}/sse/{alias}/stream/{','.join(channels)}/" + (f"?{query}" if query else "")


async def publish(http: httpx.AsyncClient, alias: str, channel: str, message: Any) -> str | None:
    response = await http.post(f"/sse/{alias}/publish/{channel}/", json=message)
    response.raise_for_status()
    event_id: str | None = response.json()["id"]
    return event_id


async def state(http: httpx.AsyncClient, alias: str) -> dict[str, Any]:
    response = await http.get(f"/sse/{alias}/state/")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def opened(stream: EventStream) -> Message:
    """The first block: sent once the server has subscribed, carrying the start position."""
    first = await stream.next(TIMEOUT)
    assert first.data is None
    assert first.id is not None
    return first


async def wait_released(http: httpx.AsyncClient, alias: str, name: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        current = await state(http, alias)
        if name not in current["subscribers"] and name not in current["upstream"]:
            return
        assert time.monotonic() < deadline, f"{name} still subscribed: {current}"
        await asyncio.sleep(0.02)


# -- streaming ------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ALL)
async def test_events_arrive_with_ids_names_and_json_data(
    server: Any, http: httpx.AsyncClient, alias: str
) -> None:
    name = channel()
    async with open_stream(stream_url(server, alias, name, event_key="type")) as stream:
        response = stream.response
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        await opened(stream)
        sent = [
            {"type": "chat.message", "text": "hi", "n": 1},
            {"text": "no type", "n": 2},
            {"type": "multi\nline", "text": "é ✓ \u2028", "n": 3},
        ]
        ids = [await publish(http, alias, name, message) for message in sent]
        received = [await stream.next_event(TIMEOUT) for _ in sent]
    assert [m.json for m in received] == sent
    assert [m.event for m in received] == ["chat.message", "message", "message"]
    if alias == "pubsub":
        assert ids == [None, None, None]
        assert [m.id for m in received] == [None, None, None]
    else:
        assert None not in ids
        assert [m.id for m in received] == ids


@pytest.mark.parametrize("alias", WITH_HISTORY)
async def test_reconnect_with_last_event_id_resumes_exactly_after_it(
    server: Any, http: httpx.AsyncClient, alias: str
) -> None:
    name = channel()
    url = stream_url(server, alias, name)
    async with open_stream(url) as stream:
        await opened(stream)
        for n in (1, 2, 3):
            await publish(http, alias, name, {"n": n})
        assert [(await stream.next_event()).json["n"] for _ in range(3)] == [1, 2, 3]
        last_id = stream.last_id
    await wait_released(http, alias, name)
    ids = [await publish(http, alias, name, {"n": n}) for n in (4, 5, 6)]

    assert last_id is not None
    async with open_stream(url, last_event_id=last_id) as stream:
        replayed = [await stream.next_event() for _ in range(3)]
        await publish(http, alias, name, {"n": 7})
        live = await stream.next_event()
    assert [m.json["n"] for m in replayed] == [4, 5, 6]
    assert [m.id for m in replayed] == ids
    assert all(m.event == "message" for m in replayed)  # no reset
    assert live.json == {"n": 7}


@pytest.mark.parametrize("alias", WITH_HISTORY)
async def test_last_event_id_query_parameter(
    server: Any, http: httpx.AsyncClient, alias: str
) -> None:
    name = channel()
    first = await publish(http, alias, name, {"n": 1})
    await publish(http, alias, name, {"n": 2})
    async with open_stream(stream_url(server, alias, name), params={"lastEventId": first}) as s:
        message = await s.next_event()
    assert (message.event, message.json) == ("message", {"n": 2})


@pytest.mark.parametrize("alias", WITH_HISTORY)
async def test_reconnect_before_any_event_loses_nothing(
    server: Any, http: httpx.AsyncClient, alias: str
) -> None:
    name = channel()
    url = stream_url(server, alias, name)
    async with open_stream(url) as stream:
        await opened(stream)  # the channel has no event yet; the id still marks the start
        start = stream.last_id
    await wait_released(http, alias, name)
    await publish(http, alias, name, {"n": 1})
    assert start is not None
    async with open_stream(url, last_event_id=start) as stream:
        message = await stream.next_event()
    assert (message.event, message.json) == ("message", {"n": 1})


@pytest.mark.parametrize("alias", WITH_HISTORY)
async def test_several_channels_resume_from_a_composite_id(
    server: Any, http: httpx.AsyncClient, alias: str
) -> None:
    a, b, quiet = channel("a"), channel("b"), channel("quiet")
    url = stream_url(server, alias, a, b, quiet)
    async with open_stream(url) as stream:
        await opened(stream)
        a1 = await publish(http, alias, a, "a1")
        message = await stream.next_event()
        assert (message.json, message.id) == ("a1", stream.last_id)
        last_id = stream.last_id
    assert last_id is not None and a in last_id and b in last_id and a1 != last_id
    await wait_released(http, alias, a)
    # While away: b gets its first event ever; a another one.
    await publish(http, alias, b, "b1")
    await publish(http, alias, a, "a2")
    async with open_stream(url, last_event_id=last_id) as stream:
        got = [await stream.next_event() for _ in range(2)]
        await publish(http, alias, quiet, "q1")
        got.append(await stream.next_event())
    assert sorted(m.json for m in got[:2]) == ["a2", "b1"]
    assert got[2].json == "q1"
    assert all(m.event == "message" for m in got)


async def test_backend_without_history_sends_a_reset_event(
    server: Any, http: httpx.AsyncClient
) -> None:
    name = channel()
    url = stream_url(server, "pubsub", name)
    async with open_stream(url) as stream:
        first = await opened(stream)  # an id, so a reconnecting client says so
    async with open_stream(url, last_event_id=first.id) as stream:
        reset = await stream.next_event()
        await publish(http, "pubsub", name, "live")
        live = await stream.next_event()
    assert reset.event == "reset"
    assert reset.json == {"channels": [name], "reason": "no-history"}
    assert live.json == "live"


@pytest.mark.parametrize("alias", WITH_HISTORY)
@pytest.mark.parametrize("bad_id", ["nonsense", "999999999999999-0", "a=b&c"])
async def test_unusable_id_sends_a_reset_event(
    server: Any, http: httpx.AsyncClient, alias: str, bad_id: str
) -> None:
    name = channel()
    await publish(http, alias, name, "before")
    async with open_stream(stream_url(server, alias, name), last_event_id=bad_id) as stream:
        reset = await stream.next_event()
        await publish(http, alias, name, "live")
        live = await stream.next_event()
    assert reset.event == "reset"
    assert reset.json == {"channels": [name], "reason": "unknown-id"}
    assert live.json == "live"  # and not "before": the stream restarted from now


async def test_id_fallen_out_of_history_sends_a_reset_event(
    server: Any, http: httpx.AsyncClient
) -> None:
    name = channel()
    url = stream_url(server, "small", name)  # HISTORY_SIZE 3
    old = await publish(http, "small", name, 1)
    for n in range(2, 7):
        await publish(http, "small", name, n)
    async with open_stream(url, last_event_id=old) as stream:
        reset = await stream.next_event()
        await publish(http, "small", name, 7)
        live = await stream.next_event()
    assert (reset.event, reset.json["reason"]) == ("reset", "unknown-id")
    assert live.json == 7

    # Still retained: resumes without a reset.
    kept = await publish(http, "small", name, 8)
    await publish(http, "small", name, 9)
    async with open_stream(url, last_event_id=kept) as stream:
        message = await stream.next_event()
    assert (message.event, message.json) == ("message", 9)


@pytest.mark.parametrize("alias", WITH_HISTORY)
@pytest.mark.parametrize("published", [False, True], ids=["empty", "after-newest"])
async def test_a_position_after_every_issued_id_sends_a_reset_event(
    server: Any, http: httpx.AsyncClient, alias: str, published: bool
) -> None:
    """A made-up id after every id the backend issued (on a channel without events, or
    after its newest event) is no position to resume from: accepted, the client's
    next events (lower ids) would be dropped as duplicates."""
    name = channel()
    if published:
        await publish(http, alias, name, "before")
    beyond = f"{10**14}-0" if alias == "streams" else str(10**15)
    async with open_stream(stream_url(server, alias, name), last_event_id=beyond) as stream:
        reset = await stream.next_event()
        await publish(http, alias, name, "live")
        live = await stream.next_event()
    assert (reset.event, reset.json) == ("reset", {"channels": [name], "reason": "unknown-id"})
    assert live.json == "live"


# -- keep-alive, retry, authorization -----------------------------------------------------


async def test_keepalive_comments_while_quiet(server: Any, http: httpx.AsyncClient) -> None:
    name = channel()
    async with open_stream(stream_url(server, "memory", name, keepalive=0.2, retry=2500)) as s:
        first = await opened(s)
        started = time.monotonic()
        pings = [await s.next(TIMEOUT) for _ in range(3)]
        elapsed = time.monotonic() - started
        await publish(http, "memory", name, "after")
        message = await s.next_event()
    assert first.retry == 2500
    assert all(p.comments == ["keep-alive"] and p.data is None for p in pings)
    assert 0.4 < elapsed < 5
    assert message.json == "after"


async def test_refused_channel_answers_403(server: Any, http: httpx.AsyncClient) -> None:
    allowed, secret = channel("ok"), channel("secret")
    response = await http.get(f"/sse/memory/stream/{allowed},{secret}/?deny={secret}")
    assert response.status_code == 403
    response = await http.get(f"/sse/memory/public/private.{secret}/")
    assert response.status_code == 403
    assert secret not in (await state(http, "memory"))["subscribers"]

    async with open_stream(f"{server.url}/sse/memory/public/public.{allowed}/") as stream:
        assert stream.response.status_code == 200
        await opened(stream)


# -- releasing the subscription ---------------------------------------------------------


@pytest.mark.parametrize("alias", ALL)
async def test_disconnect_releases_the_subscription(
    server: Any, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, alias: str
) -> None:
    name = channel()
    url = stream_url(server, alias, name)
    async with open_stream(url) as one, open_stream(url) as two:
        await opened(one)
        await opened(two)
        current = await state(http, alias)
        assert current["subscribers"][name] == 2  # two clients ...
        assert name in current["upstream"]  # ... one upstream subscription
        if alias == "pubsub":
            wire = f"{current['key_prefix']}:{name}"
            assert await redis_client.pubsub_numsub(wire) == [(wire.encode(), 1)]
        await publish(http, alias, name, "x")
        assert (await one.next_event()).json == (await two.next_event()).json == "x"
    await wait_released(http, alias, name)
    if alias == "pubsub":
        assert await redis_client.pubsub_numsub(wire) == [(wire.encode(), 0)]


async def test_disconnect_while_events_flow(server: Any, http: httpx.AsyncClient) -> None:
    name = channel()
    async with open_stream(stream_url(server, "memory", name)) as stream:
        await opened(stream)
        for n in range(20):
            await publish(http, "memory", name, n)
        await stream.next_event()
    for n in range(20, 40):
        await publish(http, "memory", name, n)
    await wait_released(http, "memory", name)


async def test_unreachable_backend_ends_the_stream(server: Any) -> None:
    """The status line is sent before subscribing: the stream ends (the client will
    reconnect), with a warning in the log and no traceback."""
    name = channel()
    started = time.monotonic()
    async with open_stream(stream_url(server, "down", name)) as stream:
        assert stream.response.status_code == 200
        with pytest.raises(EOFError):
            await stream.next(TIMEOUT)
    assert time.monotonic() - started < 5
    log = server.log()
    assert "BackendUnavailable" not in log and "hunter2" not in log
    if server.name == "daphne":
        assert f"EventStreamResponse of {name} ended: could not connect" in log


# -- in-process: the iterator itself ------------------------------------------------------


def _request(**headers: str) -> ASGIRequest:
    request = AsyncRequestFactory().get("/live/", headers=headers)
    assert isinstance(request, ASGIRequest)
    return request


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_slow_reader_catches_up_from_history_without_a_gap() -> None:
    """MAX_QUEUE 5: a burst of 30 while the client is not reading makes the subscriber
    lag; the stream resubscribes from its last position and loses nothing."""
    front = broadcasts["tiny_queue"]
    name = channel()
    response = EventStreamResponse(_request(), name, using="tiny_queue")
    chunks = aiter(response)
    first = (await anext(chunks)).decode()
    assert first.startswith("id: ")
    for n in range(30):
        await front.apublish(name, n)
    text = ""
    while text.count("data:") < 30:
        text += (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
    data = [int(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert data == list(range(30))
    assert "event: reset" not in text
    await chunks.aclose()  # type: ignore[attr-defined]
    assert name not in front.hubs.current().subscribers
    await front.aclose()


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_close_releases_a_stream_parked_at_a_yield() -> None:
    """Django closes the response when the client left while the server was writing;
    that alone ends the stream (the generators are not closed by the server)."""
    front = broadcasts["memory"]
    name = channel()
    response = EventStreamResponse(_request(), name, using="memory")
    chunks = aiter(response)
    await anext(chunks)  # subscribed, parked at a yield
    assert name in front.hubs.current().subscribers
    await sync_to_async(response.close)()
    for _ in range(100):
        if name not in front.hubs.current().subscribers:
            break
        await asyncio.sleep(0.01)
    assert name not in front.hubs.current().subscribers
    await front.aclose()


@override_settings(BROADCAST_BACKENDS=BACKENDS)
def test_wsgi_request_warns() -> None:
    with pytest.warns(RuntimeWarning, match="ASGI"):
        EventStreamResponse(RequestFactory().get("/"), "news", using="memory")


@override_settings(BROADCAST_BACKENDS=BACKENDS)
def test_composite_ids_round_trip() -> None:
    response = EventStreamResponse(_request(), "a", "b:c", using="memory")
    encoded = response.encode_id({"a": "5-0", "b:c": ""})
    assert encoded == "a=5-0&b:c="
    assert response.decode_id(encoded) == {"a": "5-0", "b:c": ""}
    assert response.decode_id("not composite") is None
    single = EventStreamResponse(_request(), "a", using="memory")
    assert single.encode_id({"a": "17"}) == "17"
    assert single.decode_id("17") == {"a": "17"}
    assert single.decode_id(single.encode_id({"a": ""})) == {"a": ""}
    assert single.decode_id(single.encode_id({"a": "x=y"})) == {"a": "x=y"}


# -- streams end with their clients -------------------------------------------------------


async def test_clients_leaving_a_busy_channel_release_everything(
    server: Any, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis
) -> None:
    """40 readers leave a channel that never rests: every stream ends and Redis has no
    subscriber left. (On Python 3.10 and 3.11 the disconnect's cancellation of a stream
    handed an event in the same loop turn was swallowed: some streams kept streaming
    to nobody, subscribed, and the server could not stop.)"""
    name = channel("busy")
    async with contextlib.AsyncExitStack() as stack:
        url = stream_url(server, "pubsub", name)
        streams = [await stack.enter_async_context(open_stream(url)) for _ in range(40)]
        for stream in streams:
            await opened(stream)
        flood = asyncio.create_task(  # until every stream is gone (30 s at most)
            http.post(f"/sse/pubsub/flood/{name}/", params={"seconds": 30}, timeout=60)
        )
        for stream in streams:
            await stream.next_event()
    await wait_released(http, "pubsub", name)
    wire = f"{(await state(http, 'pubsub'))['key_prefix']}:{name}"
    assert await redis_client.pubsub_numsub(wire) == [(wire.encode(), 0)]
    (await flood).raise_for_status()


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_a_stream_cancelled_as_an_event_arrives_ends() -> None:
    """The server cancels the task iterating the stream when the client leaves. Landing
    at every step of an event's delivery, the cancellation ends the stream."""
    front = broadcasts["memory"]
    for delay in range(12):
        name = channel()
        chunks = aiter(EventStreamResponse(_request(), name, using="memory"))
        await anext(chunks)
        reading = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0.01)  # waiting for an event
        publishing = asyncio.create_task(front.apublish(name, delay))
        for _ in range(delay):
            await asyncio.sleep(0)
        if reading.cancel():
            with pytest.raises(asyncio.CancelledError):
                await reading
        else:  # the event was read before the cancellation
            await chunks.aclose()  # type: ignore[attr-defined]
        await publishing
        assert name not in front.hubs.current().subscribers, f"still subscribed ({delay})"
    await front.aclose()


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_close_ends_a_stream_busy_reading() -> None:
    """close() while the stream awaits its next event (not parked at a yield) ends it."""
    front = broadcasts["memory"]
    name = channel()
    response = EventStreamResponse(_request(), name, using="memory")
    chunks = aiter(response)
    await anext(chunks)
    reading = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.01)
    await sync_to_async(response.close)()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reading, TIMEOUT)
    assert name not in front.hubs.current().subscribers
    await front.aclose()


# -- what a client's position costs -------------------------------------------------------


async def _opening(alias: str, name: str, last_event_id: str | None = None) -> tuple[str, int]:
    """The first chunk of a stream of ``name``, and how many events history reads
    returned until it was ready."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    CountsHistory.reset()
    chunks = aiter(EventStreamResponse(_request(**headers), name, using=alias))
    text = (await anext(chunks)).decode()
    read = CountsHistory.events_read
    await chunks.aclose()  # type: ignore[attr-defined]
    return text, read


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_an_old_position_reads_a_bounded_history() -> None:
    """3,000 retained 1 KB events on Redis Streams: a client back with a position older
    than all of them costs no more history than a page (the whole history was read
    three times), and is told that events after its position are gone."""
    front = broadcasts["counting_streams"]
    name = channel()
    for _ in range(60):
        await asyncio.gather(*(front.apublish(name, "x" * 1000) for _ in range(50)))
    fresh, fresh_read = await _opening("counting_streams", name)
    old, old_read = await _opening("counting_streams", name, "1-0")
    print(f"history events read: new client {fresh_read}, Last-Event-ID 1-0 {old_read}")
    assert fresh_read <= 2
    assert old_read <= EventStreamResponse.replay_page + 2
    assert "event: reset" not in fresh
    assert f'event: reset\ndata: {{"channels":["{name}"],"reason":"unknown-id"}}' in old
    await front.aclose()


def _data(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("alias", ["counting_memory", "counting_streams", "counting_postgres"])
async def test_replay_from_the_start_sends_every_retained_event_a_page_at_a_time(
    postgres_url: str, alias: str
) -> None:
    """``Last-Event-ID: <channel>=`` asks for every retained event: a client 3,000 events
    behind gets all of them, in order and once, then what was published while they
    were sent, then live events; no history read returns more than a page, so that
    is the most replayed events the response holds (a reset used to end the replay
    after max_replay events, all read at once)."""
    backends = {**BACKENDS, "counting_postgres": {**COUNTING_POSTGRES, "LOCATION": postgres_url}}
    with override_settings(BROADCAST_BACKENDS=backends):
        front = broadcasts[alias]
        name = channel()
        for start in range(0, 3000, 100):
            await asyncio.gather(*(front.apublish(name, n) for n in range(start, start + 100)))
        retained = [e.id for e in await front.ahistory(name, limit=None)]
        assert len(retained) == 3000
        CountsHistory.reset()
        response = EventStreamResponse(_request(**{"Last-Event-ID": f"{name}="}), name, using=alias)
        chunks = aiter(response)
        text = (await anext(chunks)).decode()
        meanwhile = [await front.apublish(name, f"meanwhile {n}") for n in range(5)]
        while "event: reset" not in text and len(_data(text)) < 3005:
            text += (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
        assert "event: reset" not in text
        while not text.endswith(f"id: {meanwhile[-1]}\n\n"):  # the block sent once subscribed
            text += (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
        await front.apublish(name, "live")
        text += (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
        await chunks.aclose()  # type: ignore[attr-defined]
        await front.aclose()
    ids = [line[4:] for line in text.splitlines() if line.startswith("id: ")]
    assert _data(text) == [*range(3000), *(f"meanwhile {n}" for n in range(5)), "live"]
    assert ids[:3005] == [*retained, *meanwhile]  # then the opening block's, then live's
    print(f"{alias}: largest history read {CountsHistory.largest_read} events")
    assert CountsHistory.largest_read <= EventStreamResponse.replay_page


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_retention_dropping_events_during_the_replay_sends_a_reset() -> None:
    """HISTORY_SIZE 300, pages of 100: 300 events published after the client got its
    first page drop the rest of what it was owed; it gets a ``lagged`` reset (never a
    silent gap) and continues live."""
    front = broadcasts["paging"]
    name = channel()
    for n in range(300):
        await front.apublish(name, n)
    request = _request(**{"Last-Event-ID": f"{name}="})
    chunks = aiter(EventStreamResponse(request, name, using="paging", replay_page=100))
    text = (await anext(chunks)).decode()
    assert _data(text) == list(range(100))
    for n in range(300, 600):
        await front.apublish(name, n)
    text = (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
    assert text.startswith(f'event: reset\ndata: {{"channels":["{name}"],"reason":"lagged"}}')
    await front.apublish(name, "live")
    assert _data((await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()) == ["live"]
    await chunks.aclose()  # type: ignore[attr-defined]
    await front.aclose()


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_a_lost_channel_is_reset_before_a_long_replay() -> None:
    """The replay of one channel may outlast the byte budget: the reset of another
    channel comes before it, or the reconnection (with that channel's new position)
    would never tell the client."""
    front = broadcasts["memory"]
    lost, behind = channel("lost"), channel("behind")
    for n in range(300):
        await front.apublish(behind, n)
    request = _request(**{"Last-Event-ID": f"{lost}=nonsense&{behind}="})
    response = EventStreamResponse(request, lost, behind, using="memory", byte_budget=2000)
    text = "".join([chunk.decode() async for chunk in response])  # ends at the budget
    reset = f'event: reset\ndata: {{"channels":["{lost}"],"reason":"unknown-id"}}\n\n'
    assert text.startswith(reset)
    assert text.endswith('event: reset\ndata: {"channels":[],"reason":"budget"}\n\n')
    assert _data(text)[1:-1] == list(range(100))  # between the resets: one page, over budget
    await front.aclose()


# -- slow clients, engine errors, revoked permissions ---------------------------------------


async def test_a_client_that_stops_reading_costs_the_server_bounded_memory(
    server: Any, http: httpx.AsyncClient
) -> None:
    """48 MB published to a client that never reads: the server's memory grows by the
    byte budget at most (Daphne buffered all of it; uvicorn waits for the socket)."""
    name = channel("slow")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.port))
    try:
        path = f"/sse/pubsub/stream/{name}/"
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        deadline = time.monotonic() + TIMEOUT
        while (await state(http, "pubsub"))["subscribers"].get(name) != 1:
            assert time.monotonic() < deadline, "the stream did not subscribe"
            await asyncio.sleep(0.02)
        before = rss(server.pid)
        for _ in range(12):
            flood = f"/sse/pubsub/flood/{name}/"
            response = await http.post(flood, params={"count": 1000, "size": 4000}, timeout=60)
            response.raise_for_status()
        grown = rss(server.pid) - before
    finally:
        client.close()
    print(f"{server.name} grew by {grown / 2**20:.1f} MB for 48 MB published")
    assert grown < 16 * 2**20
    await wait_released(http, "pubsub", name)


async def test_the_byte_budget_ends_the_stream_and_the_client_resumes(
    server: Any, http: httpx.AsyncClient
) -> None:
    """A stream ends after about byte_budget bytes with a reset that lists no channel
    (nothing was lost); reconnecting with the last id resumes without gap or duplicate."""
    name = channel()
    url = stream_url(server, "memory", name, byte_budget=1000)
    received: list[int] = []
    resets: list[Any] = []
    connections = 1
    async with contextlib.AsyncExitStack() as stack:
        stream = await stack.enter_async_context(open_stream(url))
        await opened(stream)
        for n in range(20):
            await publish(http, "memory", name, {"n": n, "pad": "x" * 200})
            while True:
                try:
                    message = await stream.next_event()
                except EOFError:
                    last_id = stream.last_id
                    await stack.aclose()
                    stream = await stack.enter_async_context(
                        open_stream(url, last_event_id=last_id)
                    )
                    connections += 1
                    continue
                if message.event == "reset":
                    resets.append(message.json)
                    continue
                received.append(message.json["n"])
                break
    assert received == list(range(20))
    assert connections >= 4
    assert len(resets) >= connections - 1
    assert all(reset == {"channels": [], "reason": "budget"} for reset in resets)


@contextlib.contextmanager
def no_traceback_logged(server: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails if the server logged a traceback meanwhile (uvicorn's log, which does not
    reach the root logger, is captured too; Daphne's is its output)."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    logged = len(server.log())
    try:
        yield
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert not [record for record in caplog.records if record.exc_info]
    assert "Traceback" not in server.log()[logged:]


@pytest.mark.parametrize(
    "alias, bad_id",
    [
        ("streams", "99999999999999999999999-0"),
        ("streams", "18446744073709551616-0"),
        ("memory", "99999999999999999999999-0"),
        ("postgres", "99999999999999999999999"),
        ("postgres", "99999999999999999999999-0"),
    ],
)
async def test_an_id_the_engine_would_refuse_sends_a_reset(
    server: Any,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    alias: str,
    bad_id: str,
) -> None:
    name = channel()
    await publish(http, alias, name, "before")
    with no_traceback_logged(server, caplog):
        async with open_stream(stream_url(server, alias, name), last_event_id=bad_id) as stream:
            reset = await stream.next_event()
            await publish(http, alias, name, "live")
            live = await stream.next_event()
    assert reset.event == "reset"
    assert reset.json == {"channels": [name], "reason": "unknown-id"}
    assert live.json == "live"


async def test_a_revoked_permission_ends_the_stream(server: Any, http: httpx.AsyncClient) -> None:
    name = channel("revocable")
    url = stream_url(server, "memory", name, reauthorize_every=0.2)
    async with open_stream(url) as stream:
        await opened(stream)
        await publish(http, "memory", name, "allowed")
        assert (await stream.next_event()).json == "allowed"
        (await http.post(f"/sse/revoke/{name}/")).raise_for_status()
        end = await stream.next_event()
        with pytest.raises(EOFError):
            await stream.next(TIMEOUT)
    assert (end.event, end.json) == ("reset", {"channels": [name], "reason": "forbidden"})
    assert (await http.get(url.removeprefix(server.url))).status_code == 403
    await wait_released(http, "memory", name)


@override_settings(BROADCAST_BACKENDS=BACKENDS)
async def test_reauthorization_may_be_an_async_check() -> None:
    member = True

    class MembersOnly(EventStreamResponse):
        reauthorize_every = 0.05

        async def ahas_permission(self, request: HttpRequest, channel: str) -> bool:
            await asyncio.sleep(0)  # an async query, say
            return member

    front = broadcasts["memory"]
    name = channel()
    chunks = aiter(MembersOnly(_request(), name, using="memory"))
    await anext(chunks)
    await front.apublish(name, "still a member")
    assert b"still a member" in await asyncio.wait_for(anext(chunks), TIMEOUT)
    member = False
    end = (await asyncio.wait_for(anext(chunks), TIMEOUT)).decode()
    assert end == f'event: reset\ndata: {{"channels":["{name}"],"reason":"forbidden"}}\n\n'
    with pytest.raises(StopAsyncIteration):
        await anext(chunks)
    assert name not in front.hubs.current().subscribers
    await front.aclose()
