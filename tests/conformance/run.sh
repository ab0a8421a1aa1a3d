#!/usr/bin/env bash
# Runs the pmsg scenario (tests/conformance/pmsg.c) once on the kernel's queues and once
# on each other variant given, and fails unless every transcript equals the kernel's.
# Usage: run.sh KERNEL_PMSG [LABEL=COMMAND...]
#   e.g. run.sh ./pmsg_kernel compat=./pmsg_compat "preload=env LD_PRELOAD=/x/libpipc-preload.so ./pmsg_kernel"
# The transcripts are kept in $PWD/pmsg-<label>.txt.
set -uo pipefail

kernel=$1
shift

# One scenario run: $1 label, $2.. the command that runs pmsg.
scenario() {
  local label=$1
  shift
  local pmsg=("$@")
  local q="/pipc_conformance_$$_${label}"
  local bg="pmsg-${label}.notify"
  run() { "${pmsg[@]}" "$@" 2>&1 | sed "s#${q}#/Q#g"; }
  # Waits until file $1 has $2 lines (at most 10 s).
  wait_lines() {
    local i
    for ((i = 0; i < 1000; ++i)); do
      [ "$(wc -l < "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
      sleep 0.01
    done
    echo "timed out waiting for $2 lines in $1"
  }
  notify_case() {  # $1 command, then the sends happen one per notification
    : > "$bg"
    "${pmsg[@]}" "$1" "$q" 2 > "$bg" 2>&1 &
    local pid=$!
    wait_lines "$bg" 1
    run send "$q" first 1
    local per=1  # lines per notification
    [ "$1" != notify-sigwaitinfo ] || per=2
    wait_lines "$bg" $((1 + per))
    run send "$q" second 2
    wait "$pid"
    sed "s#${q}#/Q#g" "$bg"
  }

  "${pmsg[@]}" unlink "$q" > /dev/null 2>&1
  echo "== create, attributes"
  run create -x -m 10 -s 64 "$q"
  run create -x -m 10 -s 64 "$q"
  run create -m 10 -s 64 "$q"
  run getattr "$q"
  echo "== priority order, FIFO within a priority"
  run send "$q" msg-a 5
  run send "$q" msg-b 0
  run send "$q" msg-c 5
  run send "$q" msg-d 9
  run send "$q" msg-e 32767
  run getattr "$q"
  for i in 1 2 3 4 5; do run receive "$q"; done
  echo "== empty: non-blocking and timed"
  run receive -n "$q"
  run receive -t 200 "$q"
  echo "== full: non-blocking"
  for i in 1 2 3 4 5 6 7 8 9 10; do run send -n "$q" "m$i" 1; done
  run send -n "$q" overflow 1
  run getattr "$q"
  for i in 1 2 3 4 5 6 7 8 9 10; do run receive -n "$q"; done
  echo "== errors"
  run send "$q" "$(printf 'x%.0s' $(seq 65))" 0
  run send "$q" bad-priority 32768
  run create -x -m 0 -s 64 "${q}_zero"
  run create -x -m 10 -s 0 "${q}_zero"
  run receive -n "${q}_missing"
  run unlink "${q}_missing"
  run create -x noslash
  run create -x "/a/b"
  echo "== O_NONBLOCK per descriptor"
  run setattr "$q" on
  run setattr "$q" off
  echo "== poll"
  run poll "$q" 100
  run send "$q" pollme 3
  run poll "$q" 1000
  run receive "$q"
  echo "== notification by signal"
  notify_case notify-signal
  echo "== notification by sigwaitinfo"
  notify_case notify-sigwaitinfo
  echo "== notification by thread"
  notify_case notify-thread
  echo "== unlink"
  run unlink "$q"
  run unlink "$q"
  run getattr "$q"
  rm -f "$bg"
}

scenario kernel "$kernel" > pmsg-kernel.txt
status=0
for variant in "$@"; do
  label=${variant%%=*}
  command=${variant#*=}
  # shellcheck disable=SC2086 # the command is words on purpose (env VAR=... prog)
  scenario "$label" $command > "pmsg-${label}.txt"
  if diff -u pmsg-kernel.txt "pmsg-${label}.txt"; then
    echo "pmsg scenario: ${label} matches the kernel ($(grep -c . "pmsg-${label}.txt") lines)"
  else
    echo "pmsg scenario: ${label} differs from the kernel (above)"
    status=1
  fi
done
exit $status
