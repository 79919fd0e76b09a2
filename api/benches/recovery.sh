#!/usr/bin/env bash
# Backup and restore at scale, each beside a baseline measured in the same run on the same
# disk: `oacis backup` (full) against `oacis export` (reading the log once and writing the
# same JSON Lines), `oacis backup verify` against `oacis verify --file` on that export, and
# `oacis restore` (verify, write the log, replay the views) against `oacis rebuild` (the
# replay alone) on the original folder. Then an incremental backup of 1% more events. Prints
# a Markdown table of seconds and events/s.
#
#   bash api/benches/recovery.sh                # N=230000 customers (about 1M events)
#   N=23000 bash api/benches/recovery.sh        # about 100k events
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
N="${N:-230000}"
WORK="${WORK:-$(mktemp -d)}"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
cargo build --release -p oacis-api >&2
BIN="$ROOT/target/release/oacis"
export RUST_LOG=warn
DATA="$WORK/data"
echo "demo data: $N customers" >&2
"$BIN" demo --data "$DATA" --customers "$N" >/dev/null 2>&1
KEK="$WORK/data.kek"
sync

# Seconds taken by a command (its output discarded; it must succeed).
timed() {
  local started ended
  started=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  ended=$(date +%s.%N)
  python3 -c "print(f'{$ended - $started:.2f}')"
}

EVENTS=$("$BIN" checkpoint issue --data "$DATA" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
echo "events: $EVENTS" >&2
export_s=$(timed "$BIN" export --data "$DATA" --out "$WORK/export.jsonl")
backup_s=$(timed "$BIN" backup --data "$DATA" --out "$WORK/full")
verify_file_s=$(timed "$BIN" verify --file "$WORK/export.jsonl")
verify_backup_s=$(timed "$BIN" backup verify "$WORK/full")
rebuild_s=$(timed "$BIN" rebuild --data "$DATA" --key-file "$KEK")
restore_s=$(timed "$BIN" restore "$WORK/full" --data "$WORK/restored" --key-file "$KEK")
rm -rf "$WORK/restored"

# An incremental of about 1% more events: a second demo load is not possible on a filled
# folder, so the log grows through an import of customers.
python3 - "$WORK/more.csv" "$((N / 100 + 1))" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w", encoding="utf-8") as out:
    out.write("name,kind,source,external_id\n")
    for i in range(n):
        out.write(f"增量客户{i},COMPANY,OTHER,bench-{i}\n")
PY
"$BIN" import customers "$WORK/more.csv" --data "$DATA" --key-file "$KEK" >/dev/null 2>&1
AFTER=$("$BIN" checkpoint issue --data "$DATA" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
incremental_s=$(timed "$BIN" backup --data "$DATA" --since "$WORK/full" --out "$WORK/incremental")
chain_s=$(timed "$BIN" backup verify "$WORK/full" "$WORK/incremental")

python3 - "$EVENTS" "$AFTER" "$export_s" "$backup_s" "$verify_file_s" "$verify_backup_s" "$rebuild_s" "$restore_s" "$incremental_s" "$chain_s" <<'PY'
import sys
events, after = int(sys.argv[1]), int(sys.argv[2])
export_s, backup_s, vfile, vbackup, rebuild, restore, incr, chain = map(float, sys.argv[3:])
rate = lambda n, s: f"{n / s:,.0f}" if s > 0 else "-"
print(f"| operation ({events:,} events) | s | events/s | baseline (same run) | s | events/s | ratio |")
print("|---|---:|---:|---|---:|---:|---:|")
print(f"| backup, full | {backup_s:.2f} | {rate(events, backup_s)} | export (read the log once) | {export_s:.2f} | {rate(events, export_s)} | {export_s / backup_s:.2f}x |")
print(f"| backup verify | {vbackup:.2f} | {rate(events, vbackup)} | verify --file on the export | {vfile:.2f} | {rate(events, vfile)} | {vfile / vbackup:.2f}x |")
print(f"| restore (verify, write, replay) | {restore:.2f} | {rate(events, restore)} | rebuild (replay alone) | {rebuild:.2f} | {rate(events, rebuild)} | {rebuild / restore:.2f}x |")
print(f"| backup, incremental ({after - events:,} events) | {incr:.2f} | {rate(after - events, incr)} | - | - | - | - |")
print(f"| backup verify, full + incremental | {chain:.2f} | {rate(after, chain)} | - | - | - | - |")
PY
