#!/usr/bin/env bash
# The benchmark command (issue 2, "Speed"): generates the fleet in a local docker-registry and a
# GitOps repository, runs `argocd-image-pr plan` from a cold start, and prints wall time, peak
# memory and registry requests against the targets.
#
#   scripts/bench.sh [--scale full|fifth|both] [--runs N] [--generate-only] [--serve] [--reseed]
#
# The registry's storage persists in /var/tmp/argocd-image-pr-bench/registry (seeding the
# 135,000 tags takes a few minutes once); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/install.sh
ensure_debian_packages /usr/bin/docker-registry:docker-registry git:git

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/argocd-image-pr-target}"
# The example measures the release binary next to it; `cargo run --example` does not build it.
cargo build --locked --release --bin argocd-image-pr
cargo run --locked --release --example bench -- "$@"
