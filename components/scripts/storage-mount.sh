#!/usr/bin/env bash
# The site's shared storage on a node: the NFS export mounted at /data/k8s (cube-studio's
# layout; DLWS's mountpoints), through a managed block in /etc/fstab so it comes back at boot.
#
#   storage-mount.sh apply    install the NFS client when it is missing; write the fstab
#                             block (each field escaped as fstab reads it); mount it (again,
#                             when the line differs from the one last mounted: a record under
#                             /var/lib/convecthub/applied, written only once the mount is done,
#                             so a run cut off before is finished by the next)
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
# The record of the fstab line last mounted (common.sh: What has taken effect).
readonly APPLIED=storage

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

# fstab_line SOURCE: the block's line, every field escaped (common.sh: fstab_field).
fstab_line() {
  local source mount_point options
  source=$(fstab_field CONVECTHUB_NFS_SOURCE "$1") || exit 1
  mount_point=$(fstab_field CONVECTHUB_MOUNT_POINT "$MOUNT_POINT") || exit 1
  options=$(fstab_field CONVECTHUB_NFS_OPTIONS "$OPTIONS") || exit 1
  printf '%s\t%s\tnfs\t%s\t0\t0' "$source" "$mount_point" "$options"
}

apply() {
  local source=${CONVECTHUB_NFS_SOURCE:?} line last changed=no
  # Values are data: checked (and escaped) before anything changes.
  check_line CONVECTHUB_NFS_SOURCE "$source"
  check_pattern CONVECTHUB_MOUNT_POINT "$MOUNT_POINT" '^/' "an absolute path"
  check_pattern CONVECTHUB_NFS_OPTIONS "$OPTIONS" '^[A-Za-z0-9_.=:/,+-]+$' \
    "a comma-separated list of mount options"
  line=$(fstab_line "$source") || exit 1
  ensure_nfs_client
  mkdir -p "$MOUNT_POINT" || fail "cannot make the mount point ${MOUNT_POINT}"
  last=$(applied "$APPLIED")
  # No record yet: say so before anything changes, so that a run cut off from here on is
  # finished by the next one.
  [ -n "$last" ] || record_applied "$APPLIED" pending
  set_block /etc/fstab "$line" && changed=yes
  if [ -z "$last" ] && [ "$changed" = no ] && [ "$(mounted_source)" = "$source" ]; then
    # Mounted so from before this record was kept: there is nothing to do again.
    record_applied "$APPLIED" "$line"
    last=$line
  fi
  if [ "$last" != "$line" ] && [ -n "$(mounted_source)" ]; then
    say "remounting ${MOUNT_POINT}: its source or options changed"
    umount "$MOUNT_POINT" || fail "cannot unmount ${MOUNT_POINT} to mount ${source} there: stop what uses it (fuser -vm ${MOUNT_POINT}), then run again"
  fi
  if [ "$(mounted_source)" != "$source" ]; then
    timeout "$MOUNT_TIMEOUT" mount "$MOUNT_POINT" ||
      fail "cannot mount ${source} at ${MOUNT_POINT}: check that the NFS server exports it to this node (showmount -e ${source%%:*}), or fix convecthub:storage.nfs"
    say "mounted ${source} at ${MOUNT_POINT}"
  fi
  # Only now has it taken effect.
  [ "$last" = "$line" ] || record_applied "$APPLIED" "$line"
}

remove() {
  if [ -n "$(mounted_source)" ]; then
    umount "$MOUNT_POINT" 2>/dev/null || umount --lazy "$MOUNT_POINT"
    say "unmounted ${MOUNT_POINT}"
  fi
  set_block /etc/fstab "" || true
  forget_applied "$APPLIED"
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
