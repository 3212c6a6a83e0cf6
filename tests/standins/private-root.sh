#!/usr/bin/env bash
# Test helper: run a command as root in a private mount namespace where /etc, /usr/local/bin,
# /var/lib and /usr/share/keyrings are overlays whose changes land in WORKDIR/upper, so a node
# script can write where it would on a node while this host stays untouched. Unmounted when the
# command ends.
#
#   private-root.sh WORKDIR COMMAND [ARGS...]
set -euo pipefail
work=$1
shift
if [ "${PRIVATE_ROOT_INSIDE:-}" != 1 ]; then
  exec env PRIVATE_ROOT_INSIDE=1 unshare --mount --propagation private "$0" "$work" "$@"
fi
for dir in /etc /usr/local/bin /var/lib /usr/share/keyrings; do
  name=${dir//\//_}
  mkdir -p "${work}/upper/${name}" "${work}/overlay-work/${name}"
  # The system's mount: a test's PATH may put a stand-in mount first.
  PATH=/usr/sbin:/usr/bin:/sbin:/bin mount -t overlay overlay \
    -o "lowerdir=${dir},upperdir=${work}/upper/${name},workdir=${work}/overlay-work/${name}" "$dir"
done
exec "$@"
