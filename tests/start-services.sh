#!/usr/bin/env bash
# Start the local PostgreSQL, Redis and MariaDB if they are installed but not running.
# The backends' tests skip without them, or fail when CHATHISTORY_REQUIRE_SERVICES=1.
set -u

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
fi

if command -v redis-server >/dev/null 2>&1; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
fi
if [ -x /usr/sbin/mariadbd ] && command -v mariadb-admin >/dev/null 2>&1; then
  if ! mariadb-admin -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld 2>/dev/null && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 1 60); do
      mariadb-admin -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1 && break; sleep 0.5
    done
  fi
fi
exit 0
