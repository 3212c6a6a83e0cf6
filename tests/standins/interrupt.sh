#!/usr/bin/env bash
# Sourced by stand-ins, for tests only: `interrupt_once NAME` cuts a run off at a call when the
# test left $STANDIN_STATE/interrupt.NAME: holding "kill", the script that made the call is
# killed (SIGKILL, as a lost connection or a power cut would end it); holding anything else,
# the call fails. Either happens once: the file is gone afterwards.
interrupt_once() {
  local flag="${STANDIN_STATE:?}/interrupt.$1" how
  [ -e "$flag" ] || return 0
  how=$(cat "$flag")
  rm -f "$flag"
  echo "stand-in: interrupted at $1 (${how})" >&2
  if [ "$how" = kill ]; then kill -KILL "$PPID"; fi
  exit 1
}
