"""A loopback TCP proxy the test controls, to make half-open links.

`DarkProxy` forwards every connection made to its port to a target server.
`go_dark` stops forwarding both ways without closing anything (no FIN, no RST
reaches either end), as a network partition, a dead NAT entry or a frozen
middlebox does; `heal` resumes. What either end sends meanwhile is held, as TCP
retransmissions would deliver it after the partition, except on connections
whose server end closed during the darkness ("severed"): the server is gone,
so what was held is dropped, the client is never told, and the first bytes it
sends after the heal are answered with a reset, as the real server's host
answers a segment for a connection it no longer knows. A client that only
listens on a severed connection therefore hears nothing, ever.

Connections opened while dark are held unanswered until the heal. The proxy
runs its own event loop in a thread, so the test may block (restart a server,
sleep) without freezing it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .redis_servers import free_port

T = TypeVar("T")
CHUNK = 65536


class _Pair:
    """One proxied connection: the client's end, the server's end, held bytes."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.severed = False  # the server end closed while the link was dark
        self.held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self.client_gone = asyncio.Event()

    def reset_client(self) -> None:
        """Close the client's end with a reset (RST), as a host that forgot it would."""
        sock = self.client.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        """Drop both ends at once."""
        self.client.transport.abort()
        if self.server is not None:
            self.server.transport.abort()
        self.client_gone.set()


class DarkProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port``; `go_dark` and `heal`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._dark = False
        self._light: asyncio.Event | None = None

    # -- control (from the test's thread) -------------------------------------

    def start(self) -> DarkProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def go_dark(self) -> None:
        """Stop forwarding both ways; nothing is closed."""
        self._call(self._set_dark())

    def heal(self) -> None:
        """Forward again: held bytes go out, severed connections stay silent."""
        self._call(self._set_light())

    def server_ports(self) -> set[int]:
        """The local ports of the proxy's connections to the target (what the target
        sees as the client's port, e.g. ``pg_stat_activity.client_port``)."""
        return self._call(self._server_ports())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- the proxy's loop ------------------------------------------------------

    async def _listen(self) -> None:
        self._light = asyncio.Event()
        self._light.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.close()

    async def _set_dark(self) -> None:
        assert self._light is not None
        self._dark = True
        self._light.clear()

    async def _set_light(self) -> None:
        assert self._light is not None
        self._dark = False
        for pair in self._pairs:
            held, pair.held = pair.held, []
            if not pair.severed:
                for writer, data in held:
                    writer.write(data)
        self._light.set()

    async def _server_ports(self) -> set[int]:
        return {
            pair.server.get_extra_info("sockname")[1]
            for pair in self._pairs
            if pair.server is not None and not pair.server.is_closing()
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._light is not None
        pair = _Pair(writer)
        self._pairs.add(pair)
        try:
            await self._light.wait()  # a connection made while dark waits for the heal
            try:
                server_reader, pair.server = await asyncio.open_connection(
                    "127.0.0.1", self.target_port
                )
            except OSError:
                pair.reset_client()
                return
            await asyncio.gather(
                self._pump(pair, reader, pair.server, to_server=True),
                self._pump(pair, server_reader, writer, to_server=False),
                return_exceptions=True,
            )
        finally:
            self._pairs.discard(pair)
            pair.close()

    async def _pump(
        self,
        pair: _Pair,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        try:
            await self._carry(pair, reader, writer, to_server=to_server)
        except (OSError, RuntimeError):
            pair.close()

    async def _carry(
        self,
        pair: _Pair,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                if to_server:  # the client closed: nothing left to carry
                    pair.close()
                elif self._dark or pair.severed:
                    pair.severed = True  # the server ended behind the dark link
                    pair.held = []
                    await pair.client_gone.wait()
                elif writer.can_write_eof():
                    writer.write_eof()
                return
            if pair.severed:
                if to_server and not self._dark:
                    pair.reset_client()  # the server's host no longer knows this link
                    return
                continue  # lost in the dark
            if self._dark:
                pair.held.append((writer, data))
                continue
            writer.write(data)
            await writer.drain()
