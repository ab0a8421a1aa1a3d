#!/usr/bin/env bash
# The whole comparison in one command: installs what is missing (Boost headers,
# Google Benchmark, gnuplot), builds the release preset with the benchmarks, runs
# pipc-bench (cross-process) and pipc-micro (in-process), draws the plot, and says
# which machine it all ran on. About 5–10 minutes on 2 cores, most of it ping-pong.
#
# Usage: bench/run.sh [pipc-bench options]     e.g. bench/run.sh --quick, --pin
# Writes bench/results/: bench.md (the tables), bench.csv (every figure), bench.png
# (the plot), micro.txt and micro.csv (Google Benchmark). bench/README.md explains.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)

scripts/deps.sh libboost-dev libbenchmark-dev gnuplot-nox

cmake --preset release -DPIPC_BENCH=ON >/dev/null
cmake --build --preset release --target pipc-bench pipc-micro
bin=build/release/bench

out=bench/results
mkdir -p "$out"

echo
echo "== machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
  "Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "run.sh: warning: the machine is busy (load average $load on $(nproc) CPUs);" \
    "other work skews every figure and lengthens the run" >&2
fi
echo

echo "== pipc-bench (progress on stderr; tables in $out/bench.md)"
"$bin/pipc-bench" --csv "$out/bench.csv" --md "$out/bench.md" "$@"

echo
echo "== pipc-micro (in-process; $out/micro.txt)"
"$bin/pipc-micro" --benchmark_min_time=0.05 --benchmark_out="$out/micro.csv" --benchmark_out_format=csv |
  tee "$out/micro.txt"

echo
echo "== plot"
bench/plot.sh "$out/bench.csv" "$out/bench.png"

echo
echo "== done in $(($(date +%s) - started)) s on $(nproc) CPUs" \
  "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r))"
