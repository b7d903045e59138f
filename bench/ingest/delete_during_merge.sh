#!/bin/bash
# How long a DELETE of a collection takes while its optimiser merges (the build is cancelled).
#
#   bench/ingest/delete_during_merge.sh BIN PORT COLLECTION_DIR INDEX
#
# As pile_time.sh: the collection folder a bulk load left is copied and served; once the
# optimiser is in its second merge (the pile, after the first 160k one) and 3 s into it, the
# collection is deleted and the DELETE's round trip printed. Alternate two binaries.
set -euo pipefail
BIN=$1; PORT=$2; SRC=$3; INDEX=$4; R=$(mktemp -d)
mkdir -p "$R/data"; cp -r "$SRC" "$R/data/forms"
VECTORWISE_CACHE_BYTES=0 "$BIN" serve --data-dir "$R/data" --index "$INDEX" --port "$PORT" > "$R/log.txt" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/collections" > /dev/null && break; sleep 0.2; done
for _ in $(seq 1 600); do
  s=$(curl -s "localhost:$PORT/collections/forms" | python3 -c 'import sys,json; o=json.load(sys.stdin)["optimiser"]; print(o["state"], o["merges"])' 2>/dev/null || true)
  case "$s" in merging\ [1-9]*) break;; esac
  sleep 0.2
done
sleep 3
A=$(date +%s.%N); code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "localhost:$PORT/collections/forms"); B=$(date +%s.%N)
echo "$BIN: DELETE $code in $(python3 -c "print(round($B-$A,3))") s"
kill -TERM $PID; wait $PID 2>/dev/null || true; rm -rf "$R"
