#!/usr/bin/env bash
# Make sure the services the tests talk to are up on loopback: Redis 6379, PostgreSQL 5432.
# Starts (and if needed installs, from Debian packages) whatever is missing. Idempotent.
set -euo pipefail

need_apt_update=1
apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "services.sh: need root to install $*" >&2; return 1; fi
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for NAME CMD...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "services.sh: $name did not come up" >&2; return 1
}

# Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/broadcaster-redis.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

# PostgreSQL (trust auth for user postgres on 127.0.0.1, database "test")
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    ver=$(ls /etc/postgresql)
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' \
      "/etc/postgresql/$ver/main/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
fi
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null
fi
