#!/usr/bin/env bash
# Starts OACIS for the GraphQL peer benchmark: run by the peer's run.sh as GRAPHQL_START
# (see peer.sh), in the peer's folder, with PORT and DATA_DIR (the generated customers.csv)
# in its environment.
#
# 1. A first start sets up the store and defines a role `peer-bench` (customer.read and
#    customer.write over every record, no personal data) held by a user `peer.bench`, then
#    stops.
# 2. `oacis import customers` loads the peer's customers with their ids, in parts of at most
#    100,000 rows (one import's limit is 200,000 rows and 32 MiB), owner, department and
#    status ignored, values outside OACIS's rules left out (each reported).
# 3. It serves on PORT with `--anonymous-user peer.bench`, because the peer's driver sends no
#    Authorization header (PostGraphile's side runs as its default role in the same way).
#
# The store lives in DATA_DIR, which run.sh deletes at the end. OACIS_BIN overrides the binary.
#
# The peer's driver waits at most 180 s for a server; importing 1,000,000 customers takes
# longer. So steps 1-2 also run on their own (`peer-start.sh build DIR`, which peer.sh runs
# first for large runs, on the same generated CSV), and a store so built is kept in
# target/peer-stores/ under the CSV's SHA-256: a start whose CSV has a kept store copies it
# instead of importing again.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${OACIS_BIN:-$ROOT/target/release/oacis}"
STORES="$ROOT/target/peer-stores"
MODE="serve"
if [ "${1:-}" = build ]; then MODE=build; DATA_DIR="${2:?peer-start.sh build DIR}"; fi
: "${DATA_DIR:?set by the peer run.sh}"
export OACIS_DATA="$DATA_DIR/oacis-data"
export OACIS_ADMIN_PASSWORD="Peer-Bench-2026"
LOG="$DATA_DIR/oacis-setup.log"
KEPT="$STORES/$(sha256sum "$DATA_DIR/customers.csv" | cut -c1-32)"
if [ "$MODE" = build ] && [ -d "$KEPT/oacis-data" ]; then
  echo "oacis: a store for this CSV is kept already in $KEPT" >&2
  exit 0
fi
if [ "$MODE" = serve ] && [ -d "$KEPT/oacis-data" ]; then
  echo "oacis: using the store kept for this CSV in $KEPT" >&2
  cp -a "$KEPT/oacis-data" "$KEPT/oacis-data.kek" "$DATA_DIR/"
  exec "$BIN" serve --listen "127.0.0.1:${PORT:?set by the peer run.sh}" --anonymous-user peer.bench
fi

# 1. Set-up, on a port of its own.
"$BIN" serve --listen 127.0.0.1:0 2> "$LOG" &
SETUP_PID=$!
URL=""
while [ -z "$URL" ]; do
  kill -0 "$SETUP_PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  URL="$(grep -o 'http://[^ ]*/graphql' "$LOG" || true)"
  sleep 0.2
done
python3 - "$URL" "$OACIS_ADMIN_PASSWORD" <<'PY'
import json, sys, urllib.request
url, password = sys.argv[1:3]
token = None
def ask(query, variables=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    answer = json.load(urllib.request.urlopen(urllib.request.Request(url, body, headers)))
    if answer.get("errors"):
        sys.exit(f"set-up failed: {answer['errors']}")
    return answer["data"]
token = ask("mutation($p: String!) { signIn(input: {name: \"admin\", password: $p}) { token } }", {"p": password})["signIn"]["token"]
token = ask("mutation($p: String!, $n: String!) { changePassword(current: $p, newPassword: $n) { token } }",
            {"p": password, "n": password + "-changed"})["changePassword"]["token"]
root = next(d["id"] for d in ask("{ departments { id parent } }")["departments"] if d["parent"] is None)
role = ask('mutation { defineRole(name: "peer-bench", permissions: ["customer.read", "customer.write"]) { id } }')["defineRole"]["id"]
user = ask("mutation($d: String!) { createUser(username: \"peer.bench\", employeeNo: \"PB-1\", displayName: \"Peer benchmark\", "
           "department: $d, initialPassword: \"Unused-Peer-Bench-2026\") { id } }", {"d": root})["createUser"]["id"]
ask("mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }", {"u": user, "r": role})
# The anonymous user is used only once its first password change is done.
token = None
token = ask("mutation { signIn(input: {name: \"peer.bench\", password: \"Unused-Peer-Bench-2026\"}) { token } }")["signIn"]["token"]
ask("mutation { changePassword(current: \"Unused-Peer-Bench-2026\", newPassword: \"Unused-Peer-Bench-2026-changed\") { token } }")
PY
kill -TERM "$SETUP_PID"
wait "$SETUP_PID" || true

# 2. The customers, in parts (header repeated in each).
PARTS="$DATA_DIR/oacis-parts"
mkdir -p "$PARTS"
python3 - "$DATA_DIR/customers.csv" "$PARTS" <<'PY'
import csv, sys
source, parts = sys.argv[1:3]
with open(source, newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    header = next(rows)
    out, n, part = None, 0, 0
    for row in rows:
        if out is None or n == 100_000:
            part += 1
            handle = open(f"{parts}/part-{part:03}.csv", "w", newline="", encoding="utf-8")
            out, n = csv.writer(handle), 0
            out.writerow(header)
        out.writerow(row)
        n += 1
PY
for part in "$PARTS"/part-*.csv; do
  "$BIN" import customers "$part" --map owner=ignore --map department=ignore --map status=ignore \
    --omit-invalid-values --report "$part.report.json" >> "$LOG" 2>&1
done

if [ "$MODE" = build ]; then
  rm -rf "$KEPT"
  mkdir -p "$KEPT"
  cp -a "$OACIS_DATA" "$OACIS_DATA.kek" "$KEPT/"
  echo "oacis: store for $DATA_DIR/customers.csv kept in $KEPT" >&2
  exit 0
fi

# 3. Serve.
exec "$BIN" serve --listen "127.0.0.1:${PORT:?set by the peer run.sh}" --anonymous-user peer.bench
