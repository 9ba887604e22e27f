#!/usr/bin/env bash
# Instructions per message of one or more builds of the bot, without start-up: callgrind
# over the load bench's shape (a) (one start-up, 30 messages, the stop) and shape (b)
# (one start-up, 100 messages, the stop); (b - a) / 70 is one message.
#
#   scripts/callgrind-per-message.sh o3=/tmp/gptbot-o3 s=target/release/gptbot
#
# Needs valgrind. Counts, not seconds: the same binary gives the same figures whatever
# else the machine does.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CALLGRIND_OUT:-/tmp/callgrind-per-message}
mkdir -p "$out"
bench=$(cargo bench --locked --bench load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "load" and m.get("executable"):
        print(m["executable"])')
for spec in "$@"; do
  name=${spec%%=*}
  bin=$(realpath "${spec#*=}")
  declare -A count=()
  for shape in a b; do
    file="$out/$name.$shape.out"
    script="$out/$name.$shape.sh"
    printf '#!/bin/sh\nvalgrind --tool=callgrind --callgrind-out-file=%s %s "$@" &\nwait\n' "$file" "$bin" >"$script"
    chmod +x "$script"
    BENCH_BIN=$script BENCH_SHAPES=$shape "$bench" --bench >"$out/$name.$shape.log" 2>&1
    # The bench kills the script; the bot under callgrind writes its counts on SIGTERM.
    pkill -TERM -f "callgrind-out-file=$file" || true
    for _ in $(seq 60); do pgrep -f "callgrind-out-file=$file" >/dev/null || break; sleep 1; done
    count[$shape]=$(grep -h '^summary:' "$file" | awk '{print $2}')
  done
  per=$(((count[b] - count[a]) / 70))
  echo "$name: $(du -b "$bin" | cut -f1) bytes; shape a ${count[a]}, shape b ${count[b]}; per message $per; start + stop $((count[a] - 30 * per))"
done
