#!/bin/bash
# The merges a collection's optimiser runs after a bulk load, timed from the server's log.
#
#   bench/ingest/pile_time.sh BIN PORT COLLECTION_DIR INDEX
#
# COLLECTION_DIR: a collection folder as the last write of a bulk load left it (run
# bench/ingest/server_ingest.py --exit-after-writes, SIGKILL the server, copy
# DATA_DIR/<name>); it is copied, never changed. INDEX: any small index file for the demo
# routes (`vectorwise build`). Prints the time from the start until the optimiser is idle with
# at most 5 segments, and each merge's points and build seconds. Alternate two binaries.
set -euo pipefail
BIN=$1; PORT=$2; SRC=$3; INDEX=$4; R=$(mktemp -d)
mkdir -p "$R/data"; cp -r "$SRC" "$R/data/forms"
VECTORWISE_CACHE_BYTES=0 "$BIN" serve --data-dir "$R/data" --index "$INDEX" --port "$PORT" > "$R/log.txt" 2>&1 &
PID=$!
T0=$(date +%s.%N)
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/collections" > /dev/null && break; sleep 0.2; done
s=""
for _ in $(seq 1 1200); do
  s=$(curl -s "localhost:$PORT/collections/forms" | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["optimiser"]["state"], len(d["segments"]))' 2>/dev/null || true)
  case "$s" in idle\ [1-5]) break;; esac
  sleep 0.1
done
T1=$(date +%s.%N)
echo "$BIN: idle after $(python3 -c "print(round($T1-$T0,1))") s ($s segments)"
grep "sealed segment built" "$R/log.txt" | grep -Ev "points=([1-4]0000|30000) " | sed -E 's/.*points=([0-9]+).*seconds=([0-9.]+).*/  merge of \1 points: \2 s/' || true
kill -TERM $PID; wait $PID 2>/dev/null || true; rm -rf "$R"
