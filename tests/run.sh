#!/usr/bin/env bash
# The whole test suite, as root on a Debian machine: installs what it needs,
# builds, and runs unit, property and netns integration tests, then the
# Debian package's tests (packaging/test.sh).
#   sudo bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo test --locked
bash packaging/test.sh
