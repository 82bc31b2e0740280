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
# Lints on every target (a check build; the test build below reuses its dependency metadata).
cargo clippy --workspace --all-targets --locked -- -D warnings
# Unit and integration tests (doc tests: none are written; benches run apart, see README).
log=$(mktemp)
set +e
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
