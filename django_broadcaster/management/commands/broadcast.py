"""``manage.py broadcast``: tail channels, publish a message, check every backend.

::

    manage.py broadcast tail CHANNEL... [--using ALIAS] [--since ID] [--history N]
                                        [--count N] [--json]
    manage.py broadcast publish CHANNEL MESSAGE [--using ALIAS] [--text]
    manage.py broadcast status [ALIAS...]

Each run drives the async API with ``asyncio.run()`` and closes its connections
before returning, so the process exits as soon as the work is done. Mistakes
(unknown alias, invalid channel name, unreachable backend, ``--since`` on a
backend without history) end in one ``CommandError`` line on stderr and exit
status 1; Ctrl-C ends ``tail`` with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from django_broadcaster import Broadcast, Event, SubscriberLagged, broadcasts
from django_broadcaster.config import DEFAULT_ALIAS
from django_broadcaster.events import validate_channel_name
from django_broadcaster.exceptions import BroadcastError
from django_broadcaster.masking import redact

T = TypeVar("T")

#: The channel ``status`` publishes its probe on (history backends retain a few probes).
PROBE_CHANNEL = "django_broadcaster.status"

#: Errors that are the user's input or the backend's state, not a bug: one line, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    BroadcastError,
    ImproperlyConfigured,
    LookupError,
    ValueError,
    TypeError,
    OSError,
)


class _Encoder(DjangoJSONEncoder):
    """Django's JSON encoder; ``bytes`` (msgpack messages) as base64 text."""

    def default(self, o: Any) -> Any:
        if isinstance(o, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(o)).decode("ascii")
        return super().default(o)


def to_json(value: Any) -> str:
    return json.dumps(value, cls=_Encoder, ensure_ascii=False, separators=(",", ":"))


def parse_message(text: str) -> Any:
    """``text`` as a JSON value when it parses, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_since(values: Sequence[str], channels: Sequence[str]) -> str | dict[str, str] | None:
    """``--since`` values (``ID`` for every channel, or ``CHANNEL=ID``) as ``since=``."""
    default: str | None = None
    explicit: dict[str, str] = {}
    for value in values:
        channel, sep, event_id = value.rpartition("=")
        if not sep:
            if default is not None and default != value:
                raise CommandError(
                    f"--since given twice ({default!r}, {value!r}); "
                    "use --since CHANNEL=ID to give each channel its own id"
                )
            default = value
        elif channel not in channels:
            raise CommandError(f"--since {value!r} names a channel that is not tailed")
        elif not event_id:
            raise CommandError(f"--since {value!r} has no event id after '='")
        else:
            explicit[channel] = event_id
    if default is None and not explicit:
        return None
    if len(channels) == 1 and not explicit:
        return default
    since = {c: explicit.get(c, default) for c in channels}
    return {c: i for c, i in since.items() if i is not None}


@dataclass
class StatusRow:
    alias: str
    backend: str
    location: str
    history: str
    error: str | None = None
    round_trip: float | None = None


class Command(BaseCommand):
    help = (
        "Tail channels of a broadcast backend, publish a message, or check that every "
        "configured backend is reachable."
    )
    # Checks would stop every subcommand over one misconfigured alias; `status`
    # reports configuration errors per alias instead.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", metavar="{tail,publish,status}", required=True
        )

        tail = commands.add_parser(
            "tail",
            help="print events as they arrive (Ctrl-C to stop)",
            description="Print each event published on CHANNEL(s) as it arrives: timestamp, "
            "channel, id, message. Ctrl-C stops with exit status 0.",
        )
        tail.add_argument("channels", nargs="+", metavar="CHANNEL")
        self._add_using(tail)
        tail.add_argument(
            "--since",
            action="append",
            default=[],
            metavar="ID",
            help="first replay the retained events after ID, then go live; "
            "CHANNEL=ID sets one channel's id (repeatable)",
        )
        tail.add_argument(
            "--history",
            type=_whole_number,
            default=0,
            metavar="N",
            help="first replay the last N events of each channel",
        )
        tail.add_argument(
            "--count", type=_whole_number, default=0, metavar="N", help="exit after N events"
        )
        tail.add_argument(
            "--json", action="store_true", help="print one JSON object per event (for jq)"
        )
        self._add_common(tail)

        publish = commands.add_parser(
            "publish",
            help="publish one message and print its event id",
            description="Publish MESSAGE on CHANNEL and print the event id. MESSAGE is "
            "read as JSON when it parses, otherwise sent as a string.",
        )
        publish.add_argument("channel", metavar="CHANNEL")
        publish.add_argument("message", metavar="MESSAGE")
        self._add_using(publish)
        publish.add_argument(
            "--text", action="store_true", help="send MESSAGE as a string even if it is JSON"
        )
        self._add_common(publish)

        status = commands.add_parser(
            "status",
            help="check each backend: reachable, round-trip time, history",
            description="One row per configured alias: backend, location (password masked), "
            "reachable or the error, publish-to-receive round-trip time, history support. "
            "Exit status 1 when any alias is unreachable.",
        )
        status.add_argument(
            "aliases", nargs="*", metavar="ALIAS", help="only these aliases (default: all)"
        )
        self._add_common(status)

    @staticmethod
    def _add_using(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--using",
            default=DEFAULT_ALIAS,
            metavar="ALIAS",
            help=f"the BROADCAST_BACKENDS alias (default: {DEFAULT_ALIAS!r})",
        )

    @staticmethod
    def _add_common(parser: argparse.ArgumentParser) -> None:
        # Django's own options also work after the subcommand
        # (``broadcast tail chat --no-color``); SUPPRESS keeps the main parser's values.
        parser.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=[0, 1, 2, 3],
            default=argparse.SUPPRESS,
            help="0 hides the notices written to stderr",
        )
        for flag, text in (
            ("--traceback", "show the full stack trace of an error"),
            ("--no-color", "do not colorize the output"),
            ("--force-color", "colorize the output even when it is not a terminal"),
        ):
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)

    # -- plumbing ------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity: int = options["verbosity"]
        subcommand: str = options["subcommand"]
        if subcommand == "tail":
            self.tail(**options)
        elif subcommand == "publish":
            self.publish(**options)
        else:
            self.status(**options)

    def _front(self, alias: str) -> Broadcast:
        try:
            return broadcasts[alias]
        except KeyError as exc:
            raise CommandError(exc.args[0]) from None
        except ImproperlyConfigured as exc:
            raise CommandError(f"broadcast backend {alias!r} is misconfigured: {exc}") from None

    def _run(self, front: Broadcast | None, work: Callable[[], Coroutine[Any, Any, T]]) -> T | None:
        """Run ``work()`` in a fresh event loop, closing ``front`` before the loop ends.

        Returns ``None`` after Ctrl-C; expected errors become one-line `CommandError`.
        """

        async def main() -> T:
            # Ctrl-C and SIGTERM (docker stop, supervisors) cancel the work, which
            # then closes cleanly; Python 3.10's asyncio.run() would instead
            # raise KeyboardInterrupt wherever the loop happens to be.
            task = asyncio.current_task()
            for name in ("SIGINT", "SIGTERM"):
                if task is not None and hasattr(signal, name):
                    with suppress(NotImplementedError, RuntimeError, ValueError):
                        loop = asyncio.get_running_loop()
                        loop.add_signal_handler(getattr(signal, name), task.cancel)
            try:
                return await work()
            finally:
                if front is not None:
                    await front.aclose()

        location = front.config.location if front is not None else ""
        try:
            return asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            return None
        except BrokenPipeError:
            self._silence_stdout()
            return None
        except CommandError:
            raise
        except EXPECTED_ERRORS as exc:
            message = redact(str(exc) or type(exc).__name__, location)
            raise CommandError(message) from None

    def _silence_stdout(self) -> None:
        # The reader of a pipe went away (``tail | head``): stop without the
        # "Exception ignored ... BrokenPipeError" Python prints when it flushes at exit.
        out = getattr(self.stdout, "_out", None)
        if out is not None and out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)

    def _notice(self, message: str) -> None:
        if self.verbosity >= 1:
            # Plain: the stderr wrapper would color everything as an error.
            self.stderr.write(message, style_func=_plain)
            self.stderr.flush()

    def _emit(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    # -- tail --------------------------------------------------------------------

    def tail(
        self,
        *,
        channels: list[str],
        using: str,
        since: list[str],
        history: int,
        count: int,
        json: bool,
        **options: Any,
    ) -> None:
        channels = list(dict.fromkeys(channels))
        for channel in channels:
            _validate(channel)
        since_arg = parse_since(since, channels)
        front = self._front(using)
        if (since_arg is not None or history) and not front.supports_history:
            raise CommandError(
                f"broadcast backend {using!r} ({front.config.backend_class.__name__}) keeps no "
                "history, so --since and --history cannot be used with it"
            )
        self._run(front, lambda: self._tail(front, channels, since_arg, history, count, json))

    async def _tail(
        self,
        front: Broadcast,
        channels: list[str],
        since: str | dict[str, str] | None,
        history: int,
        count: int,
        as_json: bool,
    ) -> None:
        seen = 0
        announced = False
        while True:
            try:
                async with front.subscribe(*channels, since=since, history=history) as sub:
                    if not announced:
                        announced = True
                        self._notice(
                            f"Tailing {', '.join(channels)} on {_describe(front)}. "
                            "Press Ctrl-C to stop."
                        )
                    async for event in sub:
                        self._print_event(event, as_json)
                        seen += 1
                        if count and seen >= count:
                            return
                    return  # the broadcast was closed
            except SubscriberLagged as exc:
                # stdout is slower than the channel: resubscribe where we left off.
                if front.supports_history:
                    since, history = _since_mapping(exc, channels), 0
                    self._notice(f"Output fell behind; resuming after {exc.since!r}.")
                else:
                    since, history = None, 0
                    self._notice("Output fell behind; events were dropped (no history).")

    def _print_event(self, event: Event, as_json: bool) -> None:
        now = timezone.now()
        if timezone.is_aware(now):
            now = timezone.localtime(now)
        if as_json:
            record = {
                "timestamp": now.isoformat(),
                "channel": event.channel,
                "id": event.id,
                "message": event.message,
            }
            self._emit(to_json(record))
            return
        style = self.style
        self._emit(
            " ".join(
                (
                    style.HTTP_NOT_MODIFIED(now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
                    style.MIGRATE_LABEL(event.channel),
                    style.SQL_KEYWORD(event.id if event.id is not None else "-"),
                    to_json(event.message),
                )
            )
        )

    # -- publish -----------------------------------------------------------------

    def publish(
        self, *, channel: str, message: str, using: str, text: bool, **options: Any
    ) -> None:
        _validate(channel)
        value = message if text else parse_message(message)
        front = self._front(using)
        event_id = self._run(front, lambda: front.apublish(channel, value))
        if event_id is not None:
            self._emit(event_id)
        else:
            self._notice(
                f"Published on {channel!r} ({front.config.backend_class.__name__} "
                "assigns no event ids)."
            )

    # -- status ------------------------------------------------------------------

    def status(self, *, aliases: list[str], **options: Any) -> None:
        configured = list(broadcasts)
        unknown = [alias for alias in aliases if alias not in configured]
        if unknown:
            raise CommandError(
                f"no broadcast backend {', '.join(map(repr, unknown))}: BROADCAST_BACKENDS "
                f"defines {', '.join(map(repr, configured))}"
            )
        rows = self._run(None, lambda: _probe_all(aliases or configured)) or []
        self._print_table(rows)
        failed = [row.alias for row in rows if row.error is not None]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(rows)} broadcast backend(s) unreachable or "
                f"misconfigured: {', '.join(failed)}"
            )

    def _print_table(self, rows: list[StatusRow]) -> None:
        header = ("ALIAS", "BACKEND", "LOCATION", "HISTORY", "ROUND TRIP", "STATUS")
        cells = [
            (
                row.alias,
                row.backend,
                row.location or "-",
                row.history,
                f"{row.round_trip * 1000:.1f} ms" if row.round_trip is not None else "-",
                "ok" if row.error is None else row.error,
            )
            for row in rows
        ]
        widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]

        def padded(values: Sequence[str]) -> str:
            # Every column but the last (STATUS, which may be a long error) is padded.
            return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=False))

        self._emit(self.style.MIGRATE_HEADING(f"{padded(header)}  {header[-1]}"))
        for row, values in zip(rows, cells, strict=True):
            status = self.style.SUCCESS if row.error is None else self.style.ERROR
            self._emit(f"{padded(values)}  {status(values[-1])}")


async def _probe_all(aliases: list[str]) -> list[StatusRow]:
    return list(await asyncio.gather(*(_probe(alias) for alias in aliases)))


async def _probe(alias: str) -> StatusRow:
    """Reach ``alias``: subscribe to the probe channel, publish, time the round trip."""
    try:
        front = broadcasts[alias]
    except ImproperlyConfigured as exc:
        message = getattr(exc, "message", str(exc))
        return StatusRow(alias, "-", "-", "-", error=f"misconfigured: {message}")
    row = StatusRow(
        alias,
        front.config.backend_class.__name__,
        front.safe_location,
        "yes" if front.supports_history else "no",
    )
    try:
        row.round_trip = await _round_trip(front)
    except Exception as exc:  # any failure is this alias's status, not a crash
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no probe received within {front.timeout}s"
        else:
            text = str(exc) or type(exc).__name__
        row.error = redact(text, front.config.location)
    finally:
        await front.aclose()
    return row


async def _round_trip(front: Broadcast) -> float:
    nonce = uuid.uuid4().hex
    async with front.subscribe(PROBE_CHANNEL) as sub:
        started = time.perf_counter()
        await front.apublish(PROBE_CHANNEL, {"probe": nonce})
        deadline = started + front.timeout
        while True:  # concurrent `status` runs share the channel: wait for our nonce
            remaining = max(deadline - time.perf_counter(), 0.0)
            event = await sub.get(remaining)
            if isinstance(event.message, dict) and event.message.get("probe") == nonce:
                return time.perf_counter() - started


def _since_mapping(exc: SubscriberLagged, channels: list[str]) -> dict[str, str] | None:
    since = {c: exc.last_ids[c] for c in channels if exc.last_ids.get(c) is not None}
    return {c: i for c, i in since.items() if i is not None} or None


def _plain(text: str) -> str:
    return text


def _describe(front: Broadcast) -> str:
    backend = front.config.backend_class.__name__
    where = f" {front.safe_location}" if front.safe_location else ""
    return f"{front.alias!r} ({backend}{where})"


def _validate(channel: str) -> None:
    try:
        validate_channel_name(channel)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
