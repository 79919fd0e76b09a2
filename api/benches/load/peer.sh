#!/usr/bin/env bash
# OACIS side by side with PostGraphile in the GraphQL peer benchmark: builds the release
# binary, then runs the peer's run.sh with OACIS as its second server (started by
# peer-start.sh on the same generated data, with the same ids) and the queries of
# queries/oacis. Results go to RESULTS_DIR (default target/peer-results), not to the peer's
# folder. Every knob of the peer's run.sh passes through (N_CUSTOMERS, DURATION, ONLY, ...).
#
#   bash api/benches/load/peer.sh
#   PEER_DIR=/path/to/graphql-peer N_CUSTOMERS=1000000 bash api/benches/load/peer.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PEER_DIR="${PEER_DIR:-$ROOT/../shared/bench/graphql-peer}"
[ -f "$PEER_DIR/run.sh" ] || { echo "no peer benchmark at $PEER_DIR (set PEER_DIR)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -p oacis-api >&2)
# Above 200,000 customers the import takes longer than the driver waits for a server: build
# OACIS's store first, from the same generator with the same seed (byte-identical CSV), and
# let peer-start.sh find it by the CSV's hash.
N="${N_CUSTOMERS:-100000}"
if [ "$N" -gt 200000 ]; then
  [ -x "$PEER_DIR/.venv/bin/python" ] || { echo "run the peer's run.sh once first (it makes $PEER_DIR/.venv)" >&2; exit 1; }
  PREP="$(mktemp -d)"
  trap 'rm -rf "$PREP"' EXIT
  echo "peer.sh: generating $N customers and building OACIS's store (kept in target/peer-stores)" >&2
  "$PEER_DIR/.venv/bin/python" "$PEER_DIR/data/gen_data.py" "$PREP" "$N" "${N_INTERACTIONS:-$N}" >&2
  bash "$HERE/peer-start.sh" build "$PREP"
fi
export RESULTS_DIR="${RESULTS_DIR:-$ROOT/target/peer-results}"
mkdir -p "$RESULTS_DIR"
GRAPHQL_NAME=oacis GRAPHQL_QUERIES="$HERE/queries/oacis" GRAPHQL_START="$HERE/peer-start.sh" \
  bash "$PEER_DIR/run.sh"
