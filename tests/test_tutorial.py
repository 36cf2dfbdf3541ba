"""The tutorial is a tested path: build its project from docs/tutorial.rst and run it.

The docs' own blocks are the source: every ``.. code-block:: python`` with a
``:caption:`` naming a file is written to that file (``(continued)`` and
``(add at the end)`` append), and the tutorial's shell steps that build and test
the project (``startproject``, ``startapp``, ``mkdir``, ``touch``,
``makemigrations``, ``migrate``, ``check``, ``test``) run in document order, on
the memory backend, in a temporary directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.rst"
# Shell steps this test runs; the others (pip, venv, runserver, curl) need a person.
RUN_STEPS = re.compile(
    r"^(django-admin startproject|cd |mkdir |touch |python manage\.py "
    r"(startapp|makemigrations|migrate|check|test)\b)"
)
DIRECTIVE = re.compile(r"^\.\. code-block:: (\w+)$")
CAPTION = re.compile(r"^   :caption: (\S+)(?: \((continued|add at the end)\))?$")


@dataclass(frozen=True)
class Block:
    """One code block of the tutorial: its language, caption (file, append?) and code."""

    language: str
    path: str | None
    append: bool
    code: str


def read_blocks(text: str) -> list[Block]:
    """Every code block of an reST text, in order, dedented."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        directive = DIRECTIVE.match(line)
        if not directive:
            continue
        body = number + 1
        caption = CAPTION.match(lines[body]) if body < len(lines) else None
        if caption:
            body += 1
        code = []
        for item in lines[body + 1 :]:
            if item and not item.startswith("   "):
                break
            code.append(item[3:])
        blocks.append(
            Block(
                language=directive.group(1),
                path=caption.group(1) if caption else None,
                append=bool(caption and caption.group(2)),
                code="\n".join(code).strip("\n") + "\n",
            )
        )
    return blocks


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a step; a failure shows its output."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=project_env())
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def project_env() -> dict[str, str]:
    """The environment of the tutorial's project: its own settings, this virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BROADCAST"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def shell_step(line: str) -> list[str]:
    """A tutorial shell line as a command run with this interpreter."""
    words = line.split()
    if words[0] == "django-admin":
        return [sys.executable, "-m", "django", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return words


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The tutorial's project, built and tested step by step; its directory and outputs."""
    cwd = tmp_path_factory.mktemp("tutorial")
    outputs: dict[str, str] = {}
    for block in read_blocks(TUTORIAL.read_text()):
        if block.path:
            target = cwd / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if block.append:
                assert target.exists(), f"{block.path} is continued before it is written"
                target.write_text(target.read_text() + "\n\n" + block.code)
            else:
                target.write_text(block.code)
        elif block.language == "sh":
            for line in block.code.splitlines():
                if not RUN_STEPS.match(line):
                    continue
                if line.startswith("cd "):
                    cwd = cwd / line.split()[1]
                    continue
                done = run(shell_step(line), cwd)
                outputs[line] = done.stdout + done.stderr
    return cwd, outputs


def test_the_tutorial_runs_every_step(built: tuple[Path, dict[str, str]]) -> None:
    _, outputs = built
    steps = [
        "django-admin startproject mysite",
        "python manage.py startapp chat",
        "python manage.py check",
        "python manage.py makemigrations chat",
        "python manage.py migrate",
        "python manage.py test",
    ]
    assert [step for step in steps if step not in outputs] == []
    assert "System check identified no issues" in outputs["python manage.py check"]


def test_its_tests_run_and_pass(built: tuple[Path, dict[str, str]]) -> None:
    _, outputs = built
    ran = re.search(r"^Ran (\d+) tests?", outputs["python manage.py test"], re.M)
    assert ran and int(ran.group(1)) >= 5, outputs["python manage.py test"]
    assert re.search(r"^OK$", outputs["python manage.py test"], re.M)


VIEWS_SCRIPT = """
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
client = Client(enforce_csrf_checks=True)
assert client.post("/chat/lobby/post/", {"text": "hi"}).status_code == 403
client.get("/chat/lobby/")
token = client.cookies["csrftoken"].value
first = client.post("/chat/lobby/post/", {"text": "one"}, headers={"X-CSRFToken": token})
client.post("/chat/lobby/post/", {"text": "two"}, headers={"X-CSRFToken": token})
polled = client.get("/chat/lobby/poll/", {"since": first.json()["id"]})
print("poll", polled.status_code, [e["message"]["text"] for e in polled.json()["events"]])
print("garbage", client.get("/chat/lobby/poll/", {"since": "garbage"}).status_code)
print("recent", client.get("/chat/lobby/").json()["messages"][-1]["text"])
"""


def test_its_views_answer(built: tuple[Path, dict[str, str]]) -> None:
    cwd, _ = built
    done = run([sys.executable, "manage.py", "shell", "-v", "0", "-c", VIEWS_SCRIPT], cwd)
    assert done.stdout.splitlines() == ["poll 200 ['two']", "garbage 400", "recent two"]


def test_follow_stops_cleanly_on_ctrl_c(built: tuple[Path, dict[str, str]]) -> None:
    cwd, _ = built
    follow = subprocess.Popen(
        [sys.executable, "manage.py", "follow"],
        cwd=cwd,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running this suite in the background ignores SIGINT, and children
        # inherit that: give the command the default Ctrl-C a terminal has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "Following site.notices (Ctrl-C to stop)\n"
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert (follow.returncode, out, err) == (0, "", "")
