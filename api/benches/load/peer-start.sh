#!/usr/bin/env bash
# Starts OACIS for the GraphQL peer benchmark: run by the peer's run.sh as GRAPHQL_START
# (see peer.sh), in the peer's folder, with PORT and DATA_DIR (the generated customers.csv)
# in its environment. It loads the peer's customers with their ids through the import at
# start, defines a role `peer-bench` (customer.read and customer.write over every record, no
# personal data) held by a user `peer.bench`, stops, and then serves on PORT with
# `--anonymous-user peer.bench`, because the peer's driver sends no Authorization header
# (PostGraphile's side runs as its default role in the same way).
#
# The store lives in DATA_DIR, which run.sh deletes at the end. OACIS_BIN overrides the binary.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${OACIS_BIN:-$ROOT/target/release/oacis}"
: "${PORT:?set by the peer run.sh}" "${DATA_DIR:?set by the peer run.sh}"
export OACIS_DATA="$DATA_DIR/oacis-data"
export OACIS_ADMIN_PASSWORD="Peer-Bench-2026"
export OACIS_IMPORT="$DATA_DIR/customers.csv"
export OACIS_IMPORT_MAP="owner=ignore,department=ignore,status=ignore"
export OACIS_IMPORT_OMIT_INVALID_VALUES=true
LOG="$DATA_DIR/oacis-setup.log"

# First start: the import, then the benchmark's role and user, on a port of its own.
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
PY
kill -TERM "$SETUP_PID"
wait "$SETUP_PID" || true

# The served start: the import is skipped (same file, already imported).
exec "$BIN" serve --listen "127.0.0.1:$PORT" --anonymous-user peer.bench
