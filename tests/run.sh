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
cargo test --locked --all-targets --no-fail-fast
bash packaging/test.sh
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"
