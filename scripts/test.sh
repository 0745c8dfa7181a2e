#!/usr/bin/env bash
# The project's one test command: formatting, lints, then every test of the workspace.
# Needs what scripts/setup.sh installs (tshark); run that first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo doc (no broken links or markup in the API documentation)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== build the node binaries the cross-process tests start"
cargo build --workspace --bins

echo "== build the lab image the compose test brings up (static binaries, FROM scratch)"
# Built here, not inside the test, so the test's time is the lab's, not the compiler's.
bash scripts/build-images.sh

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
