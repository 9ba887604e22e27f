#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own redis-server and PostgreSQL
# processes (on free ports, in temporary directories) and one headless Chromium with
# chromedriver, so these must be installed; this script installs them with apt-get when
# it can.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER_BIN:-}" ]; then
  missing+=(redis-server redis-tools)
fi
if [ -z "${PG_BIN:-}" ] && ! command -v initdb >/dev/null 2>&1 &&
  ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# The web front's browser test drives headless Chromium over WebDriver.
if [ -z "${GPTBOT_SKIP_BROWSER:-}" ] && [ -z "${CHROMEDRIVER_BIN:-}" ] &&
  ! command -v chromedriver >/dev/null 2>&1; then
  missing+=(chromium chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: please install ${missing[*]} (or set REDIS_SERVER_BIN / PG_BIN / CHROMIUM_BIN and CHROMEDRIVER_BIN, or GPTBOT_SKIP_BROWSER=1)." >&2
    exit 1
  fi
fi

# A real MCP server from PyPI for tests/mcp.rs (started by the bot over stdio).
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin"
export PATH
if ! command -v mcp-server-time >/dev/null 2>&1; then
  echo "scripts/test.sh: installing mcp-server-time (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check mcp-server-time
fi

exec cargo test --locked --no-fail-fast "$@"
