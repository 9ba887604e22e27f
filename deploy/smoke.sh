#!/usr/bin/env bash
# Container smoke test with podman, offline from any container registry (not in CI: it
# needs podman, debootstrap and a few minutes).
#
# No registry is reachable where this project is built, so the image's runtime stage is
# built on a local base: a Debian bookworm root made with debootstrap (from the Debian
# mirror apt already uses) with ca-certificates and tini, imported into podman. The
# builder stage is replaced by a release binary built on the host (same Debian, same
# glibc). Then, inside the image: `gptbot config check`, a `gptbot run` against the
# tests' fake Bot API and fake model server on the host network, `gptbot health` and
# `gptbot health --ready` through the image's own HEALTHCHECK command, and a SIGTERM stop.
#
#   apt-get install podman debootstrap && deploy/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "smoke.sh needs $tool (apt-get install $tool)"; exit 1; }
done
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --bin gptbot --example fakes
work=$(mktemp -d)
cleanup() {
  podman rm -f gptbot-smoke >/dev/null 2>&1 || true
  [ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! podman image exists localhost/gptbot-base:bookworm; then
  echo "== debootstrap a bookworm base (ca-certificates, tini)"
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  debootstrap --variant=minbase --include=ca-certificates,tini bookworm "$work/root" \
    "${mirror:-http://deb.debian.org/debian}" >/dev/null
  tar -C "$work/root" -c . | podman import - localhost/gptbot-base:bookworm >/dev/null
fi

echo "== the runtime stage of deploy/Dockerfile, on the local base"
mkdir -p "$work/ctx/target/release" "$work/ctx/config"
cp "$TARGET/release/gptbot" "$work/ctx/target/release/gptbot"
cp config/default.toml "$work/ctx/config/default.toml"
# From `FROM debian… AS runtime` on; its apt-get step is already in the base.
sed -n '/^FROM debian.* AS runtime/,$p' deploy/Dockerfile |
  sed -e 's#^FROM debian.* AS runtime#FROM localhost/gptbot-base:bookworm#' \
      -e 's#COPY --from=builder /src/target/release/gptbot#COPY target/release/gptbot#' \
      -e 's#apt-get update#true#; s#&& apt-get install -y --no-install-recommends ca-certificates tini#\&\& true#; s#&& rm -rf /var/lib/apt/lists/\*#\&\& true#' \
  >"$work/ctx/Containerfile"
podman build --quiet -t localhost/gptbot:smoke "$work/ctx" >/dev/null

echo "== gptbot config check inside the image"
podman run --rm -e OPENAI_API_KEY=sk-smoke localhost/gptbot:smoke config check >/dev/null

echo "== gptbot run inside the image, against fakes on the host"
# The tests' fakes (examples/fakes.rs).
"$TARGET/release/examples/fakes" >"$work/fakes.env" &
FAKE_PID=$!
for _ in $(seq 1 50); do [ -s "$work/fakes.env" ] && break; sleep 0.2; done
# shellcheck disable=SC1091
. "$work/fakes.env"
podman run -d --name gptbot-smoke --network host \
  -e TELEGRAM_BOT_TOKEN="$FAKE_TELEGRAM_TOKEN" -e GPTBOT__TELEGRAM__API_URL="$FAKE_TELEGRAM_URL" \
  -e OPENAI_BASE_URL="$FAKE_OPENAI_URL" -e OPENAI_API_KEY=sk-smoke \
  -e GPTBOT__HTTP__LISTEN=127.0.0.1:19090 \
  localhost/gptbot:smoke run >/dev/null
for _ in $(seq 1 50); do
  podman exec gptbot-smoke gptbot --config /etc/gptbot/gptbot.toml health --ready >/dev/null 2>&1 && break
  sleep 0.5
done
podman exec gptbot-smoke gptbot --config /etc/gptbot/gptbot.toml health
podman exec gptbot-smoke gptbot --config /etc/gptbot/gptbot.toml health --ready
podman stop --time 30 gptbot-smoke >/dev/null
code=$(podman inspect gptbot-smoke --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { podman logs gptbot-smoke; echo "exit code $code after SIGTERM"; exit 1; }
echo "smoke: OK (config check, run, health, health --ready, clean stop)"
