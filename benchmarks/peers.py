"""The peers' virtualenv: encode/broadcaster 0.3.1 on redis-py 5.3.1.

encode/broadcaster 0.3.1 delivers nothing with redis-py 6 and newer (its
subscribers wait forever, no error), and this project's virtualenv has a newer
redis-py, so that peer runs with its own interpreter. hiredis is installed
there too, as in the main virtualenv, so both sides parse replies alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-peers"
REQUIREMENTS = ["broadcaster==0.3.1", "redis==5.3.1", "hiredis"]
WHY = (
    "encode-broadcaster runs in benchmarks/.venv-peers on redis-py 5.3.1: "
    "broadcaster 0.3.1 delivers nothing with redis-py >= 6"
)
CHECK = "import broadcaster, redis; assert redis.__version__ == '5.3.1', redis.__version__"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """Return the peers' interpreter, creating the virtualenv if needed; raise on failure."""
    if python().exists() and _works():
        return python()
    print(f"creating {VENV} ({', '.join(REQUIREMENTS)}) ...", file=sys.stderr, flush=True)
    for command in (
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python()), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{' '.join(command[:3])} ... failed: {tail[0]}")
    if not _works():
        raise RuntimeError(f"{VENV} was created but cannot import broadcaster on redis 5.3.1")
    return python()


def _works() -> bool:
    return subprocess.run([str(python()), "-c", CHECK], capture_output=True).returncode == 0
