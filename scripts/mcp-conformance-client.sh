#!/usr/bin/env bash
# The client side of the MCP conformance suite (@modelcontextprotocol/conformance): the
# suite starts a test server for a scenario and runs this with the server's URL as the
# last argument and the scenario in MCP_CONFORMANCE_SCENARIO. The bot's own MCP client
# (Streamable HTTP, as `gptbot run` uses it) connects through `gptbot tools`, and for
# the scenarios that call a tool, calls it with `--call`.
set -euo pipefail
url=${!#}
bin=${GPTBOT_BIN:-$(dirname "$0")/../target/debug/gptbot}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/gptbot.toml" <<TOML
[[tools.mcp]]
name = "conformance"
url = "$url"
TOML
call=()
case "${MCP_CONFORMANCE_SCENARIO:-}" in
  tools_call) call=(--call conformance__add_numbers --args '{"a": 2, "b": 3}') ;;
  sse-retry) call=(--call conformance__test_reconnection) ;;
esac
exec env -i PATH="$PATH" HOME="$dir" DATABASE_URL="sqlite://$dir/t.db" \
  "$bin" --config "$dir/gptbot.toml" tools --wait 10s "${call[@]}"
