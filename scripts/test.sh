#!/usr/bin/env bash
# Builds and runs pipc's whole test suite: the dev preset (with the package test and
# the examples), then the same suite under ASan+UBSan and under TSan, then a short run
# of each libFuzzer target built with clang (docs/fuzzing.md).
# Usage: scripts/test.sh [preset...]   (default: dev asan tsan fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(dev asan tsan fuzz)
extra=()
for p in "${presets[@]}"; do
  # libFuzzer: clang, and its runtime (libclang_rt.fuzzer), which clang only recommends.
  [ "$p" != fuzz ] || extra+=(clang libclang-rt-14-dev)
done
scripts/deps.sh "${extra[@]}"
for p in "${presets[@]}"; do
  echo "=== pipc: ${p} preset ==="
  cmake --workflow --preset "$p"
done
