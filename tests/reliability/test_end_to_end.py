"""End to end: two ASGI hosts (uvicorn and Daphne, processes of their own) on one
Redis Streams bus, SSE clients and WebSocket consumers (the Channels layer) spread
over both, events published by a third process.

Every client that stays receives every event, in order; a share of them leave at
random moments; the servers' memory stays within a bound; and once everyone has
left (and one more event was published, which releases consumers that died while
sending), nothing is left behind on either server: no subscriber, no upstream
subscription, no layer channel or group, no extra task.

CI scale: 200 SSE clients and 40 WebSocket consumers, 200 events; full scale
(``BROADCASTER_RELIABILITY=full``): 1,000 and 200, 1,000 events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from channels.layers import channel_layers
from django.test import override_settings

from django_broadcaster.config import create_broadcast
from django_broadcaster.layers.names import PROCESS_TOPIC

from ..support.backends import REDIS_URL
from ..support.layer_consumers import ROOM
from ..support.sse_client import EventStream
from ..support.sse_servers import REPO, DaphneProcess, UvicornProcess, rss
from .scale import scaled

pytestmark = pytest.mark.reliability

SSE_CLIENTS = scaled(200, 1000)
WS_CLIENTS = scaled(40, 200)
EVENTS = scaled(200, 1000)
#: Clients that leave at a random moment while events flow.
LEAVING = 0.2
#: How much a server's resident memory may grow over the run (bytes).
RSS_BOUND = scaled(64, 160) * 2**20
#: CONFIG expiry: a message waits this long for a busy consumer, and the channel of a
#: consumer that left is released this long after.
EXPIRY = scaled(10, 60)

APP = "tests.support.e2e_asgi:application"
PUBLISHER = """
import sys, time
import django
django.setup()
from django_broadcaster import broadcast
count, room = int(sys.argv[1]), sys.argv[2]
for n in range(count):
    broadcast.publish(room, {"type": "chat.message", "text": str(n)})
    time.sleep(0.002)
"""


@pytest.fixture
def settings_for_hosts() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    backends = {
        "default": {
            "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"e2e{uuid.uuid4().hex[:10]}",
        }
    }
    layers = {
        "default": {
            "BACKEND": "django_broadcaster.layers.BroadcastChannelLayer",
            # A consumer's queue holds every event of the run: a busy host's consumers
            # fall behind for a while, and group_send skips a full member (Channels).
            "CONFIG": {"using": "default", "expiry": EXPIRY, "capacity": EVENTS},
        }
    }
    with override_settings(BROADCAST_BACKENDS=backends, CHANNEL_LAYERS=layers):
        channel_layers.backends.clear()
        yield backends, layers
    channel_layers.backends.clear()


async def state(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await http.get(f"{url}/sse/default/state/")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def others(names: Any) -> list[str]:
    """``names`` but the layer's own process channel, which a process keeps once it
    used the layer (one subscription per process, whatever the consumers)."""
    return [name for name in names if not name.startswith(PROCESS_TOPIC)]


async def until(check: Any, what: str, timeout: float = 60, show: Any = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"{what} within {timeout:g}s: {show and await show()}"
        await asyncio.sleep(0.2)


class SseClient:
    """One browser tab on an SSE stream of the room: the event numbers it received."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.host = url
        self.received: list[int] = []
        self.connected = asyncio.Event()
        self.task = asyncio.ensure_future(self.run(http, url))

    async def run(self, http: httpx.AsyncClient, url: str) -> None:
        headers = {"Accept": "text/event-stream"}
        async with http.stream("GET", f"{url}/sse/default/stream/{ROOM}/", headers=headers) as r:
            self.connected.set()
            stream = EventStream(r)
            while len(self.received) < EVENTS:
                message = await stream.next_event(timeout=120)
                self.received.append(int(message.json["text"]))


class WsClient:
    """One WebSocket consumer in the room: the event numbers it received."""

    def __init__(self, url: str) -> None:
        self.host = url
        self.received: list[int] = []
        self.connected = asyncio.Event()
        self.task = asyncio.ensure_future(self.run(url))

    async def run(self, url: str) -> None:
        ws = await websockets.connect(url.replace("http://", "ws://") + "/ws/room/")
        try:
            self.connected.set()  # connect() returned: the consumer joined the group
            while len(self.received) < EVENTS:
                self.received.append(int(json.loads(await ws.recv())["text"]))
        finally:
            # Gone at once, as a closed tab: no closing handshake to wait for (one
            # cancelled midway may leave the socket open, and the consumer with it).
            ws.transport.abort()


async def test_many_clients_on_two_hosts_get_every_event_and_leave_nothing(
    settings_for_hosts: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    backends, layers = settings_for_hosts
    layers_env = {"BROADCASTER_TEST_CHANNEL_LAYERS": json.dumps(layers)}
    uvicorn_host, daphne_host = UvicornProcess(APP, layers_env), DaphneProcess(APP, layers_env)
    hosts = [uvicorn_host, daphne_host]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    clients: list[SseClient | WsClient] = []
    try:
        for host in hosts:
            host.start(backends)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            # One client of each kind per host comes and goes first: what a host keeps
            # running with nobody connected (its hub's reader) is in the baseline.
            warm = [SseClient(http, host.url) for host in hosts] + [WsClient(h.url) for h in hosts]
            await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in warm)), 60)
            for client in warm:
                client.task.cancel()
            await asyncio.gather(*(c.task for c in warm), return_exceptions=True)

            async def quiet() -> bool:
                return not any([others((await state(http, h.url))["subscribers"]) for h in hosts])

            async def states() -> list[dict[str, Any]]:
                return [await state(http, h.url) for h in hosts]

            await until(quiet, "the warm-up clients gone", show=states)
            idle = {host.name: await state(http, host.url) for host in hosts}
            rss_before = {host.name: rss(host.pid) for host in hosts}
            for index in range(SSE_CLIENTS):
                clients.append(SseClient(http, hosts[index % 2].url))
            for index in range(WS_CLIENTS):
                clients.append(WsClient(hosts[index % 2].url))
            await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)

            async def subscribed() -> bool:
                for index, host in enumerate(hosts):
                    sse = len(range(index, SSE_CLIENTS, 2))
                    now = (await state(http, host.url))["subscribers"].get(ROOM, 0)
                    if now < sse + 1:  # the SSE streams and the layer's group
                        return False
                return True

            await until(subscribed, "every SSE stream and both groups subscribed")
            leaving = random.Random(3).sample(clients, int(len(clients) * LEAVING))
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.support.command_settings",
                "BROADCASTER_TEST_BACKENDS": json.dumps(backends),
            }
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISHER, str(EVENTS), ROOM, cwd=REPO, env=env
            )
            for client in leaving:  # at random moments while events flow
                await asyncio.sleep(random.uniform(0, 2 * EVENTS * 0.002 / len(leaving)))
                client.task.cancel()
            assert await asyncio.wait_for(publisher.wait(), 120) == 0
            staying = [c for c in clients if c not in leaving]
            done, _ = await asyncio.wait([c.task for c in staying], timeout=120)
            short = [
                (type(c).__name__, c.host, len(c.received))
                for c in staying
                if c.received != list(range(EVENTS))
            ]
            assert not short, f"{len(short)} clients missed events (kind, host, got): {short[:9]}"
            for task in done:
                task.result()
            rss_after = {host.name: rss(host.pid) for host in hosts}
            for client in leaving:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await client.task

            async def clean() -> bool:
                for host in hosts:
                    now = await state(http, host.url)
                    layer = now["layer"]
                    if others(now["subscribers"]) or others(now["upstream"]) or layer["channels"]:
                        return False
                    if layer["groups"] or layer["memberships"]:
                        return False
                    if now["tasks"] > idle[host.name]["tasks"]:
                        return False
                return True

            # A consumer whose client vanished while it sent a message dies with it,
            # before its disconnect() (and group_discard) can run; the layer releases
            # it when a group message then expires unread in its queue. Rooms keep
            # talking: one more event, after everyone left.
            front = create_broadcast("default", backends["default"])
            await front.apublish(ROOM, {"type": "chat.message", "text": "-1"})
            await front.aclose()
            await until(clean, "nothing left on either server", 2 * EXPIRY + 30, states)
        print(
            f"\n{SSE_CLIENTS} SSE + {WS_CLIENTS} WebSocket clients, {EVENTS} events; RSS: "
            + ", ".join(
                f"{name} {rss_before[name] / 2**20:.1f} -> {rss_after[name] / 2**20:.1f} MiB"
                for name in rss_before
            )
        )
        for name, before in rss_before.items():
            grown = rss_after[name] - before
            assert grown < RSS_BOUND, f"{name} grew by {grown / 2**20:.1f} MiB"
    finally:
        for client in clients:
            client.task.cancel()
        await asyncio.gather(*(c.task for c in clients), return_exceptions=True)
        for host in hosts:
            host.stop()
