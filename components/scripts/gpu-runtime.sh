#!/usr/bin/env bash
# The NVIDIA container runtime of a GPU node, once its driver answers (after the reboot the
# driver step may have scheduled: this step's SSH connection waits for the node to come back).
#
#   gpu-runtime.sh apply    wait for boot to finish; check nvidia-smi; unless it is there
#                           already, add the container toolkit's apt repository (or the
#                           site's mirror of it) and install nvidia-container-toolkit. k3s, installed after this, finds the
#                           runtime and makes it the default (config.yaml default-runtime); a
#                           k3s already running is restarted when the toolkit is new.
#   gpu-runtime.sh remove   remove the repository and its key (the packages stay).
#
# Environment (root is required):
#   CONVECTHUB_NODE_NAME        the node's name (messages)
#   CONVECTHUB_TOOLKIT_REPO     the repository's base URL; the node's arch is appended
#   CONVECTHUB_TOOLKIT_KEY_URL  its signing key
#   CONVECTHUB_BOOT_TIMEOUT     seconds to wait for boot to finish (default 900)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly SOURCE_FILE=/etc/apt/sources.list.d/convecthub-nvidia-container-toolkit.list
readonly KEYRING=/usr/share/keyrings/convecthub-nvidia-container-toolkit.gpg

booted() {
  local state
  state=$(systemctl is-system-running 2>/dev/null || true)
  [ "$state" = running ] || [ "$state" = degraded ]
}

add_repository() {
  check_url CONVECTHUB_TOOLKIT_REPO "${CONVECTHUB_TOOLKIT_REPO:?}"
  check_url CONVECTHUB_TOOLKIT_KEY_URL "${CONVECTHUB_TOOLKIT_KEY_URL:?}"
  apt_repository "$SOURCE_FILE" "$KEYRING" "${CONVECTHUB_TOOLKIT_KEY_URL:?}" \
    "deb [signed-by=${KEYRING}] ${CONVECTHUB_TOOLKIT_REPO:?}/$(dpkg --print-architecture) /" \
    "convecthub:gpu toolkitKeyUrl"
}

toolkit_installed() {
  dpkg-query -W -f='${Status}' nvidia-container-toolkit 2>/dev/null | grep -q "install ok installed"
}

install_toolkit() {
  say "installing nvidia-container-toolkit"
  timeout --kill-after=10 600 apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null ||
    fail "apt-get update failed with the NVIDIA container toolkit repository ${CONVECTHUB_TOOLKIT_REPO}: check it, or set convecthub:gpu toolkitRepository to the site's mirror"
  DEBIAN_FRONTEND=noninteractive timeout --kill-after=10 1800 \
    apt-get -q -o DPkg::Lock::Timeout=300 -y install nvidia-container-toolkit >/dev/null ||
    fail "could not install nvidia-container-toolkit from ${CONVECTHUB_TOOLKIT_REPO}"
}

restart_running_k3s() {
  local unit
  for unit in k3s k3s-agent; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then
      say "restarting ${unit} so that it finds the NVIDIA runtime"
      systemctl restart "$unit" || fail "could not restart ${unit}: on the node, see journalctl -u ${unit}"
    fi
  done
}

apply() {
  wait_until "${CONVECTHUB_BOOT_TIMEOUT:-900}" booted ||
    fail "did not finish booting within ${CONVECTHUB_BOOT_TIMEOUT:-900} s: see systemctl --failed on it"
  { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; } ||
    fail "nvidia-smi does not answer after the driver step (and its reboot): see dmesg | grep -i nvidia on it"
  # A toolkit already there (installed by the site, or by an earlier run) needs no repository.
  if ! toolkit_installed; then
    add_repository || true
    install_toolkit
    restart_running_k3s
  fi
  command -v nvidia-container-runtime >/dev/null 2>&1 ||
    fail "nvidia-container-toolkit is installed but nvidia-container-runtime is missing: reinstall the package on it"
}

remove() {
  remove_file "$SOURCE_FILE" || true
  remove_file "$KEYRING" || true
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "gpu-runtime.sh must run as root"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: gpu-runtime.sh apply|remove" ;;
  esac
}

main "$@"
