"""Event loops: the bridge loop of sync callers, per-loop state, calls across loops.

Sync callers (WSGI views, signals, threads, management commands) share one
long-lived "bridge" loop per process, so they share its connections: no
connection per call, no "Event loop is closed". Coroutines started on one of
asgiref's throwaway loops (``async_to_sync`` outside any server loop makes one
per call) are sent there too.

This is the one module that touches asgiref internals (see `on_throwaway_loop`);
``tests/test_loops.py`` pins the asgiref versions it is known to work with.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, Generic, TypeVar

from asgiref.sync import AsyncToSync

T = TypeVar("T")
V = TypeVar("V")

#: What a clean-up handler that awaits, or schedules on its event loop, catches
#: before re-raising: errors and cancellation. Not ``BaseException``: a coroutine
#: closed after its loop closed gets ``GeneratorExit``, and awaiting then
#: ("coroutine ignored GeneratorExit") or scheduling on the closed loop ("Event
#: loop is closed") only adds an error printed as ignored.
ERRORS_AND_CANCELLATION = (Exception, asyncio.CancelledError)

_lock = threading.Lock()
_bridge: asyncio.AbstractEventLoop | None = None


def bridge_loop() -> asyncio.AbstractEventLoop:
    """The process's bridge loop, started (in a daemon thread) on first use."""
    global _bridge
    with _lock:
        if _bridge is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="django-broadcaster-sync", daemon=True
            ).start()
            _bridge = loop
        return _bridge


def _forget_after_fork() -> None:
    global _bridge, _lock
    _bridge = None  # the thread did not survive the fork; the next call starts one
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def on_throwaway_loop() -> bool:
    """Whether the running loop is one of asgiref's per-call loops.

    ``async_to_sync()`` called outside a server loop runs each call on a new
    loop that it closes right after; connections made there would die with it.
    asgiref keeps those loops as the keys of ``AsyncToSync.loop_thread_executors``
    (an internal, checked by the tests on every supported asgiref version).
    """
    return asyncio.get_running_loop() in AsyncToSync.loop_thread_executors


def on_lasting_loop(coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """``await on_lasting_loop(coro)`` runs ``coro`` here, or on the bridge loop when
    this loop is a throwaway one. (Not a coroutine itself: on the common path it
    hands back ``coro``, adding no frame to a hot call.)"""
    if on_throwaway_loop():
        return run_on(bridge_loop(), coro)
    return coro


async def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (running in another thread) and await its result here."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and wait for its result in this (sync) thread."""
    return submit(coro).result()


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule ``coro`` on the bridge loop."""
    return asyncio.run_coroutine_threadsafe(coro, bridge_loop())


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop of this thread, or ``None`` in sync code."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: Tasks started by `finish_on`; kept here so they are not garbage-collected early.
_detached: set[asyncio.Task[Any]] = set()


def finish_on(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], timeout: float
) -> None:
    """From sync code: run ``coro`` on ``loop`` as well as can be done from here.

    On another thread's running loop, wait up to ``timeout`` seconds for it; on
    this thread's running loop it cannot be waited for and finishes once the
    caller yields; on a stopped loop it cannot run and is dropped.
    """
    if loop is running_loop():
        task = loop.create_task(coro)
        _detached.add(task)
        task.add_done_callback(_detached.discard)
    elif loop.is_running():
        with suppress(Exception):
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
    else:
        coro.close()


class PerLoop(Generic[V]):
    """One value per event loop, made by ``factory`` on first use from that loop.

    Values of closed loops are dropped as new loops come, so a process running
    many short loops (tests, ``asyncio.run`` per command) does not accumulate them.
    """

    def __init__(
        self,
        factory: Callable[[asyncio.AbstractEventLoop], V],
        dropped: Callable[[V], None] | None = None,
    ) -> None:
        self._factory = factory
        #: Called with each value dropped because its loop closed.
        self._dropped = dropped
        self._values: dict[asyncio.AbstractEventLoop, V] = {}
        self._lock = threading.Lock()
        #: ``find(loop)``: ``loop``'s value, if it has one. (The dict's own ``get``, not
        #: a method: some callers look on every message.)
        self.find: Callable[[asyncio.AbstractEventLoop], V | None] = self._values.get

    def get(self) -> V:
        """The running loop's value, made if needed."""
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            with self._lock:
                stale = [self._values.pop(lp) for lp in list(self._values) if lp.is_closed()]
                value = self._values.get(loop)
                if value is None:
                    value = self._values[loop] = self._factory(loop)
            if self._dropped is not None:
                for old in stale:
                    self._dropped(old)
        return value

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, V]]:
        """Every (loop, value) pair, a snapshot."""
        with self._lock:
            return list(self._values.items())

    def values(self) -> list[V]:
        """Every value, a snapshot."""
        with self._lock:
            return list(self._values.values())

    def discard(self, loop: asyncio.AbstractEventLoop, value: V) -> None:
        """Forget ``loop``'s value if it is still ``value``."""
        with self._lock:
            if self._values.get(loop) is value:
                del self._values[loop]

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
