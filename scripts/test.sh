#!/usr/bin/env bash
# Runs every test of the project: unit, property, integration (crash loop,
# model test, fault injection), doc tests (including the README's example)
# and the fuzz corpora. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --workspace --all-features --locked
