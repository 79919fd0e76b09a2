#!/usr/bin/env bash
# Load on `oacis serve` from a second process over loopback: the read intents of the GraphQL
# peer workload (R1 first page by name, R2 segment + source newest first, R3 one-character
# name search, R4 one customer by id) and its durable write (W1: 64 connections logging
# interactions for one and the same customer), driven by oha with 64 connections, after
# `oacis demo --customers N`. Prints a Markdown table (requests/s, p50, p99, errors) and the
# server's resident memory. Reads run as the demo analyst (scope all, no personal data, so
# no access-log write per response); R1P repeats R1 as the administrator, who sees personal
# data, so each response is first recorded in the access log (one durable append). W1 runs
# three times on one customer (its stream grows between runs), W1M spreads the same writes
# over 1,000 customers.
#
#   bash api/benches/load/run.sh              # N=100000 DURATION=10 CONNECTIONS=64
#   N=10000 DURATION=5 bash api/benches/load/run.sh
#
# Needs oha (`cargo install oha --version 1.16.0 --locked`), curl and python3.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
N="${N:-100000}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
PASSWORD="Bench-Pass-2026"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cd "$ROOT"
cargo build --release -p oacis-api >&2
BIN="$ROOT/target/release/oacis"
echo "demo data: $N customers" >&2
OACIS_ADMIN_PASSWORD="$PASSWORD" "$BIN" demo --data "$WORK/data" --customers "$N" 2> "$WORK/demo.log"
ANALYST_PASSWORD="$(awk '$1 == "demo.analyst" { print $2 }' "$WORK/demo.log")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
START=$(date +%s.%N)
"$BIN" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" --request-timeout-seconds 30 \
  --sign-in-per-account-per-minute 1000 2> "$WORK/serve.log" &
SERVER_PID=$!
until grep -q 'oacis: serving' "$WORK/serve.log"; do sleep 0.1; done
READY=$(python3 -c "print(f'{$(date +%s.%N) - $START:.2f}')")
URL="http://127.0.0.1:$PORT/graphql"

gql() { curl -s "$URL" -H 'content-type: application/json' ${2:+-H "authorization: Bearer $2"} -d "$1"; }
token() { sed -E 's/.*"token":"([^"]+)".*/\1/'; }
ADMIN=$(gql "{\"query\":\"mutation { signIn(input: {name: \\\"admin\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}" | token)
ADMIN=$(gql "{\"query\":\"mutation { changePassword(current: \\\"$PASSWORD\\\", newPassword: \\\"Bench-Changed-2026\\\") { token } }\"}" "$ADMIN" | token)
ANALYST=$(gql "{\"query\":\"mutation { signIn(input: {name: \\\"demo.analyst\\\", password: \\\"$ANALYST_PASSWORD\\\"}) { token } }\"}" | token)

# 1,000 customer ids for R4, and one customer for W1.
python3 - "$URL" "$ANALYST" "$WORK" <<'PY'
import json, sys, urllib.request
url, token, work = sys.argv[1:4]
def ask(query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json", "authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
ids, after = [], None
while len(ids) < 1000:
    page = ask("query($a: String) { customers(first: 100, after: $a) { nodes { id } pageInfo { endCursor } } }", {"a": after})
    ids += [n["id"] for n in page["data"]["customers"]["nodes"]]
    after = page["data"]["customers"]["pageInfo"]["endCursor"]
params = {"r2_segment": "smb", "r2_source": "REFERRAL", "r3_substring": "王", "w1_customer_id": ids[0]}
json.dump({"ids": ids[:1000], "params": params}, open(f"{work}/params.json", "w"))
PY

# One request body per intent (R4: one per id, picked at random by oha -Z).
python3 - "$HERE/queries/oacis" "$WORK" <<'PY'
import json, sys
queries, work = sys.argv[1:3]
data = json.load(open(f"{work}/params.json"))
def fill(v, id_=None):
    if isinstance(v, dict): return {k: fill(x, id_) for k, x in v.items()}
    if v == "{{id}}": return id_
    if isinstance(v, str) and v.startswith("{{"): return data["params"][v[2:-2]]
    return v
for intent in ["R1", "R2", "R3", "R4", "W1"]:
    query = open(f"{queries}/{intent}.graphql").read()
    variables = json.load(open(f"{queries}/{intent}.json"))
    if intent == "R4":
        with open(f"{work}/R4.bodies", "w") as out:
            for id_ in data["ids"]:
                out.write(json.dumps({"query": query, "variables": fill(variables, id_)}) + "\n")
        open(f"{work}/R4.json", "w").write(json.dumps({"query": query, "variables": fill(variables, data["ids"][0])}))
    elif intent == "W1":
        # W1M: the same write, each request for one of 1,000 customers at random.
        with open(f"{work}/W1M.bodies", "w") as out:
            for id_ in data["ids"]:
                out.write(json.dumps({"query": query, "variables": {"customerId": id_}}) + "\n")
        open(f"{work}/W1M.json", "w").write(json.dumps({"query": query, "variables": {"customerId": data["ids"][1]}}))
        open(f"{work}/W1.json", "w").write(json.dumps({"query": query, "variables": fill(variables)}))
    else:
        open(f"{work}/{intent}.json", "w").write(json.dumps({"query": query, "variables": fill(variables)}))
PY
cp "$WORK/R1.json" "$WORK/R1P.json"

rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }
HEAD_BEFORE=$(gql '{"query":"{ verifyChain { headSeq } }"}' "$ADMIN" | sed -E 's/.*"headSeq":([0-9]+).*/\1/')
W1_CUSTOMER=$(python3 -c "import json; print(json.load(open('$WORK/params.json'))['params']['w1_customer_id'])")
echo "| intent | requests/s | p50 ms | p99 ms | errors (non-2xx, GraphQL, cut off at the end) | sample body ok |"
echo "|---|---|---|---|---|---|"
# W1 runs three times on the same customer: its stream grows by tens of thousands of events
# between the runs, and a write must not cost more on a longer stream.
for intent in R1 R2 R3 R4 R1P W1 W1 W1 W1M; do
  if [ "$intent" = W1 ]; then
    V=$(gql "{\"query\":\"{ customer(id: \\\"$W1_CUSTOMER\\\") { version } }\"}" "$ADMIN" | sed -E 's/.*"version":([0-9]+).*/\1/')
    LABEL="W1, stream at v$V"
  else
    LABEL="$intent"
  fi
  TOKEN="$ANALYST"; case "$intent" in W1*|R1P) TOKEN="$ADMIN" ;; esac
  SAMPLE=$(gql "$(cat "$WORK/$intent.json")" "$TOKEN")
  case "$SAMPLE" in *'"errors"'*) OK="no: ${SAMPLE:0:200}" ;; *) OK=yes ;; esac
  BODY=(-D "$WORK/$intent.json"); case "$intent" in R4|W1M) BODY=(-Z "$WORK/$intent.bodies") ;; esac
  "$OHA" --no-tui -c "$CONNECTIONS" -z "${WARMUP}s" -m POST -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" "${BODY[@]}" "$URL" > /dev/null
  "$OHA" --no-tui -c "$CONNECTIONS" -z "${DURATION}s" -m POST -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" "${BODY[@]}" --output-format json "$URL" > "$WORK/$intent.out"
  python3 - "$WORK/$intent.out" "$LABEL" "$OK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
errors = r.get("errorDistribution", {})
cut = sum(n for e, n in errors.items() if "deadline" in e.lower() or "abort" in e.lower())
other = sum(errors.values()) - cut
print(f"| {sys.argv[2]} | {s['requestsPerSec']:.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} | {bad} non-2xx, {other} failed, {cut} cut off | {sys.argv[3]} |")
PY
done
HEAD_AFTER=$(gql '{"query":"{ verifyChain { ok headSeq } }"}' "$ADMIN")
echo
echo "server: ready ${READY}s after start (open + replay); resident memory $(rss) MiB after the run"
echo "log head before the runs: seq $HEAD_BEFORE; after: $HEAD_AFTER"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores shared by oha and the server"
