#!/usr/bin/env bash
# Recall of a profile on queries unlike the indexed data, per kind of index
# (crates/index/examples/ood_recall.rs): base rows with a little noise (like
# the data), rows drowned in noise, random vectors. Builds with the current
# tree's `vectorwise`, keeps the data under bench/data/ood/, and writes the
# report to bench/results/ood-<commit>.txt (or $OUT).
#
#   bench/ood/run.sh            # 20k, 200k clustered and 100k sphere: minutes
#   bench/ood/run.sh --with-1m  # and 1M clustered (its build and exact truth: ~10 more minutes)
#   PROFILE=high_accuracy bench/ood/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=$root/bench/data/ood
profile=${PROFILE:-balanced}
mkdir -p "$data"
cd "$root"
cargo build --release --quiet -p vectorwise
cargo build --release --quiet -p vectorwise-index --example ood_recall
vw=$root/target/release/vectorwise
probe=$root/target/release/examples/ood_recall
out=${OUT:-$root/bench/results/ood-$(git rev-parse --short HEAD).txt}

# name kind n [build options...]
index() {
    local name=$1 kind=$2 n=$3
    shift 3
    [ -f "$data/$kind-$n.npy" ] || "$vw" generate --kind "$kind" --n "$n" --clusters 1000 --out "$data/$kind-$n.npy" >/dev/null
    [ -f "$data/$name.vwi" ] || "$vw" build --vectors "$data/$kind-$n.npy" --out "$data/$name.vwi" "$@" >/dev/null
    echo "## $name: vectorwise generate --kind $kind --n $n --clusters 1000; vectorwise build $*"
    "$probe" "$data/$name.vwi" - "$profile"
    echo
}

{
    echo "# ood_recall, engine $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    index clustered-20k-auto clustered 20000
    index clustered-20k-scan clustered 20000 --method scan --scan-lists 0
    index clustered-200k-auto clustered 200000
    index sphere-100k-cosine sphere 100000 --metric cosine
    if [ "${1:-}" = --with-1m ]; then
        index clustered-1m-auto clustered 1000000
    fi
} | tee "$out"
