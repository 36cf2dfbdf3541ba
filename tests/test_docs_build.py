"""The documentation builds with the ``docs`` extra alone.

Installs ``-e ".[docs]"`` into a throwaway virtualenv (pip's cache and the
configured indexes provide Sphinx, furo and Django), checks that none of the
optional client libraries came with it, and runs ``sphinx-build -W`` there, so
a newcomer's ``pip install -e ".[docs]"`` is enough to build the docs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The import names of the optional extras' client libraries.
OPTIONAL_LIBRARIES = ["redis", "psycopg", "channels", "cryptography", "msgpack"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command with no PYTHONPATH or Django settings from this test run."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.timeout(600)
def test_docs_extra_alone_builds_the_docs_without_warnings(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    # This virtualenv's pip installs into the fresh one (faster than bootstrapping pip there).
    done = run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "-e", f"{ROOT}[docs]"
    )
    assert done.returncode == 0, done.stderr

    found = run(
        python,
        "-c",
        "import importlib.util as u, sys; "
        "print(' '.join(n for n in sys.argv[1:] if u.find_spec(n)))",
        *OPTIONAL_LIBRARIES,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "", f"the docs extra pulled in {found.stdout.strip()}"

    out = tmp_path / "html"
    build = run(env / "bin" / "sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", out)
    assert build.returncode == 0, build.stderr

    # autodoc documented the modules (not empty pages) and the theme is furo.
    assert "BroadcastHandler" in (out / "api.html").read_text()
    assert "EventStreamResponse" in (out / "sse.html").read_text()
    assert (out / "_static" / "styles" / "furo.css").is_file()
    assert (out / "_static" / "custom.css").is_file()
