#!/usr/bin/env bash
# The whole test suite, as root on a Debian machine: installs what it needs,
# builds, and runs unit, property and netns integration tests.
#   sudo bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo test --locked
