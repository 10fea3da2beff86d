#!/usr/bin/env bash
# The whole test suite, as root on a Debian machine: installs what it needs,
# builds, and runs unit, property and netns integration tests (benchmarks
# compile and run once in test mode), the Debian package's tests
# (packaging/test.sh), and each fuzz target for a bounded time
# (fuzz/run.sh; FUZZ_SECONDS per target, 30 by default).
#   sudo bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
counts() {
    awk '/^test result:/ { p += $4; f += $6; i += $8 }
         END { printf "%d passed, %d failed, %d ignored", p, f, i }' "$log"
}
if ! cargo test --locked --all-targets --no-fail-fast 2>&1 | tee "$log"; then
    echo "tests/run.sh: FAILED in cargo test ($(counts))"
    exit 1
fi
bash packaging/test.sh
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"
echo "tests/run.sh: all passed (cargo test: $(counts); packaging and fuzz above)"
