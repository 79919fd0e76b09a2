#!/usr/bin/env bash
# Cold start of `oacis serve` on a data folder, without and with its snapshots.
#
#   bash api/benches/load/cold-start.sh DATA_DIR [ROUNDS]
#
# Each round: (1) the snapshots are removed and the server started until it serves (the log's
# indexes and every view rebuilt from the records), then stopped with SIGTERM, which writes
# both snapshots; (2) the server is started again (from the snapshots) until it serves, then
# until the records under the index snapshot are read back, and stopped. Prints, per start,
# the seconds to serving, the resident memory then, and the stop's seconds; then the seconds
# `oacis export` takes to read the log once (the reference the target is stated against).
# OACIS_BIN overrides the binary (default target/release/oacis); the data folder's KEK is the
# default `<DATA_DIR>.kek`, and OACIS_ADMIN_PASSWORD is needed only for a new folder.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${OACIS_BIN:-$ROOT/target/release/oacis}"
DATA="${1:?cold-start.sh DATA_DIR [ROUNDS]}"
ROUNDS="${2:-1}"
PORT="${PORT:-18399}"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

now() { date +%s.%N; }
# start LABEL: starts the server, waits until it serves, prints the figures; leaves PID set.
start() {
  local t0 t1 rss
  sync
  t0=$(now)
  RUST_LOG=warn,oacis=info,oacis_eventlog=info,oacis_projections=info \
    "$BIN" serve --data "$DATA" --listen "127.0.0.1:$PORT" > /dev/null 2> "$LOG" &
  PID=$!
  until grep -q "oacis: serving" "$LOG"; do
    kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(now)
  rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status")
  printf '%s: serving after %.2f s, resident %s MiB\n' "$1" "$(echo "$t1 - $t0" | bc)" "$rss"
  grep -E "oacis: (views|log indexes|the views)" "$LOG" | sed 's/^/    /' || true
  START_T0=$t0
}
stop() {
  local t0 t1
  t0=$(now)
  kill -TERM "$PID"
  wait "$PID" || true
  t1=$(now)
  printf '    stop %.2f s; %s\n' "$(echo "$t1 - $t0" | bc)" "$(grep -o 'views snapshot written.*' "$LOG" || echo 'no views snapshot')"
}

for round in $(seq 1 "$ROUNDS"); do
  rm -f "$DATA"/*.snapshot
  start "round $round, no snapshot"
  stop
  start "round $round, from the snapshots"
  until grep -q "records under the index snapshot check\|does not check" "$LOG"; do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  printf '    records under the index snapshot read back %.2f s after the start\n' "$(echo "$(now) - $START_T0" | bc)"
  stop
done
OUT="$(mktemp -d)"
t0=$(now)
"$BIN" export --data "$DATA" --out "$OUT/log.jsonl" > /dev/null 2>&1
printf 'read the log once (oacis export): %.2f s\n' "$(echo "$(now) - $t0" | bc)"
rm -rf "$OUT"
