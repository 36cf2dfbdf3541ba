"""End to end: the testproject's chat in a real browser, across two server processes.

Two Daphne processes share one bus (Redis Streams, then PostgreSQL); a page on
each. A message posted on page A (a fetch to a sync view that calls
``broadcast.publish``) must reach page B through B's WebSocket (a Channels
consumer in group ``chat.<room>``) and B's activity feed (Server-Sent Events);
reloading B must replay it from history. The demo's default, the memory
backend, runs the same flow with both pages on one server.

Needs Debian's chromium (``/usr/bin/chromium``), Redis and PostgreSQL on
loopback; ``scripts/test.sh`` provides them. Writes ``artifacts/chat.png``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from .support.e2e_servers import ARTIFACTS, DaphneServer, manage, project_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.timeout(180)
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Chat:
    """One person's browser tab on a room page."""

    def __init__(self, browser: Browser, stack: ExitStack, name: str) -> None:
        self.name = name
        self.context: BrowserContext = browser.new_context(viewport={"width": 1240, "height": 780})
        stack.callback(self.context.close)
        self.context.add_init_script(f"localStorage.setItem('chat.author', {name!r})")
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        self.page.on(
            "console",
            lambda msg: msg.type == "error" and self.errors.append(f"{name}: {msg.text}"),
        )

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait_live()

    def reload(self) -> None:
        self.page.reload()
        self.wait_live()

    def wait_live(self) -> None:
        expect(self.page.locator("#socket-status")).to_have_attribute("data-state", "open")
        expect(self.page.locator("#feed-status")).to_have_attribute("data-state", "open")

    def send(self, text: str) -> None:
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")
        expect(self.page.locator("#text")).to_have_value("")  # the sync view answered 201
        expect(self.page.locator("#form-error")).to_be_hidden()

    def message(self, text: str, source: str | None = None) -> Locator:
        selector = "#messages .message" + (f'[data-source="{source}"]' if source else "")
        return self.page.locator(selector, has_text=text)

    def activity(self, text: str, kind: str = "message") -> Locator:
        return self.page.locator(f'#activity .feed-item[data-kind="{kind}"]', has_text=text)


def run_chat(
    browser: Browser, host_a: DaphneServer, host_b: DaphneServer, screenshot: Path
) -> None:
    """The flow every backend must pass; ``host_a`` and ``host_b`` may be one server.

    The room starts empty: the servers are fresh and their KEY_PREFIX is new."""
    room = "lobby"
    with ExitStack() as stack:
        alice = Chat(browser, stack, "alice")
        bob = Chat(browser, stack, "bob")
        alice.open(f"{host_a.url}/chat/{room}/")
        bob.open(f"{host_b.url}/chat/{room}/")
        expect(bob.page.locator("#served-by")).to_have_text(host_b.address)

        # Bob's consumer (host B) announced him with group_send: alice's SSE feed (host A) shows it.
        expect(alice.activity("bob joined", kind="presence")).to_have_count(1)

        # A message posted on host A reaches page B over the WebSocket and over SSE.
        hello = "Hello from host A!"
        alice.send(hello)
        expect(bob.message(hello, source="socket")).to_have_count(1)
        expect(bob.message(hello)).to_contain_text(f"via {host_a.address}")
        expect(bob.activity(hello)).to_have_count(1)
        expect(alice.message(hello, source="socket")).to_have_count(1)
        expect(alice.activity(hello)).to_have_count(1)

        # And back.
        reply = "Hi alice, bob here, on host B."
        bob.send(reply)
        expect(alice.message(reply, source="socket")).to_have_count(1)
        expect(alice.message(reply)).to_contain_text(f"via {host_b.address}")
        expect(alice.activity(reply)).to_have_count(1)
        alice.send("Same room, two Daphne processes, one bus.")
        bob.send("Reload and the history is still here.")
        expect(bob.message("history is still here", source="socket")).to_have_count(1)

        # Reloading page B replays the recent messages from history, each once, in order.
        bob.reload()
        for text in (hello, reply):
            expect(bob.message(text, source="history")).to_have_count(1)
            expect(bob.message(text)).to_have_count(1)
        texts = bob.page.locator("#messages .message .text").all_inner_texts()
        assert texts.index(hello) < texts.index(reply), texts

        # After the reload, page B is live again on both streams.
        welcome = "Welcome back, bob!"
        alice.send(welcome)
        expect(bob.message(welcome, source="socket")).to_have_count(1)
        expect(bob.activity(welcome)).to_have_count(1)

        # Page A has seen it all live: both hosts' messages, joins and leaves, event ids.
        expect(alice.activity("bob joined", kind="presence")).to_have_count(2)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        alice.page.screenshot(path=str(screenshot))
        assert not alice.errors + bob.errors, alice.errors + bob.errors


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[DaphneServer]]:
    """Started servers go in this list; all are stopped (and their logs shown on failure)."""
    started: list[DaphneServer] = []
    try:
        yield started
    finally:
        stop_all(started)
        for server in started:
            print(f"--- daphne {server.name} log ---\n{server.log()}")


def start(
    servers: list[DaphneServer], name: str, env: dict[str, str], log_dir: Path
) -> DaphneServer:
    server = DaphneServer(name, env, log_dir)
    servers.append(server)
    server.start()
    return server


def stop_all(servers: list[DaphneServer]) -> None:
    for server in servers:
        server.stop()


# Django's ASGIHandler.handle() leaves its listen_for_disconnect() task behind
# when Daphne cancels it at shutdown with a request still open; asyncio then
# reports that task's RequestAborted. That is Django's, not ours.
DJANGO_SHUTDOWN_NOISE = re.compile(
    r"^.*Task exception was never retrieved\n(?:future: .*\n)?"
    r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*"
    r"django\.core\.exceptions\.RequestAborted\n?",
    re.MULTILINE,
)


def assert_clean_logs(servers: list[DaphneServer]) -> None:
    """No server logged a traceback or an error, also while shutting down."""
    for server in servers:
        log = DJANGO_SHUTDOWN_NOISE.sub("", server.log())
        assert "Traceback" not in log, f"daphne {server.name} logged an error:\n{log}"
        assert " ERROR " not in log, f"daphne {server.name} logged an error:\n{log}"


def delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_chat_across_two_hosts_on_redis(
    browser: Browser, servers: list[DaphneServer], tmp_path: Path
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:12]}"
    env = project_env(
        BROADCAST_URL=settings.REDIS_URL,
        BROADCAST_KEY_PREFIX=prefix,
        DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"),
    )
    manage(env, "migrate", "--noinput")
    try:
        host_a = start(servers, "a", env, tmp_path)
        host_b = start(servers, "b", env, tmp_path)
        run_chat(browser, host_a, host_b, ARTIFACTS / "chat.png")
    finally:
        stop_all(servers)  # before deleting what they may still write
        delete_redis_keys(prefix)
    assert_clean_logs(servers)


def delete_postgres_rows(prefix: str) -> None:
    import psycopg

    with psycopg.connect(settings.POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            "DELETE FROM django_broadcaster_event WHERE channel LIKE %s", (f"{prefix}:%",)
        )


def test_chat_across_two_hosts_on_postgres(
    browser: Browser, servers: list[DaphneServer], tmp_path: Path
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:12]}"
    env = project_env(BROADCAST_URL=settings.POSTGRES_URL, BROADCAST_KEY_PREFIX=prefix)
    manage(env, "migrate", "--noinput")  # Django's tables and the history table
    try:
        host_a = start(servers, "a", env, tmp_path)
        host_b = start(servers, "b", env, tmp_path)
        run_chat(browser, host_a, host_b, ARTIFACTS / "chat-postgres.png")
    finally:
        stop_all(servers)
        delete_postgres_rows(prefix)
    assert_clean_logs(servers)


def test_demo_default_is_the_memory_backend(
    browser: Browser, servers: list[DaphneServer], tmp_path: Path
) -> None:
    """``scripts/demo.sh`` with no BROADCAST_URL: one process, no service."""
    env = project_env(DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    manage(env, "migrate", "--noinput")
    host = start(servers, "demo", env, tmp_path)
    with ExitStack() as stack:
        page = Chat(browser, stack, "carol").page
        page.goto(f"{host.url}/")
        expect(page.locator(".pill", has_text="backend")).to_contain_text("MemoryBackend")
    run_chat(browser, host, host, tmp_path / "chat-memory.png")
    stop_all(servers)
    assert_clean_logs(servers)


PHONE = {"width": 390, "height": 844}


def test_chat_fits_a_phone(browser: Browser, servers: list[DaphneServer], tmp_path: Path) -> None:
    """At 390 px nothing scrolls sideways and Send is on screen. A newcomer has no
    name: the room sees no join until they choose one, then sees it under that name,
    and so does their own activity feed."""
    env = project_env(DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    manage(env, "migrate", "--noinput")
    host = start(servers, "phone", env, tmp_path)
    room = f"{host.url}/chat/lobby/"
    with ExitStack() as stack:
        alice = Chat(browser, stack, "alice")
        alice.open(room)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        stack.callback(context.close)
        phone = context.new_page()
        for path in ("/", "/chat/lobby/"):
            phone.goto(f"{host.url}{path}")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide at {PHONE['width']} px"
        expect(phone.locator("#socket-status")).to_have_attribute("data-state", "open")
        expect(phone.locator("#feed-status")).to_have_attribute("data-state", "open")
        expect(phone.locator("#author")).to_have_value("")
        send = phone.get_by_role("button", name="Send")
        expect(send).to_be_in_viewport(ratio=1)

        alice.send("anyone here?")  # the phone's socket and feed are live by now
        expect(phone.locator("#activity .feed-item", has_text="anyone here?")).to_have_count(1)
        # Alice's feed shows her own join, and no one else's: the phone has no name yet.
        expect(alice.activity("alice joined", kind="presence")).to_have_count(1)
        expect(alice.activity("joined", kind="presence")).to_have_count(1)

        phone.fill("#author", "dave")
        phone.fill("#text", "Hi from a phone")
        send.tap()
        expect(phone.locator("#text")).to_have_value("")
        expect(alice.message("Hi from a phone")).to_contain_text("dave")
        expect(alice.activity("dave joined", kind="presence")).to_have_count(1)
        joined = phone.locator('#activity .feed-item[data-kind="presence"]', has_text="dave joined")
        expect(joined).to_have_count(1)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        phone.screenshot(path=str(ARTIFACTS / "chat-phone.png"))
        assert not alice.errors, alice.errors
    stop_all(servers)
    assert_clean_logs(servers)


def post_messages(url: str, stop: threading.Event) -> int:
    """Post to the room's sync view until ``stop`` is set, as a page does (CSRF)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/chat/lobby/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None, page
        sent = 0
        while not stop.is_set():
            answer = client.post(
                "/chat/lobby/messages/",
                data={"author": "x", "text": f"m{sent}", "csrfmiddlewaretoken": token[1]},
                headers={"Referer": f"{url}/"},
            )
            assert answer.status_code == 201, answer.text
            sent += 1
        return sent


def leave_the_feed(host: DaphneServer, stay: float) -> None:
    """Open the room's SSE feed, read its first bytes, stay a moment, close the socket."""
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as conn:
        conn.sendall(b"GET /chat/lobby/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert conn.recv(64).startswith(b"HTTP/1.1 200")
        time.sleep(stay)


def test_feeds_closed_while_events_flow_end_their_requests(
    servers: list[DaphneServer], tmp_path: Path
) -> None:
    """Browsers leaving the activity feed while messages arrive: every request ends
    (before the fix of CPython gh-86296's asyncio.wait_for in the subscription, some
    read on until Daphne killed them: "took too long to shut down and was killed")."""
    env = project_env(DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    manage(env, "migrate", "--noinput")
    # Daphne kills a request still running 1 s after its client left, and logs it.
    host = DaphneServer("feeds", env, tmp_path, ("--application-close-timeout", "1"))
    servers.append(host)
    host.start()
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=21) as pool:
        poster = pool.submit(post_messages, host.url, stop)
        clients = [pool.submit(leave_the_feed, host, 0.01 * (i % 20)) for i in range(120)]
        for client in clients:
            client.result()
        stop.set()
        assert poster.result() > 0
    # Past the close timeout (Daphne checks every second), every request has ended
    # or been killed; a request that ends just after its client left is not.
    time.sleep(3)
    stop_all(servers)
    log = host.log()
    assert "took too long to shut down" not in log, log
    assert "Killed 0 pending application instances" in log, log
    assert_clean_logs(servers)
