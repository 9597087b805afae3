#!/usr/bin/env bash
# The test command of README.md (and of CI): sets up what the tests need on a fresh
# Debian 12 machine, builds once, runs every test. Idempotent; safe to re-run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

echo "== toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (one build, every test of the workspace)"
cargo test --workspace --all-targets --locked
