"""``manage.py broadcast`` run as a real subprocess against Redis, PostgreSQL and memory."""

from __future__ import annotations

import datetime
import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_broadcaster.cli.arguments import parse_message, parse_since

from .support.backends import POSTGRES_URL, REDIS_URL
from .support.command_helpers import Tail, command_env, private_database, run

PREFIX = f"cmd{uuid.uuid4().hex[:8]}"
PACKED_PREFIX = f"{PREFIX}.msgpack"
BACKENDS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": PREFIX,
    },
    "pubsub": {
        "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": PREFIX,
    },
}
POSTGRES = {"BACKEND": "django_broadcaster.backends.postgres.PostgresBackend", "KEY_PREFIX": PREFIX}
DOWN = {
    "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
    "LOCATION": "redis://:hunter2@127.0.0.1:1/0",  # nothing listens on port 1
    "OPTIONS": {"TIMEOUT": 0.5},
}
#: Aliases a bad setting breaks, each failing differently in the client library.
BROKEN: dict[str, dict[str, Any]] = {
    "down": DOWN,
    # psycopg.OperationalError, whose message has two lines
    "pg-down": {**POSTGRES, "LOCATION": "postgresql://postgres:hunter2@127.0.0.1:1/x"},
    # redis.exceptions.ResponseError, not a connection error
    "redis-db": {**BACKENDS["pubsub"], "LOCATION": f"{REDIS_URL.rsplit('/', 1)[0]}/99"},
}
#: psycopg.ProgrammingError; the LOCATION of the test database is added by the fixture.
BAD_PG_QUERY = "connect_timeout=abc"
#: What a terminal must not be sent raw: C0 and C1 controls, DEL, bidi controls,
#: lone surrogates.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202egnp.exe\u2066x\u2069\x7f\x85\u200fend"
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) (\S+) (.*)$")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with private_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="module")
def env(postgres_url: str) -> dict[str, str]:
    # Its own KEY_PREFIX: processes sharing channels must share the serializer.
    packed = {
        **BACKENDS["pubsub"],
        "KEY_PREFIX": PACKED_PREFIX,
        "OPTIONS": {"SERIALIZER": "msgpack"},
    }
    postgres = {**POSTGRES, "LOCATION": postgres_url}
    return command_env({**BACKENDS, "packed": packed, "postgres": postgres})


@pytest.fixture(scope="module")
def env_with_down(env: dict[str, str], postgres_url: str) -> dict[str, str]:
    backends = json.loads(env["BROADCASTER_TEST_BACKENDS"])
    with_password = postgres_url.replace("://postgres@", "://postgres:hunter2@")
    bad_query = {**POSTGRES, "LOCATION": f"{with_password}?{BAD_PG_QUERY}"}
    broken = {name: {**entry, "OPTIONS": {"TIMEOUT": 0.5}} for name, entry in BROKEN.items()}
    return command_env({**backends, **broken, "pg-query": bad_query})


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        tail.stop()


def channel() -> str:
    return f"cmd.{uuid.uuid4().hex[:10]}"


def publish(env: dict[str, str], name: str, message: str, *options: str) -> str:
    started = time.monotonic()
    result = run(env, "publish", name, message, *options)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10  # connections closed: the process exits promptly
    return result.stdout.strip()


def one_error_line(result: Any) -> str:
    """A failed run's stderr: exactly one ``CommandError:`` line, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ")
    assert "Traceback" not in result.stderr
    return str(lines[0])


# -- tail -------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["default", "pubsub", "postgres"])
def test_tail_count_prints_events_published_by_another_process(
    env: dict[str, str], tails: list[Tail], alias: str
) -> None:
    name = channel()
    tail = Tail(env, name, "--using", alias, "--count", "3")
    tails.append(tail)
    tail.wait_ready()
    sent = ['{"text": "hi", "n": 1}', "plain words", "42"]
    ids = [publish(env, name, message, "--using", alias) for message in sent]
    lines = [tail.line() for _ in sent]
    code, seconds = tail.wait()
    assert code == 0
    assert seconds < 5
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.group(2) for m in parsed if m] == [name] * 3
    assert [json.loads(m.group(4)) for m in parsed if m] == [
        {"text": "hi", "n": 1},
        "plain words",
        42,
    ]
    if alias == "pubsub":
        assert ids == ["", "", ""]  # no ids without history
        assert [m.group(3) for m in parsed if m] == ["-", "-", "-"]
    else:
        assert all(ids)
        assert [m.group(3) for m in parsed if m] == ids
    assert "\x1b[" not in "".join(lines)  # plain when piped
    assert tail.rest_of_stdout() == []


def test_tail_json_lines_parse(env: dict[str, str]) -> None:
    name = channel()
    ids = [publish(env, name, message) for message in ('{"a": [1, 2.5, null]}', "text", "true")]
    result = run(env, "tail", name, "--history", "3", "--count", "3", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["message"] for r in records] == [{"a": [1, 2.5, None]}, "text", True]
    assert [r["id"] for r in records] == ids
    assert {r["channel"] for r in records} == {name}
    for record in records:
        assert set(record) == {"timestamp", "channel", "id", "message"}
        assert datetime.datetime.fromisoformat(record["timestamp"]).tzinfo is not None


@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_tail_since_replays_after_the_id_then_goes_live(
    env: dict[str, str], tails: list[Tail], alias: str
) -> None:
    name, other = channel(), channel()
    first = publish(env, name, "1", "--using", alias)
    publish(env, name, "2", "--using", alias)
    publish(env, other, "x", "--using", alias)
    tail = Tail(
        env, name, other, "--using", alias, "--since", f"{name}={first}", "--history", "1", "--json"
    )
    tails.append(tail)
    tail.wait_ready()
    replayed = [json.loads(tail.line()) for _ in range(2)]
    publish(env, name, "3", "--using", alias)
    live = json.loads(tail.line())
    assert sorted(str((r["channel"], r["message"])) for r in replayed) == sorted(
        [str((name, 2)), str((other, "x"))]
    )
    assert (live["channel"], live["message"]) == (name, 3)


@pytest.mark.parametrize("alias", ["default", "pubsub", "postgres"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_zero_without_traceback(
    env: dict[str, str], tails: list[Tail], alias: str, signum: signal.Signals
) -> None:
    tail = Tail(env, channel(), "--using", alias)
    tails.append(tail)
    tail.wait_ready()
    tail.signal(signum)
    code, seconds = tail.wait()
    assert code == 0
    assert seconds < 5
    stderr = tail.rest_of_stderr()
    assert stderr.count("\n") == 1  # the "Tailing ..." notice only
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_reader_going_away_ends_tail_quietly(env: dict[str, str], tails: list[Tail]) -> None:
    """``tail | head -1``: once the pipe's reader is gone, exit 0 and say nothing."""
    name = channel()
    tail = Tail(env, name, pump_stdout=False)
    tails.append(tail)
    tail.wait_ready()
    publish(env, name, "1")
    assert tail.read_stdout_line().endswith(" 1")
    assert tail.process.stdout is not None
    tail.process.stdout.close()
    time.sleep(0.1)
    for n in range(2, 5):
        publish(env, name, str(n))
        if tail.process.poll() is not None:
            break
    code, _ = tail.wait()
    assert code == 0
    stderr = tail.rest_of_stderr()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "ignored" not in stderr


def test_color_on_request_plain_when_piped(env: dict[str, str]) -> None:
    name = channel()
    publish(env, name, "colored")
    plain = run(env, "tail", name, "--history", "1", "--count", "1")
    colored = run(env, "tail", name, "--history", "1", "--count", "1", "--force-color")
    assert plain.returncode == colored.returncode == 0
    assert "\x1b[" not in plain.stdout
    assert "\x1b[" in colored.stdout
    assert (
        re.sub(r"\x1b\[[0-9;]*m", "", colored.stdout).split(" ", 2)[2]
        == (plain.stdout.split(" ", 2)[2])
    )


def inject(prefix: str, name: str, payloads: list[bytes]) -> None:
    """Publish raw payloads on channel ``name`` of a pub/sub alias, as anyone with
    access to Redis could, bypassing the encoding of ``publish``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for payload in payloads:
            client.publish(f"{prefix}:{name}", payload)
    finally:
        client.close()


def hostile_json() -> tuple[list[bytes], list[Any]]:
    """JSON payloads carrying terminal escapes, bidi overrides, a lone surrogate."""
    texts = [
        json.dumps(HOSTILE),  # every control character as a \\u escape
        json.dumps(HOSTILE, ensure_ascii=False),  # C1, DEL and bidi characters raw
        json.dumps({HOSTILE: [HOSTILE, 1.5, None]}),
        '"\\ud800 lone surrogate"',
    ]
    return [text.encode() for text in texts], [json.loads(text) for text in texts]


def hostile_msgpack() -> tuple[list[bytes], list[Any]]:
    """msgpack messages JSON cannot hold as they are: bytes keys, NaN, extension types."""
    import msgpack

    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    messages = [
        {b"\x00\xffkey": b"\x01\x02", "text": HOSTILE},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        msgpack.ExtType(42, b"\x1b[2J"),
        msgpack.Timestamp(1, 0),
        [{b"nested": [{b"\x1b": HOSTILE}]}],
        deep,
    ]
    expected = [
        {"AP9rZXk=": "AQI=", "text": HOSTILE},
        {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"},
        [42, "G1sySg=="],
        "Timestamp(seconds=1, nanoseconds=0)",
        [{"bmVzdGVk": [{"Gw==": HOSTILE}]}],
        None,  # checked below
    ]
    return [msgpack.packb(m, use_bin_type=True) for m in messages], expected


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_tail_prints_any_message_safely(
    env: dict[str, str], tails: list[Tail], serializer: str, as_json: bool
) -> None:
    """Whatever a publisher sends, tail keeps going, stdout holds no character a
    terminal acts on, and each message still parses as JSON (escapes decode back)."""
    if serializer == "json":
        alias, prefix, (payloads, expected) = "pubsub", PREFIX, hostile_json()
    else:
        alias, prefix, (payloads, expected) = "packed", PACKED_PREFIX, hostile_msgpack()
    name = channel()
    options = ["--json"] if as_json else []
    tail = Tail(env, name, "--using", alias, "--count", str(len(payloads)), *options)
    tails.append(tail)
    tail.wait_ready()
    inject(prefix, name, payloads)
    lines = [tail.line() for _ in payloads]
    code, _ = tail.wait()
    assert code == 0, tail.rest_of_stderr()
    assert not [line for line in lines if UNSAFE.search(line)], lines
    if as_json:
        messages = [json.loads(line)["message"] for line in lines]
    else:
        matches = [LINE.match(line) for line in lines]
        messages = [json.loads(m.group(4)) for m in matches if m]
        assert len(messages) == len(lines), lines
    if serializer == "msgpack":
        bottom = messages[-1]
        for _ in range(99):
            bottom = bottom[0]
        assert bottom == ["<nested too deeply to print>"]
        messages[-1] = expected[-1]
    assert messages == expected


# -- publish ------------------------------------------------------------------------------


def test_publish_sends_json_when_it_parses_else_a_string(env: dict[str, str]) -> None:
    name = channel()
    messages = ['{"a": {"b": [1, 2]}}', "hello world", "42", '"quoted"', "True love", "null"]
    ids = [publish(env, name, message) for message in messages]
    ids.append(publish(env, name, "42", "--text"))
    result = run(env, "tail", name, "--history", "7", "--count", "7", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["message"] for r in records] == [
        {"a": {"b": [1, 2]}},
        "hello world",
        42,
        "quoted",
        "True love",
        None,
        "42",
    ]
    assert [r["id"] for r in records] == ids


# -- status -------------------------------------------------------------------------------


def test_status_reports_every_alias(env: dict[str, str]) -> None:
    result = run(env, "status")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ALIAS", "BACKEND", "LOCATION", "HISTORY", "ROUND", "TRIP", "STATUS"]
    found = {row.split()[0]: row.split() for row in rows}
    assert set(found) == {"default", "pubsub", "packed", "postgres"}
    assert found["default"][1:4] == ["RedisStreamBackend", REDIS_URL, "yes"]
    assert found["pubsub"][1:4] == ["RedisBackend", REDIS_URL, "no"]
    assert found["packed"][1:4] == ["RedisBackend", REDIS_URL, "no"]
    assert found["postgres"][1] == "PostgresBackend"
    assert found["postgres"][3] == "yes"
    for row in found.values():
        assert float(row[4]) >= 0 and row[5] == "ms" and row[6] == "ok"


def test_status_of_an_unreachable_backend(env_with_down: dict[str, str]) -> None:
    started = time.monotonic()
    result = run(env_with_down, "status")
    assert time.monotonic() - started < 10
    line = one_error_line(result)
    assert "down" in line
    rows = {row.split()[0]: row for row in result.stdout.splitlines()[1:]}
    assert rows["default"].endswith("ok")
    assert "redis://:***@127.0.0.1:1/0" in rows["down"]
    assert "could not connect" in rows["down"]
    assert "hunter2" not in result.stdout + result.stderr
    # One line per alias, however many lines the client library's error has.
    assert set(rows) == set(json.loads(env_with_down["BROADCASTER_TEST_BACKENDS"]))
    assert len(result.stdout.splitlines()) == 1 + len(rows)
    assert "bad value for connect_timeout" in rows["pg-query"]
    assert "DB index is out of range" in rows["redis-db"]

    only = run(env_with_down, "status", "default", "pubsub")
    assert only.returncode == 0
    assert len(only.stdout.splitlines()) == 3


# -- mistakes: one line on stderr, exit status 1 ---------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tail", "chat", "--using", "nope"], "no broadcast backend 'nope'"),
        (["publish", "chat", "x", "--using", "nope"], "no broadcast backend 'nope'"),
        (["status", "nope"], "no broadcast backend 'nope'"),
        (["tail", "chat", "bad name!"], "invalid channel name 'bad name!'"),
        (["publish", "x" * 201, "hi"], "invalid channel name"),
        (["tail", "chat", "--using", "pubsub", "--since", "1-0"], "keeps no history"),
        (["tail", "chat", "--using", "pubsub", "--history", "5"], "keeps no history"),
        (["tail", "chat", "--since", "nonsense"], "'nonsense' is not an event id"),
        (["tail", "chat", "--using", "postgres", "--since", "x"], "not an event id"),
        (["tail", "chat", "--since", "other=1-0"], "names a channel that is not tailed"),
        (["tail", "chat", "--using", "down"], "could not connect to broadcast backend 'down'"),
        (["publish", "chat", "x", "--using", "down"], "could not connect to broadcast backend"),
        (["tail", "chat", "--using", "pg-down"], "Connection refused Is the server running"),
        (["publish", "chat", "x", "--using", "pg-down"], "could not connect to broadcast"),
        (["tail", "chat", "--using", "pg-query"], "bad value for connect_timeout: 'abc'"),
        (["publish", "chat", "x", "--using", "pg-query"], "ProgrammingError"),
        (["tail", "chat", "--using", "redis-db"], "ResponseError: DB index is out of range"),
        (["publish", "chat", "x", "--using", "redis-db"], "'redis-db' (RedisBackend"),
        (["status", "pg-down"], "unreachable or misconfigured: pg-down"),
        (["publish", "chat", '{"text": "oops",}'], "does not parse: Expecting property name"),
        (["publish", "chat", "[1,\n2"], "at line 2 column 2; fix it, or pass --text"),
        (
            ["publish", "chat", "hello", "world"],
            "one MESSAGE, got 2 words; quote it: 'hello world'",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    env_with_down: dict[str, str], args: list[str], expected: str
) -> None:
    started = time.monotonic()
    result = run(env_with_down, *args)
    assert time.monotonic() - started < 10
    line = one_error_line(result)
    assert expected in line
    assert "hunter2" not in result.stdout + result.stderr


def test_bad_option_value_is_a_usage_error(env: dict[str, str]) -> None:
    result = run(env, "tail", "chat", "--count", "-1")
    assert result.returncode == 2
    assert "expected a whole number >= 0" in result.stderr
    assert "Traceback" not in result.stderr


# -- in-process ------------------------------------------------------------------------------


def test_parse_since() -> None:
    assert parse_since([], ["a"]) is None
    assert parse_since(["5-0"], ["a"]) == "5-0"
    assert parse_since(["5-0"], ["a", "b"]) == {"a": "5-0", "b": "5-0"}
    assert parse_since(["b=7", "5"], ["a", "b"]) == {"a": "5", "b": "7"}
    assert parse_since(["b=7"], ["a", "b"]) == {"b": "7"}
    with pytest.raises(CommandError, match="twice"):
        parse_since(["1", "2"], ["a"])
    with pytest.raises(CommandError, match="no event id"):
        parse_since(["a="], ["a"])


def test_parse_message() -> None:
    assert parse_message('{"a": 1}') == {"a": 1}
    assert parse_message("1.5") == 1.5
    assert parse_message("hello") == "hello"
    assert parse_message("") == ""
    assert parse_message("hello world") == "hello world"
    assert parse_message("True love") == "True love"
    for looks_like_json in ('{"text": "oops",}', "[1,", '"open', "1.2.3", "-5x", "True", " NULL"):
        with pytest.raises(CommandError, match="pass --text to send it as a string"):
            parse_message(looks_like_json)


def test_call_command_with_the_memory_backend(capsys: pytest.CaptureFixture[str]) -> None:
    name = channel()
    call_command("broadcast", "publish", name, '{"n": 1}')
    call_command("broadcast", "publish", name, "two", text=True)
    out = capsys.readouterr().out.split()
    assert len(out) == 2
    call_command("broadcast", "tail", name, history=2, count=2, json=True, verbosity=0)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["message"]) for r in records] == [(out[0], {"n": 1}), (out[1], "two")]
    with pytest.raises(CommandError, match="invalid channel name"):
        call_command("broadcast", "tail", "no spaces")
