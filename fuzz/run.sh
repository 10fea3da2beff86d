#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, from the
# committed seed corpus (fuzz/corpus/TARGET) plus what earlier runs on this
# machine found (fuzz/target/corpus/TARGET, not committed).
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60, all)
#
# cargo fuzz needs nightly-only flags (-Zsanitizer=address and friends);
# the stable toolchain accepts them with RUSTC_BOOTSTRAP=1, which is how
# this runs: the same compiler as the rest of the build, with AddressSanitizer
# and debug assertions (so the standard library's unsafe-precondition checks
# are on too). Installs cargo-fuzz from crates.io when it is missing.
#
# Exits 1 when a target fails: the input is in fuzz/artifacts/TARGET/, and
# the lines printed say how to reproduce it. Make it a regression test in
# the normal test suite (tests/fuzz_regressions.rs) before fixing.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(decide wire_messages rules_load rules_fast_path)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz@0.13.2
fi

# Per-target libFuzzer options: inputs no longer than the queue could hand
# over (decide: the 256-byte copy range, with room to spare), a permit file
# of a few KiB; a dictionary of the permit file's words.
declare -A opts=(
    [decide]="-max_len=512"
    [wire_messages]="-max_len=4096"
    [rules_load]="-max_len=8192 -dict=rules.dict"
    [rules_fast_path]="-max_len=8192 -dict=rules.dict"
)

start=$SECONDS
mkdir -p target
for t in "${targets[@]}"; do
    if ! cargo fuzz build --release --debug-assertions "$t" >target/fuzz-build.log 2>&1; then
        tail -n 40 target/fuzz-build.log
        echo "fuzz: building $t failed" >&2
        exit 1
    fi
done
echo "fuzz: built in $((SECONDS - start)) s"

failed=()
for t in "${targets[@]}"; do
    work=target/corpus/$t
    mkdir -p "$work" "artifacts/$t"
    log=target/fuzz-$t.log
    echo "== $t: ${seconds} s"
    # -timeout: one input taking longer than 10 s is a finding too.
    # shellcheck disable=SC2086
    if cargo fuzz run --release --debug-assertions "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${opts[$t]} >"$log" 2>&1; then
        runs=$(grep -o '^Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1)
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
        echo "   ok: ${runs:-?}s; ${execs:-?} executions; $cov; corpus $(ls "$work" | wc -l) found + $(ls "corpus/$t" | wc -l) seeds"
    else
        failed+=("$t")
        grep -E -A 30 '^==[0-9]+==|panicked at|^SUMMARY' "$log" | head -n 60 || tail -n 60 "$log"
        echo "   FAILED: see fuzz/$log; the input is in fuzz/artifacts/$t/"
        echo "   reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --release --debug-assertions $t fuzz/artifacts/$t/<file>"
    fi
done
echo "fuzz: done in $((SECONDS - start)) s"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
