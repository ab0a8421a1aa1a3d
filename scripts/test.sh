#!/usr/bin/env bash
# Builds and runs pipc's whole test suite: the dev preset (with the package test and
# the examples), then the same suite under ASan+UBSan and under TSan.
# Usage: scripts/test.sh [preset...]   (default: dev asan tsan)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(dev asan tsan)
for p in "${presets[@]}"; do
  echo "=== pipc: ${p} preset ==="
  cmake --workflow --preset "$p"
done
