#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs and starts what the tests need
# (Docker engine, bubblewrap, the base image), then format, lints and every test in one pass.
# Docker-backed tests fail rather than skip here (AUTOAGENT_REQUIRE_DOCKER=1).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-machine.sh

for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done

export AUTOAGENT_REQUIRE_DOCKER=1
# Snapshots are checked, never rewritten, in a test run.
export INSTA_UPDATE=no
cargo fmt --all -- --check
# One build of the test profile serves clippy and the tests.
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
