#!/usr/bin/env bash
# The OpenAPI conformance run (clients/conformance/README.md): schemathesis with every check
# against the real server, which must find nothing. One command from the repository root:
#   clients/conformance/run.sh
# It builds a 2000 x 16 cosine index with the release binary ($VECTORWISE_BIN, else
# target/release/vectorwise, built if missing), serves it on a free port of 127.0.0.1 (open, then
# with an API key), runs schemathesis (pinned in requirements.txt, in a fresh venv) on
# /openapi.json with a fixed seed, stops the server and prints "conformance check: passed" or
# "conformance check: failed ..." last.
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

dim=16
"$bin" generate --n 2000 --dim "$dim" --out "$work/v.npy" >/dev/null
"$bin" build --vectors "$work/v.npy" --out "$work/i.vwi" --metric cosine --threads 1 >/dev/null

# Port 0: the server binds a free port and logs it ("listening", JSON logs). start_server NAME
# [ENV=VALUE...] starts one in $work/NAME (its log: $work/NAME.log) and sets $url once healthy.
start_server() {
    local name=$1
    shift
    local log="$work/$name.log"
    env "$@" "$bin" serve --index "$work/i.vwi" --data-dir "$work/$name" --host 127.0.0.1 --port 0 --log-format json >"$log" 2>&1 &
    server=$!
    local port=""
    for _ in $(seq 100); do
        port=$(grep -o '"address":"127\.0\.0\.1:[0-9]*"' "$log" | head -n 1 | grep -o '[0-9]*"$' | tr -d '"' || true)
        [ -n "$port" ] && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    url="http://127.0.0.1:${port:-0}"
    if [ -n "$port" ]; then
        for _ in $(seq 100); do
            # `/` is open with or without keys.
            if "$bin" health --url "$url" >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.1
        done
    fi
    cat "$log" >&2
    echo "conformance check: failed (the $name server did not become healthy)"
    exit 1
}
start_server data

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
#
# Then the same two passes against a server with an API key (CONFORMANCE_KEYED_EXAMPLES, 100
# per operation), schemathesis sending it: the document then declares the key on every
# operation but `/`, and `ignored_auth` checks that each refuses a request without it or with
# a wrong one (401), beside every other check.
#
# The demo passes load hooks.py: a case generated as valid with a binary search body gets the
# query fields its description asks for (see hooks.py). The collection passes run without it:
# they skip positive_data_acceptance, the one check it matters to (and with the hook loaded the
# open collection pass ran for over 15 minutes, against under 3 without it).
status=0
run_schemathesis() {
    local hooks=$1 n=$2
    shift 2
    (
        cd "$work"
        if [ "$hooks" = hooks ]; then
            export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" CONFORMANCE_DIM="$dim"
        fi
        "$venv/bin/schemathesis" run "$url/openapi.json" \
            --seed "$seed" \
            --max-examples "$n" \
            --generation-database none \
            --suppress-health-check too_slow \
            --workers 1 \
            --no-color \
            "$@"
    )
}
run_schemathesis hooks "$examples" --checks all --exclude-path-regex '^/collections' || status=$?
run_schemathesis no-hooks "$examples" --checks all --exclude-checks positive_data_acceptance --include-path-regex '^/collections' || status=$?
stop_server
# Its collections, snapshots and jobs are not needed again: the disk they take goes back before
# the keyed server writes its own (a CI machine once ran out of room here).
rm -rf "$work/data"

key="conformance-admin-key-$seed-0123456789"
keyed_examples=${CONFORMANCE_KEYED_EXAMPLES:-100}
start_server keyed "VECTORWISE_API_KEY=$key"
auth=(-H "Authorization: Bearer $key")
run_schemathesis hooks "$keyed_examples" "${auth[@]}" --checks all --exclude-path-regex '^/collections' || status=$?
run_schemathesis no-hooks "$keyed_examples" "${auth[@]}" --checks all --exclude-checks positive_data_acceptance --include-path-regex '^/collections' || status=$?
stop_server

if [ "$status" -eq 0 ]; then
    echo "conformance check: passed (schemathesis --checks all, seed $seed, $examples examples per operation; collection routes without positive_data_acceptance; again with an API key, $keyed_examples examples, ignored_auth included)"
else
    echo "conformance check: failed (schemathesis exit $status, seed $seed)"
fi
exit "$status"
