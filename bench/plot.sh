#!/usr/bin/env bash
# Draws pipc-bench's results as one PNG with gnuplot: ping-pong p50 round trip,
# streaming throughput and 2×2 contention throughput, per transport and message size,
# log scales, bars at the median of the repetitions, whiskers from min to max.
#
# Usage: bench/plot.sh [results.csv] [output.png]
#   defaults: bench/results/bench.csv -> bench/results/bench.png
# The title names the machine from the Markdown report beside the CSV (same name,
# .md), or this machine if there is none. Needs gnuplot (Debian: gnuplot-nox).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
csv=${1:-$here/results/bench.csv}
png=${2:-${csv%.csv}.png}

if ! command -v gnuplot >/dev/null; then
  echo "plot.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2
  exit 1
fi
if [ ! -s "$csv" ]; then
  echo "plot.sh: no results in $csv (run bench/run.sh or pipc-bench --csv $csv)" >&2
  exit 1
fi

machine=""
if [ -f "${csv%.csv}.md" ]; then
  machine=$(sed -n 's/^Machine: \(.*\)\.  *$/\1/p' "${csv%.csv}.md" | head -n 1)
fi
if [ -z "$machine" ]; then
  machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sizes=$(awk -F, 'NR > 1 && $4 > 0 && ($1 == "latency" || $1 == "stream" || $1 == "contention") { print $4 }' "$csv" | sort -nu | tr '\n' ' ')

# pivot MEASUREMENT METRIC SCALE OUT: one line per transport (in the CSV's order):
# "name" then median min max for every size ("?" where there is no value).
pivot() {
  awk -F, -v m="$1" -v k="$2" -v scale="$3" -v sizes="$sizes" '
    NR > 1 && $1 == m && $5 == k {
      if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
      v[$2, $4] = ($7 * scale) " " ($8 * scale) " " ($9 * scale)
    }
    END {
      ns = split(sizes, S, " ")
      for (i = 1; i <= n; i++) {
        line = "\"" order[i] "\""
        for (j = 1; j <= ns; j++) {
          x = v[order[i], S[j]]
          line = line " " (x == "" ? "? ? ?" : x)
        }
        print line
      }
    }' "$csv" >"$4"
}

pivot latency rtt_p50_ns 0.001 "$tmp/latency.dat"
pivot stream msgs_per_s 0.000001 "$tmp/stream.dat"
pivot contention msgs_per_s 0.000001 "$tmp/contention.dat"

label() {
  if [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB"; else echo "$1 B"; fi
}

# plot_cmd FILE: one bar series per size, columns 2.. in threes.
plot_cmd() {
  local file=$1 col=2 first=1 cmd="plot "
  for s in $sizes; do
    if [ $first -eq 1 ]; then
      cmd+="'$file' using $col:$((col + 1)):$((col + 2)):xtic(1) title '$(label "$s")'"
      first=0
    else
      cmd+=", '' using $col:$((col + 1)):$((col + 2)) title '$(label "$s")'"
    fi
    col=$((col + 3))
  done
  echo "$cmd"
}

reps=$(awk -F, 'NR == 2 { print $10 }' "$csv")
probe=$(awk -F, '$2 == "cache-line-probe" { printf "%s%s: %s", sep, $1, $7; sep = ", " }' "$csv")
[ -n "$probe" ] && probe="; machine-state probe (cache-line round trip, ns, median) $probe"
panels=0
for f in latency stream contention; do [ -s "$tmp/$f.dat" ] && panels=$((panels + 1)); done

{
  cat <<EOF
set terminal pngcairo size 1500,$((480 * panels + 80)) font "DejaVu Sans,11"
set output '$png'
set encoding utf8
set termoption noenhanced
set multiplot layout $panels,1 title "pipc-bench — $machine\nbars: median of $reps repetitions, whiskers: min–max$probe" font ",13"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set format y "%g"
set grid ytics mytics lc rgb "#d0d0d0"
set xtics nomirror rotate by -20 noenhanced
set key tmargin center horizontal
set datafile missing "?"
set bmargin 5
EOF
  if [ -s "$tmp/latency.dat" ]; then
    echo "set title 'Ping-pong round trip, p50 (µs, lower is better)'"
    echo "set ylabel 'round trip, µs'"
    plot_cmd "$tmp/latency.dat"
  fi
  if [ -s "$tmp/stream.dat" ]; then
    echo "set title 'One-way streaming, 1 sender → 1 receiver (million messages/s, higher is better)'"
    echo "set ylabel 'M messages/s'"
    plot_cmd "$tmp/stream.dat"
  fi
  if [ -s "$tmp/contention.dat" ]; then
    echo "set title 'Contention, 2 producers + 2 consumers on one channel (million messages/s, higher is better)'"
    echo "set ylabel 'M messages/s'"
    plot_cmd "$tmp/contention.dat"
  fi
  echo "unset multiplot"
} >"$tmp/plot.gp"

gnuplot "$tmp/plot.gp"
echo "plot.sh: wrote $png"
