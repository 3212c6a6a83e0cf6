#!/usr/bin/env bash
# The site's shared storage on a node: the NFS export mounted at /data/k8s (cube-studio's
# layout; DLWS's mountpoints), through a managed block in /etc/fstab so it comes back at boot.
#
#   storage-mount.sh apply    install the NFS client when it is missing; write the fstab
#                             block; mount it (again, when the source or options changed)
#   storage-mount.sh remove   unmount it, drop the block, remove the mount point if empty
#
# Environment (root is required):
#   CONVECTHUB_NODE_NAME      the node's name (messages)
#   CONVECTHUB_NFS_SOURCE     server:/export
#   CONVECTHUB_MOUNT_POINT    where it is mounted (default /data/k8s)
#   CONVECTHUB_NFS_OPTIONS    mount options (default defaults,_netdev)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly MOUNT_POINT=${CONVECTHUB_MOUNT_POINT:-/data/k8s}
readonly OPTIONS=${CONVECTHUB_NFS_OPTIONS:-defaults,_netdev}
readonly MOUNT_TIMEOUT=120

ensure_nfs_client() {
  command -v mount.nfs >/dev/null 2>&1 && return 0
  say "installing nfs-common"
  DEBIAN_FRONTEND=noninteractive timeout --kill-after=10 900 \
    apt-get -q -o DPkg::Lock::Timeout=300 -y install --no-install-recommends nfs-common >/dev/null ||
    fail "could not install nfs-common, the NFS client: check the node's apt sources (convecthub:os aptMirror), or add nfs-common to convecthub:os packages"
}

mounted_source() {
  findmnt -n -o SOURCE --mountpoint "$MOUNT_POINT" 2>/dev/null || true
}

apply() {
  local source=${CONVECTHUB_NFS_SOURCE:?}
  ensure_nfs_client
  mkdir -p "$MOUNT_POINT"
  local changed=no
  set_block /etc/fstab "$(printf '%s\t%s\tnfs\t%s\t0\t0' "$source" "$MOUNT_POINT" "$OPTIONS")" && changed=yes
  if [ "$changed" = yes ] && [ -n "$(mounted_source)" ]; then
    say "remounting ${MOUNT_POINT}: its source or options changed"
    umount "$MOUNT_POINT" || fail "cannot unmount ${MOUNT_POINT} to mount ${source} there: stop what uses it (fuser -vm ${MOUNT_POINT}), then run again"
  fi
  if [ "$(mounted_source)" != "$source" ]; then
    timeout "$MOUNT_TIMEOUT" mount "$MOUNT_POINT" ||
      fail "cannot mount ${source} at ${MOUNT_POINT}: check that the NFS server exports it to this node (showmount -e ${source%%:*}), or fix convecthub:storage.nfs"
    say "mounted ${source} at ${MOUNT_POINT}"
  fi
}

remove() {
  if [ -n "$(mounted_source)" ]; then
    umount "$MOUNT_POINT" 2>/dev/null || umount --lazy "$MOUNT_POINT"
    say "unmounted ${MOUNT_POINT}"
  fi
  set_block /etc/fstab "" || true
  rmdir "$MOUNT_POINT" 2>/dev/null || true
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "storage-mount.sh must run as root"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: storage-mount.sh apply|remove" ;;
  esac
}

main "$@"
