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
# chroot isolation: RUN steps need no OCI runtime (some sandboxes cannot start one).
podman build --quiet --format docker --isolation chroot -t localhost/gptbot:smoke "$work/ctx" >/dev/null

# Where containers cannot be started (crun refused: no cgroup v2 delegation, setrlimit
# not permitted), the image's own file system is run with chroot instead: the same
# binary, libraries, config and user, without the namespaces.
if podman run --rm localhost/gptbot:smoke --help >/dev/null 2>&1; then
  mode=podman
else
  mode=chroot
  # A writable copy of the image's file system (the ledger file is written in it).
  cp -a "$(podman image mount localhost/gptbot:smoke)/." "$work/rootfs/" 2>/dev/null ||
    { mkdir -p "$work/rootfs" && cp -a "$(podman image mount localhost/gptbot:smoke)/." "$work/rootfs/"; }
  podman image unmount localhost/gptbot:smoke >/dev/null
  root=$work/rootfs
  echo "podman cannot start containers here; running the image's file system with chroot"
fi
inside() { # inside ENV... -- ARGS...: gptbot in the image, as the image's user
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  if [ "$mode" = podman ]; then
    local flags=()
    for e in "${envs[@]}"; do flags+=(-e "$e"); done
    podman run --rm --network host "${flags[@]}" localhost/gptbot:smoke "$@"
  else
    chroot --userspec=10001:10001 "$root" /usr/bin/env -i HOME=/var/lib/gptbot \
      DATABASE_URL=sqlite:///var/lib/gptbot/gptbot.db "${envs[@]}" \
      /usr/local/bin/gptbot --config /etc/gptbot/gptbot.toml "$@"
  fi
}

echo "== gptbot config check inside the image ($mode)"
inside OPENAI_API_KEY=sk-smoke -- config check >/dev/null

echo "== gptbot run inside the image, against fakes on the host"
# The tests' fakes (examples/fakes.rs).
"$TARGET/release/examples/fakes" >"$work/fakes.env" &
FAKE_PID=$!
for _ in $(seq 1 50); do [ -s "$work/fakes.env" ] && break; sleep 0.2; done
# shellcheck disable=SC1091
. "$work/fakes.env"
run_env=(TELEGRAM_BOT_TOKEN="$FAKE_TELEGRAM_TOKEN" GPTBOT__TELEGRAM__API_URL="$FAKE_TELEGRAM_URL"
  OPENAI_BASE_URL="$FAKE_OPENAI_URL" OPENAI_API_KEY=sk-smoke GPTBOT__HTTP__LISTEN=127.0.0.1:19090)
inside "${run_env[@]}" -- run >"$work/run.log" 2>&1 &
RUN_PID=$!
ok=
for _ in $(seq 1 60); do
  if inside GPTBOT__HTTP__LISTEN=127.0.0.1:19090 -- health --ready >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || { cat "$work/run.log"; echo "never ready"; exit 1; }
inside GPTBOT__HTTP__LISTEN=127.0.0.1:19090 -- health
inside GPTBOT__HTTP__LISTEN=127.0.0.1:19090 -- health --ready
# The image's signal path: SIGTERM to the process, answers drained, exit 0.
pkill -TERM -f "gptbot --config /etc/gptbot/gptbot.toml run" || podman stop --time 30 --latest >/dev/null
wait "$RUN_PID" || { cat "$work/run.log"; echo "unclean exit after SIGTERM"; exit 1; }
echo "smoke: OK ($mode: config check, run, health, health --ready, clean stop on SIGTERM)"
