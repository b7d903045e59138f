#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz, libFuzzer) one after another:
#
#   fuzz/run.sh [SECONDS | -runs=N] [TARGET...]
#
# SECONDS (default 600) per target, or N inputs per target. Needs the nightly
# toolchain (rustup); installs cargo-fuzz when missing. Each target's corpus
# is fuzz/corpus/TARGET (the committed seeds are its seed-* files; what a run
# adds there is ignored by git); a failing input is saved under
# fuzz/artifacts/TARGET/. Prints one line per target and a closing
# "fuzz: N passed, M failed"; exits non-zero when a target failed.
#
# Environment: CARGO_TARGET_DIR as for cargo (default fuzz/target);
# FUZZ_JOBS=J runs J libFuzzer processes per target (-fork=J).
set -euo pipefail
cd "$(dirname "$0")"

budget="${1:-600}"
shift || true
case "$budget" in
    -runs=[0-9]*) limit=("$budget") ;;
    [0-9]*) limit=("-max_total_time=$budget") ;;
    *) echo "usage: fuzz/run.sh [SECONDS | -runs=N] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(index_file npy request_body)

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

start=$SECONDS
cargo +nightly fuzz build
echo "fuzz: built in $((SECONDS - start)) s"

# Per-process temporary files of the targets (see src/lib.rs), removed at exit.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vectorwise-fuzz.XXXXXX")
[ -d /dev/shm ] && scratch=$(mktemp -d /dev/shm/vectorwise-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export VECTORWISE_FUZZ_SCRATCH="$scratch"

passed=0 failed=0
for t in "${targets[@]}"; do
    # A hang is a failure too (-timeout, seconds per input).
    opts=(-timeout=30 "${limit[@]}")
    case "$t" in
        # The server keeps caches (metrics series, pools) across inputs, so
        # libFuzzer's leak check would run after most inputs at a third of
        # the speed; request handling is safe Rust that cannot leak by itself.
        request_body) opts+=("-dict=$PWD/dict/request_body.dict" -detect_leaks=0) ;;
    esac
    [ -n "${FUZZ_JOBS:-}" ] && opts+=("-fork=$FUZZ_JOBS")
    mkdir -p "corpus/$t"
    log="$scratch/$t.log"
    t0=$SECONDS
    status=0
    cargo +nightly fuzz run "$t" "$PWD/corpus/$t" -- "${opts[@]}" >"$log" 2>&1 || status=$?
    runs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -n 1 | grep -oE '[0-9]+' || true)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz $t: ok, ${runs:-?} runs in $((SECONDS - t0)) s, corpus $(ls "corpus/$t" | wc -l) files"
    else
        failed=$((failed + 1))
        # libFuzzer's report: the panic or sanitizer error and the saved input.
        grep -A1 -E "panicked|ERROR: |SUMMARY: |Test unit written to|timeout" "$log" | grep -v "^--" | head -n 20 || true
        echo "fuzz $t: FAILED (exit $status) after ${runs:-?} runs in $((SECONDS - t0)) s; full log kept in fuzz/artifacts/$t/last-failure.log"
        mkdir -p "artifacts/$t" && cp "$log" "artifacts/$t/last-failure.log"
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
