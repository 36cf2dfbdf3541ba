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
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_broadcaster import Broadcast, Event, broadcasts
from django_broadcaster.cli.arguments import (
    check_channel_name,
    extra_words_error,
    parse_message,
    parse_since,
    whole_number,
)
from django_broadcaster.cli.output import event_line, one_line, status_table
from django_broadcaster.cli.status import probe_all
from django_broadcaster.cli.tail import describe, follow
from django_broadcaster.config import DEFAULT_ALIAS
from django_broadcaster.exceptions import BroadcastError
from django_broadcaster.masking import redact

T = TypeVar("T")

#: Errors that are the user's input or the backend's state, not a bug: one line, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    BroadcastError,
    ImproperlyConfigured,
    LookupError,
    ValueError,
    TypeError,
    OSError,
)
#: The base error of each client library the shipped backends use: what a bad
#: ``LOCATION`` or ``OPTIONS`` makes the library or the server raise (psycopg's
#: ``ProgrammingError`` for ``?connect_timeout=abc``, redis-py's ``ResponseError``
#: for a database number the server does not have...), as ``(module, name)``.
CLIENT_ERRORS = (("psycopg", "Error"), ("redis.exceptions", "RedisError"))


def client_errors() -> tuple[type[BaseException], ...]:
    """The `CLIENT_ERRORS` of the libraries imported: an error can only come from those."""
    modules = ((sys.modules.get(module), name) for module, name in CLIENT_ERRORS)
    return tuple(getattr(module, name) for module, name in modules if module is not None)


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
            type=whole_number,
            default=0,
            metavar="N",
            help="first replay the last N events of each channel",
        )
        tail.add_argument(
            "--count", type=whole_number, default=0, metavar="N", help="exit after N events"
        )
        tail.add_argument(
            "--json", action="store_true", help="print one JSON object per event (for jq)"
        )
        self._add_common(tail)

        publish = commands.add_parser(
            "publish",
            help="publish one message and print its event id",
            description="Publish MESSAGE on CHANNEL and print the event id. MESSAGE is "
            "read as JSON when it parses, otherwise sent as a string; text that looks like "
            "JSON but does not parse is an error (--text sends it as a string).",
        )
        publish.add_argument("channel", metavar="CHANNEL")
        publish.add_argument("message", metavar="MESSAGE")
        # Words after MESSAGE (an unquoted "hello world"): one clear error, not
        # argparse's "unrecognized arguments" under the top-level usage.
        publish.add_argument("extra_words", nargs="*", help=argparse.SUPPRESS)
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
            raise CommandError(one_line(redact(str(exc) or type(exc).__name__, location))) from None
        except client_errors() as exc:
            where = f"broadcast backend {describe(front)}" if front is not None else "a backend"
            message = redact(f"{where} failed: {type(exc).__name__}: {exc}", location)
            raise CommandError(f"{one_line(message)}; check its LOCATION and OPTIONS") from None

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

    # -- subcommands ---------------------------------------------------------------

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
            check_channel_name(channel)
        since_arg = parse_since(since, channels)
        front = self._front(using)
        if (since_arg is not None or history) and not front.supports_history:
            raise CommandError(
                f"broadcast backend {using!r} ({front.config.backend_class.__name__}) keeps no "
                "history, so --since and --history cannot be used with it"
            )

        def show(event: Event) -> None:
            self._emit(event_line(event, json, self.style))

        self._run(
            front,
            lambda: follow(
                front, channels, since_arg, history, count, show=show, notice=self._notice
            ),
        )

    def publish(
        self,
        *,
        channel: str,
        message: str,
        using: str,
        text: bool,
        extra_words: list[str] | None = None,
        **options: Any,
    ) -> None:
        if extra_words:
            raise extra_words_error(message, extra_words)
        check_channel_name(channel)
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

    def status(self, *, aliases: list[str], **options: Any) -> None:
        configured = list(broadcasts)
        unknown = [alias for alias in aliases if alias not in configured]
        if unknown:
            raise CommandError(
                f"no broadcast backend {', '.join(map(repr, unknown))}: BROADCAST_BACKENDS "
                f"defines {', '.join(map(repr, configured))}"
            )
        rows = self._run(None, lambda: probe_all(aliases or configured)) or []
        for line in status_table(rows, self.style):
            self._emit(line)
        failed = [row.alias for row in rows if row.error is not None]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(rows)} broadcast backend(s) unreachable or "
                f"misconfigured: {', '.join(failed)}"
            )


def _plain(text: str) -> str:
    return text
