#!/usr/bin/env bash
# Builds pipc's demo (release build, no tests) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release -B build/demo -DPIPC_TESTS=OFF -DPIPC_BENCH=OFF -DPIPC_INSTALL=OFF >/dev/null
cmake --build build/demo --target pipc-demo >/dev/null
exec build/demo/examples/pipc-demo "$@"
