#!/usr/bin/env bash
# Filtered search, VectorWise and its peers side by side (README.md here):
#   bash bench/filter/run.sh --n 200000                 # every peer (default n 200000)
#   bash bench/filter/run.sh --n 1000000 --engines vectorwise,faiss-ivf,faiss-hnsw --nq 300 --passes 2
#   bash bench/filter/run.sh --smoke                    # 5000 points, VectorWise + Faiss HNSW
#   bash bench/filter/run.sh --filter-selectivity 1,0.01,range5
# Makes one venv per engine under bench/filter/.venvs/ (requirements/<engine>.txt), builds the
# release binary (or uses $VECTORWISE_BIN), then runs harness.py; results go to
# bench/results/filter-<date>-<n>.{md,json}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
engines="vectorwise,qdrant-edge,faiss-hnsw,faiss-ivf,hnswlib,lancedb,milvus-lite,chromadb"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
    --engines) engines="${args[$((i + 1))]}" ;;
    --engines=*) engines="${args[$i]#--engines=}" ;;
    --smoke) smoke=1 ;;
    esac
done
if [ -n "${smoke:-}" ] && [ "$engines" = "vectorwise,qdrant-edge,faiss-hnsw,faiss-ivf,hnswlib,lancedb,milvus-lite,chromadb" ]; then
    engines="vectorwise,faiss-hnsw"
fi
venvs="core"
for e in ${engines//,/ }; do
    case $e in
    vectorwise) ;;
    faiss-hnsw | faiss-ivf) venvs="$venvs faiss" ;;
    *) venvs="$venvs $e" ;;
    esac
done
# A peer whose install fails is reported by the harness (with pip's error) and skipped.
# shellcheck disable=SC2086
"$here/venvs.sh" $(echo $venvs | tr ' ' '\n' | sort -u) || true
if [ -n "${VECTORWISE_BIN:-}" ]; then
    bin=$VECTORWISE_BIN
else
    (cd "$root" && cargo build --release --quiet --bin vectorwise)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/vectorwise"
fi
exec "$here/.venvs/core/bin/python" "$here/harness.py" --vw-bin "$bin" "$@"
