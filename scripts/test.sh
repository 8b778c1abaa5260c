#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# of the workspace (unit, integration against real servers, grpcurl, buf).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
bash scripts/setup.sh
cargo fmt --all -- --check
cargo test --workspace --all-targets
cargo clippy --workspace --all-targets -- -D warnings
