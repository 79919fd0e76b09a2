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
#   SOAK=600 bash api/benches/load/run.sh     # a mixed soak instead of the rows (below)
#
# SOAK=S runs reads (R1-R4 mixed: a body picked at random per request) at READ_RATE (1800)
# requests/s and W1 writes at WRITE_RATE (200; 0 for none) requests/s, side by side for S seconds, samples
# the server's resident memory every 10 s, and checks that every write answered 2xx is in the
# log (the customer's stream grew by that many events, plus at most the writes cut off at the
# end, which may or may not have been applied) and that no answer was an error.
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
version() { gql "{\"query\":\"{ customer(id: \\\"$W1_CUSTOMER\\\") { version } }\"}" "$ADMIN" | sed -E 's/.*"version":([0-9]+).*/\1/'; }

if [ -n "${SOAK:-}" ]; then
  # Reads: R1, R2 and R3 333 times each beside R4's 1,000 bodies, so each is about a quarter.
  for intent in R1 R2 R3; do for _ in $(seq 333); do cat "$WORK/$intent.json"; echo; done; done > "$WORK/reads.bodies"
  cat "$WORK/R4.bodies" >> "$WORK/reads.bodies"
  V0=$(version)
  ( while kill -0 "$SERVER_PID" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 10; done ) > "$WORK/rss.log" &
  SAMPLER=$!
  common=(--no-tui -c 32 -z "${SOAK}s" -m POST -H 'content-type: application/json' --output-format json)
  "$OHA" "${common[@]}" -q "${READ_RATE:-1800}" -H "authorization: Bearer $ANALYST" -Z "$WORK/reads.bodies" "$URL" > "$WORK/reads.out" &
  READS=$!
  if [ "${WRITE_RATE:-200}" != 0 ]; then
    "$OHA" "${common[@]}" -q "${WRITE_RATE:-200}" -H "authorization: Bearer $ADMIN" -D "$WORK/W1.json" "$URL" > "$WORK/writes.out"
  fi
  wait "$READS"
  kill "$SAMPLER" 2>/dev/null || true
  V1=$(version)
  CHAIN=$(gql '{"query":"{ verifyChain { ok headSeq } }"}' "$ADMIN")
  curl -s "http://127.0.0.1:$PORT/metrics" -H "authorization: Bearer $ADMIN" > "$WORK/metrics.txt"
  python3 - "$WORK" "$V0" "$V1" "$CHAIN" <<'PY'
import json, os, sys
work, v0, v1, chain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def row(name):
    r = json.load(open(f"{work}/{name}.out"))
    s, p = r["summary"], r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    errors = r.get("errorDistribution", {})
    cut = sum(n for e, n in errors.items() if "deadline" in e.lower() or "abort" in e.lower())
    print(f"| {name} | {ok} | {s['requestsPerSec']:.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} | "
          f"{sum(n for c, n in codes.items() if not c.startswith('2'))} non-2xx, {sum(errors.values()) - cut} failed, {cut} cut off |")
    return ok, cut
print("| load | 2xx answers | requests/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|")
row("reads")
writes, cut = row("writes") if os.path.exists(f"{work}/writes.out") else (0, 0)
samples = [tuple(map(int, l.split())) for l in open(f"{work}/rss.log") if len(l.split()) == 2]
start = samples[0][0]
warm = [m for t, m in samples if t - start >= 60]
print()
print(f"resident memory (MiB), every 10 s: {' '.join(str(m) for _, m in samples)}")
if warm:
    print(f"after the first minute: {warm[0]} MiB, at the end: {warm[-1]} MiB, growth {100 * (warm[-1] - warm[0]) / warm[0]:.1f} %")
# A write cut off at the end may or may not have been applied; none answered 2xx may be missing.
grew = v1 - v0
verdict = ("every acknowledged write is in the log, and nothing else" if writes <= grew <= writes + cut
           else "MISMATCH")
print(f"writes answered 2xx: {writes}, cut off at the end: {cut}; the customer's stream grew by {grew} events "
      f"({verdict})")
print(f"chain after the soak: {chain}")
failed = [l for l in open(f"{work}/metrics.txt") if l.startswith("oacis_graphql_operations_total") and 'outcome="ok"' not in l]
print(f"operations that answered an error (from /metrics): {sum(int(float(l.split()[-1])) for l in failed)} {failed}")
PY
  exit 0
fi
echo "| intent | requests/s | p50 ms | p99 ms | errors (non-2xx, GraphQL, cut off at the end) | sample body ok |"
echo "|---|---|---|---|---|---|"
# W1 runs three times on the same customer: its stream grows by tens of thousands of events
# between the runs, and a write must not cost more on a longer stream.
for intent in R1 R2 R3 R4 R1P W1 W1 W1 W1M; do
  if [ "$intent" = W1 ]; then
    V=$(version)
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
