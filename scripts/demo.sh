#!/usr/bin/env bash
# The chat demo, from a clean clone: virtualenv, install, migrate, then Daphne on
# http://127.0.0.1:8000 (PORT and BIND override). The memory backend unless
# BROADCAST_URL says otherwise, e.g.
#   BROADCAST_URL=redis://127.0.0.1:6379/0 PORT=8001 scripts/demo.sh
#   BROADCAST_URL=postgresql://postgres@127.0.0.1:5432/test scripts/demo.sh
# DEBUG is off unless DJANGO_DEBUG=1 (its error page masks the URL's password).
# It installs the `demo` extra (plus `redis` or `postgres` for BROADCAST_URL) into
# .venv-demo, apart from the test suite's .venv, and skips the install on a restart
# when pyproject.toml and the extras are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-demo

if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv"; then
    # Debian ships venv's pip bootstrap separately.
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      echo "demo.sh: 'python3 -m venv' failed; install Debian's python3-venv package" >&2
      exit 1
    fi
  fi
fi

case "${BROADCAST_URL:-}" in
  redis://* | rediss://* | unix://*) extras=demo,redis ;;
  postgres://* | postgresql://*) extras=demo,postgres ;;
  *) extras=demo ;;  # memory; settings.py names the accepted URLs
esac
wheels=()  # psycopg's binary wheel: no libpq needed on the host
[ "$extras" = demo,postgres ] && wheels=("psycopg[binary]>=3.1")
stamp="$venv/.installed"
want="$extras $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile -e ".[$extras]" "${wheels[@]}"
  echo "$want" >"$stamp"
fi

cd testproject
"../$venv/bin/python" manage.py migrate --noinput -v 0
host=${BIND:-127.0.0.1}
port=${PORT:-8000}
backend=${BROADCAST_URL:+${BROADCAST_URL%%://*}}  # the scheme only: a URL may hold a password
echo "Chat demo on http://$host:$port/ (backend: ${backend:-memory}); Ctrl-C stops it."
exec "../$venv/bin/daphne" -b "$host" -p "$port" testproject.asgi:application
