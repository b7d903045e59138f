#!/usr/bin/env bash
# The OpenAPI conformance run (clients/conformance/README.md): schemathesis with every check
# against the real server, which must find nothing. One command from the repository root:
#   clients/conformance/run.sh
# It builds a 2000 x 16 cosine index with the release binary ($VECTORWISE_BIN, else
# target/release/vectorwise, built if missing), serves it on a free port of 127.0.0.1, runs
# schemathesis (pinned in requirements.txt, in a fresh venv) on /openapi.json with a fixed seed,
# stops the server and prints "conformance check: passed" or "conformance check: failed ..." last.
# CONFORMANCE_SEED (1) and CONFORMANCE_EXAMPLES (500 per operation) change the run;
# CONFORMANCE_VENV names a venv to install into and reuse instead of a fresh one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seed=${CONFORMANCE_SEED:-1}
examples=${CONFORMANCE_EXAMPLES:-500}

bin=${VECTORWISE_BIN:-$root/target/release/vectorwise}
if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build --release --bin vectorwise)
fi

work=$(mktemp -d)
server=""
stop_server() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

venv=${CONFORMANCE_VENV:-$work/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

"$bin" generate --n 2000 --dim 16 --out "$work/v.npy" >/dev/null
"$bin" build --vectors "$work/v.npy" --out "$work/i.vwi" --metric cosine --threads 1 >/dev/null

# Port 0: the server binds a free port and logs it ("listening", JSON logs).
log="$work/serve.log"
"$bin" serve --index "$work/i.vwi" --data-dir "$work/data" --host 127.0.0.1 --port 0 --log-format json >"$log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
    port=$(grep -o '"address":"127\.0\.0\.1:[0-9]*"' "$log" | head -n 1 | grep -o '[0-9]*"$' | tr -d '"' || true)
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
url="http://127.0.0.1:${port:-0}"
ready=0
if [ -n "$port" ]; then
    for _ in $(seq 100); do
        if "$bin" health --url "$url" >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
fi
if [ "$ready" -ne 1 ]; then
    cat "$log" >&2
    echo "conformance check: failed (the server did not become healthy)"
    exit 1
fi

# Every check; positive and negative data; examples, coverage and fuzzing phases. No example
# database (a seed alone decides the run), and no `too_slow` health check: it times
# hypothesis's own data generation, which a loaded CI machine slows, and says nothing of the API.
# The working directory is the temporary one, where schemathesis keeps its caches.
#
# Two passes. The demo's routes with every check. The collection routes with every check but
# `positive_data_acceptance`: a vector's length is its collection's dimension, which one
# OpenAPI document cannot state per `{name}`, so a schema-valid vector of another length gets
# its documented 400/422; every other check (negative data refused, response schemas and
# status codes as documented, stateful sequences of create, upsert, search, delete) applies.
status=0
run_schemathesis() {
    (
        cd "$work"
        "$venv/bin/schemathesis" run "$url/openapi.json" \
            --seed "$seed" \
            --max-examples "$examples" \
            --generation-database none \
            --suppress-health-check too_slow \
            --workers 1 \
            --no-color \
            "$@"
    )
}
run_schemathesis --checks all --exclude-path-regex '^/collections' || status=$?
run_schemathesis --checks all --exclude-checks positive_data_acceptance --include-path-regex '^/collections' || status=$?
stop_server

if [ "$status" -eq 0 ]; then
    echo "conformance check: passed (schemathesis --checks all, seed $seed, $examples examples per operation; collection routes without positive_data_acceptance)"
else
    echo "conformance check: failed (schemathesis exit $status, seed $seed)"
fi
exit "$status"
