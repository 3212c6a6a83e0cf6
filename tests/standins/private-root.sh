#!/usr/bin/env bash
# Test helper: run a command as root in a private mount namespace where /etc, /usr/local/bin,
# /var/lib and /usr/share/keyrings are overlays whose changes land in WORKDIR/upper, so a node
# script can write where it would on a node while this host stays untouched. Unmounted when the
# command ends.
#
#   private-root.sh WORKDIR COMMAND [ARGS...]
#
# With PRIVATE_ROOT_FULL_ETC=SIZE (e.g. 1m), /etc's changes go to a tmpfs of SIZE instead,
# which starts with what WORKDIR/upper/_etc holds and is then filled up: every write to /etc
# finds the disk full. When the command ends, what the tmpfs holds is copied back to
# WORKDIR/upper/_etc. The tmpfs lives in the private namespace only, so it is gone with it,
# however the command ends.
#
# With PRIVATE_ROOT_SYSTEMD=1, /run is overlaid too and holds /run/systemd/system, which is how
# a script tells that systemd runs the machine.
set -euo pipefail
work=$1
shift
if [ "${PRIVATE_ROOT_INSIDE:-}" != 1 ]; then
  exec env PRIVATE_ROOT_INSIDE=1 unshare --mount --propagation private "$0" "$work" "$@"
fi
# The system's tools: a test's PATH may put a stand-in mount or umount first.
system() { PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
full=${PRIVATE_ROOT_FULL_ETC:-}
small=${work}/full-etc
overlaid=(/etc /usr/local/bin /var/lib /usr/share/keyrings)
[ "${PRIVATE_ROOT_SYSTEMD:-}" != 1 ] || overlaid+=(/run)
for dir in "${overlaid[@]}"; do
  name=${dir//\//_}
  upper=${work}/upper/${name}
  scratch=${work}/overlay-work/${name}
  mkdir -p "$upper" "$scratch"
  if [ "$dir" = /etc ] && [ -n "$full" ]; then
    mkdir -p "$small"
    system mount -t tmpfs -o "size=${full},mode=0755" tmpfs "$small"
    mkdir -p "${small}/upper" "${small}/work"
    cp -a "${upper}/." "${small}/upper/"
    upper=${small}/upper
    scratch=${small}/work
  fi
  system mount -t overlay overlay -o "lowerdir=${dir},upperdir=${upper},workdir=${scratch}" "$dir"
done
[ "${PRIVATE_ROOT_SYSTEMD:-}" != 1 ] || mkdir -p /run/systemd/system
[ -n "$full" ] || exec "$@"
# Fill the tmpfs to the last block (the filler is outside what is copied back).
cat /dev/zero >"${small}/filler" 2>/dev/null || true
status=0
"$@" || status=$?
rm -rf "${work}/upper/_etc"
cp -a "${small}/upper" "${work}/upper/_etc"
system umount /etc
system umount "$small"
exit "$status"
