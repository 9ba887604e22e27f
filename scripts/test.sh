#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own redis-server processes (on free
# ports), so the binary must be installed; this script installs it when it can.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER_BIN:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing redis-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "scripts/test.sh: redis-server is required (e.g. sudo apt-get install redis-server)," >&2
    echo "or set REDIS_SERVER_BIN to its path." >&2
    exit 1
  fi
fi

exec cargo test --locked --no-fail-fast "$@"
