#!/usr/bin/env bash
# Sandbox helper: run a node's `systemd-nspawn --boot ...` (the arguments) and start it again
# whenever the node reboots, as a machine's firmware would: nspawn exits with status 133 when
# the container reboots. A SIGTERM powers the node off (nspawn's own SIGTERM handling) and
# ends this loop; any other exit of nspawn ends it with nspawn's status.
set -u
child=
power_off() {
  [ -z "$child" ] || kill -TERM "$child" 2>/dev/null
  [ -z "$child" ] || wait "$child"
  exit 0
}
trap power_off TERM INT
while :; do
  "$@" &
  child=$!
  wait "$child"
  status=$?
  [ "$status" -eq 133 ] || exit "$status"
  echo "keep-booted: the node rebooted; starting it again" >&2
done
