#!/usr/bin/env bash
# Run the whole test suite from a clean clone: services, virtualenv, browser, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k redis).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

# The end-to-end chat test drives Debian's Chromium (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: chromium is missing; install Debian's chromium package" >&2
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
