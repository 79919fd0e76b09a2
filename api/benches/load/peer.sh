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
export RESULTS_DIR="${RESULTS_DIR:-$ROOT/target/peer-results}"
mkdir -p "$RESULTS_DIR"
GRAPHQL_NAME=oacis GRAPHQL_QUERIES="$HERE/queries/oacis" GRAPHQL_START="$HERE/peer-start.sh" \
  bash "$PEER_DIR/run.sh"
