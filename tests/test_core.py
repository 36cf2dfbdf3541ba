"""The app around the backends: settings, checks, sync bridge, on_commit, testing helpers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings

from django_broadcaster import Broadcast, SubscriberLagged, broadcast, broadcasts
from django_broadcaster.masking import mask_password, redact
from django_broadcaster.testing import capture, use_memory_backend

from .support.backends import make_bus

MEMORY = "django_broadcaster.backends.memory.MemoryBackend"


def check_ids(backends: object) -> list[str]:
    with override_settings(BROADCAST_BACKENDS=backends):
        return [m.id for m in run_checks(tags=["django_broadcaster"]) if m.id]


def test_default_is_one_memory_backend() -> None:
    with override_settings():
        from django.conf import settings

        del settings.BROADCAST_BACKENDS
        assert type(broadcasts["default"].config.backend_class).__name__ == "type"
        assert broadcasts["default"].config.backend_class.__name__ == "MemoryBackend"
        assert list(broadcasts) == ["default"]


def test_handler_returns_one_instance_per_alias_for_every_thread() -> None:
    with use_memory_backend():
        seen: list[Broadcast] = []
        threads = [
            threading.Thread(target=lambda: seen.append(broadcasts["default"])) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(b) for b in seen}) == 1
        assert seen[0] is broadcasts["default"]
        assert broadcast.alias == "default"


def test_override_settings_takes_effect() -> None:
    with override_settings(BROADCAST_BACKENDS={"default": {"BACKEND": MEMORY, "LOCATION": "x1"}}):
        assert broadcasts["default"].config.location == "x1"
    with override_settings(BROADCAST_BACKENDS={"default": {"BACKEND": MEMORY, "LOCATION": "x2"}}):
        assert broadcasts["default"].config.location == "x2"
        with pytest.raises(KeyError, match="no broadcast backend 'pg'"):
            broadcasts["pg"]


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ([], "django_broadcaster.E001"),
        ({"default": "memory"}, "django_broadcaster.E001"),
        ({"other": {"BACKEND": MEMORY}}, "django_broadcaster.E009"),
        ({"default": {}}, "django_broadcaster.E002"),
        ({"default": {"BACKEND": "no.such.Backend"}}, "django_broadcaster.E002"),
        (
            {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            "django_broadcaster.E003",
        ),
        ({"default": {"BACKEND": MEMORY, "LOCALTION": "typo"}}, "django_broadcaster.E005"),
        ({"default": {"BACKEND": MEMORY, "KEY_PREFIX": 3}}, "django_broadcaster.E005"),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": []}}, "django_broadcaster.E006"),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": {"MAXQUEUE": 3}}}, "django_broadcaster.E006"),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": {"MAX_QUEUE": 0}}}, "django_broadcaster.E006"),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": {"TIMEOUT": "5"}}}, "django_broadcaster.E006"),
        (
            {"default": {"BACKEND": MEMORY, "OPTIONS": {"SERIALIZER": "pickle"}}},
            "django_broadcaster.E006",
        ),
        (
            {"default": {"BACKEND": MEMORY, "OPTIONS": {"HISTORY_SIZE": -1}}},
            "django_broadcaster.E006",
        ),
        ({"default": {"BACKEND": MEMORY, "LOCATION": 5}}, "django_broadcaster.E007"),
    ],
)
def test_settings_mistakes_are_system_check_errors(backends: object, expected: str) -> None:
    assert check_ids(backends) == [expected]


def test_good_settings_pass_the_checks() -> None:
    assert check_ids({"default": {"BACKEND": MEMORY, "OPTIONS": {"MAX_QUEUE": 10}}}) == []


def test_mistakes_raise_improperly_configured_at_first_use_too() -> None:
    with (
        override_settings(BROADCAST_BACKENDS={"default": {"BACKEND": MEMORY, "OPTIONS": {"X": 1}}}),
        pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) for MemoryBackend: X"),
    ):
        broadcasts["default"]


def test_missing_client_library_is_e004(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A backend module importing a client library that is not installed
    # (None in sys.modules makes Python's import fail as if it were absent).
    monkeypatch.setitem(sys.modules, "msgpack", None)
    (tmp_path / "needs_msgpack_backend.py").write_text("import msgpack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_ids({"default": {"BACKEND": "needs_msgpack_backend.Backend"}}) == [
        "django_broadcaster.E004"
    ]
    serializer = {"BACKEND": MEMORY, "OPTIONS": {"SERIALIZER": "msgpack"}}
    assert check_ids({"default": serializer}) == ["django_broadcaster.E004"]


def test_passwords_are_masked() -> None:
    assert mask_password("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_password("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    assert (
        mask_password("postgresql://h/db?password=s3cret&x=1")
        == "postgresql://h/db?password=***&x=1"
    )
    assert redact("auth failed for s3cret", "redis://u:s3cret@h") == "auth failed for ***"
    front = make_bus("memory", LOCATION="redis://:s3cret@h:1/0")
    assert "s3cret" not in repr(front)


async def test_stalled_subscriber_memory_stays_bounded() -> None:
    bus = make_bus("memory", OPTIONS={"MAX_QUEUE": 100})
    try:
        async with bus.subscribe("flood") as stalled, bus.subscribe("flood") as reader:
            largest = 0
            for i in range(100_000):
                await bus.apublish("flood", i)
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let the hub dispatch
                    largest = max(largest, stalled.pending)
                    while reader.pending:
                        await reader.get()
            await asyncio.sleep(0)
            assert largest <= 100
            assert stalled.pending == 100
            assert stalled not in bus.hubs.current().subscribers["flood"]
            for _ in range(100):
                await stalled.get()
            with pytest.raises(SubscriberLagged, match="since='"):
                await stalled.get()
            while reader.pending:
                await reader.get()
            await bus.apublish("flood", "still works")
            assert (await reader.get(5)).message == "still works"
    finally:
        await bus.aclose()


async def test_several_event_loops_in_threads_all_receive() -> None:
    """Memory is one process-wide bus: each loop has its own hub, all get the event."""
    bus = make_bus("memory")
    ready = threading.Barrier(4)
    results: list[object] = []

    def other_loop() -> None:
        async def listen() -> None:
            async with bus.subscribe("loops") as sub:
                await asyncio.to_thread(ready.wait)
                results.append((await sub.get(5)).message)

        asyncio.run(listen())

    threads = [threading.Thread(target=other_loop) for _ in range(3)]
    for t in threads:
        t.start()
    await asyncio.to_thread(ready.wait)
    await bus.apublish("loops", "everyone")
    await asyncio.to_thread(lambda: [t.join(5) for t in threads])
    assert results == ["everyone"] * 3
    await bus.aclose()


def test_sync_publish_reuses_one_hub() -> None:
    bus = make_bus("memory")
    for i in range(50):
        bus.publish("sync.reuse", i)
    assert len(bus.hubs) == 1
    assert bus.stats()["published"] == 50
    assert [e.message for e in bus.history("sync.reuse", limit=3)] == [47, 48, 49]
    bus.close()


@pytest.mark.django_db(transaction=True)
def test_on_commit_publishes_after_commit_and_never_on_rollback() -> None:
    with use_memory_backend(), capture("orders") as events:
        with transaction.atomic():
            assert broadcast.publish("orders", "committed", on_commit=True) is None
            assert events == []
        assert [e.message for e in events] == ["committed"]
        with pytest.raises(RuntimeError), transaction.atomic():
            broadcast.publish("orders", "rolled back", on_commit=True)
            raise RuntimeError
        with pytest.raises(TypeError):
            broadcast.publish("orders", object(), on_commit=True)  # fails now, not at commit
        assert [e.message for e in events] == ["committed"]
        assert [e.message for e in broadcast.history("orders")] == ["committed"]


def test_capture_records_sync_and_async_publishes() -> None:
    with use_memory_backend(), capture() as everything, capture("a") as only_a:
        broadcast.publish("a", 1)
        asyncio.run(broadcast.apublish("b", 2))
        assert [(e.channel, e.message) for e in everything] == [("a", 1), ("b", 2)]
        assert [e.message for e in only_a] == [1]
        assert everything[0].id is not None


def test_process_exits_promptly_after_asyncio_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Hubs close themselves when their loop shuts down: no hang, no 'Event loop is closed'."""
    script = textwrap.dedent(
        """
        import asyncio, django, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.settings"
        django.setup()
        from django_broadcaster import broadcast

        async def main():
            sub = broadcast.subscribe("bye")
            await sub.__aenter__()          # left open on purpose
            await broadcast.apublish("bye", 1)
            print((await sub.get(5)).message)

        asyncio.run(main())
        broadcast.publish("bye", 2)        # the sync bridge afterwards
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd="."
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "done"]
    assert "Event loop is closed" not in result.stderr
    assert "Task was destroyed" not in result.stderr
