#!/usr/bin/env bash
# The accelerator driver of a GPU or NPU node: confirm the device is there and its driver
# answers, installing the NVIDIA driver when asked to. Runs before the node's k3s.
#
#   NVIDIA  the card must be on the PCI bus. When nvidia-smi already answers, nothing changes.
#           With CONVECTHUB_INSTALL_DRIVER=true (Ubuntu): nouveau is blacklisted and the
#           driver packages installed; when the module cannot load without one, a reboot is
#           scheduled a few seconds after this script ends and sshd stops taking new logins
#           until then (the runtime step's connection keeps dialling until the node is back).
#   Ascend  the NPU must be on the PCI bus and npu-smi must answer (the driver is never
#           installed by this program: Ascend drivers come from Huawei's installer).
# Drivers stay installed when the node is removed, like os-prep's packages.
#
# Environment (root is required):
#   CONVECTHUB_NODE_NAME        the node's name (messages)
#   CONVECTHUB_GPU_VENDOR       nvidia | ascend
#   CONVECTHUB_INSTALL_DRIVER   true | false (nvidia only; default true)
#   CONVECTHUB_DRIVER_VERSION   NVIDIA driver branch (convecthub:gpu.driverVersion); required
#                               when the driver is installed
#   CONVECTHUB_OS_RELEASE       default /etc/os-release
#   CONVECTHUB_ASCEND_DRIVER    the Ascend driver's directory, which the device plugin mounts
#                               (default /usr/local/Ascend/driver, where Huawei installs it)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly NOUVEAU_BLACKLIST=/etc/modprobe.d/convecthub-blacklist-nouveau.conf
# sshd's units on Ubuntu (ssh.socket: socket-activated releases), and when they come back
# should the scheduled reboot not happen.
readonly SSH_UNITS=(ssh.socket ssh.service)
readonly SSH_FALLBACK_SECONDS=600

# on_pci_bus VENDOR_ID: whether a device of that PCI vendor (e.g. 10de) is present.
on_pci_bus() {
  pci_devices | awk '{print $3}' | grep -qix -- "$1"
}

nvidia_smi_answers() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

install_nvidia_driver() {
  local branch=${CONVECTHUB_DRIVER_VERSION:-}
  [ -n "$branch" ] ||
    fail "CONVECTHUB_DRIVER_VERSION is not set: give the NVIDIA driver branch to install (convecthub:gpu.driverVersion)"
  check_pattern CONVECTHUB_DRIVER_VERSION "$branch" '^[0-9]+$' \
    "an NVIDIA driver branch: the number in nvidia-headless-<branch>-server"
  [ "$(os_release_field ID)" = ubuntu ] ||
    fail "installing the NVIDIA driver is supported on Ubuntu only: install it on this node by hand, then set installDriver: false for it in convecthub:nodes"
  if write_file "$NOUVEAU_BLACKLIST" 0644 "$(printf 'blacklist nouveau\noptions nouveau modeset=0')"; then
    update-initramfs -u >/dev/null 2>&1 || fail "update-initramfs failed after blacklisting nouveau: run it on the node to see why"
  fi
  local packages=("nvidia-headless-${branch}-server" "nvidia-utils-${branch}-server")
  say "installing ${packages[*]}"
  timeout --kill-after=10 600 apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null ||
    fail "apt-get update failed before installing the NVIDIA driver: check the node's apt sources (convecthub:os aptMirror)"
  DEBIAN_FRONTEND=noninteractive timeout --kill-after=10 1800 \
    apt-get -q -o DPkg::Lock::Timeout=300 -y install --no-install-recommends "${packages[@]}" >/dev/null ||
    fail "could not install ${packages[*]}: check the node's apt sources (convecthub:os aptMirror), or set convecthub:gpu driverVersion to a branch its Ubuntu release has"
}

needs_reboot() {
  lsmod | awk '{print $1}' | grep -qx nouveau && return 0
  modprobe nvidia >/dev/null 2>&1 || return 0
  ! nvidia_smi_answers
}

nvidia() {
  on_pci_bus 10de ||
    fail "declares an NVIDIA GPU but has none on its PCI bus: check the card is seated and powered, or remove gpu from it in convecthub:nodes"
  if nvidia_smi_answers; then
    say "the NVIDIA driver answers: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
    return 0
  fi
  [ "${CONVECTHUB_INSTALL_DRIVER:-true}" = true ] ||
    fail "has installDriver: false, but nvidia-smi does not answer: install the NVIDIA driver on it, or set installDriver: true for it in convecthub:nodes"
  install_nvidia_driver
  if needs_reboot; then
    schedule_reboot
  fi
}

# schedule_reboot: reboot a few seconds after this script ends, and let no new SSH session in
# before: the next step (gpu-runtime) would otherwise start on the old boot and be cut off by
# the reboot. Stopping sshd leaves open sessions, this one included, running (its unit kills
# only the listener); it starts again with the reboot, or by a timer should the reboot not
# happen.
schedule_reboot() {
  say "rebooting in 5 s to load the NVIDIA driver; new SSH logins wait for the reboot"
  systemd-run --quiet --on-active=5 /bin/systemctl reboot ||
    fail "could not schedule the reboot the NVIDIA driver needs: reboot the node by hand, then run pulumi up again"
  local unit active=()
  for unit in "${SSH_UNITS[@]}"; do
    if systemctl is-active --quiet "$unit"; then active+=("$unit"); fi
  done
  [ "${#active[@]}" -gt 0 ] || return 0
  systemd-run --quiet --on-active="${SSH_FALLBACK_SECONDS}" /bin/systemctl start "${active[@]}" || true
  for unit in "${active[@]}"; do
    systemctl stop "$unit" || true
  done
}

ascend() {
  on_pci_bus 19e5 ||
    fail "declares an Ascend NPU but has no Huawei device on its PCI bus: check the card, or remove gpu from it in convecthub:nodes"
  { command -v npu-smi >/dev/null 2>&1 && npu-smi info >/dev/null 2>&1; } ||
    fail "declares an Ascend NPU, but npu-smi does not answer: install the Ascend driver and firmware (Huawei's installer), then run pulumi up again"
  local driver_dir=${CONVECTHUB_ASCEND_DRIVER:-/usr/local/Ascend/driver}
  [ -d "$driver_dir" ] ||
    fail "npu-smi answers but ${driver_dir} is missing, which the Ascend device plugin mounts: reinstall the driver with Huawei's installer at its default path"
  say "the Ascend driver answers"
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "gpu-driver.sh must run as root"
  case "${CONVECTHUB_GPU_VENDOR:-}" in
    nvidia) nvidia ;;
    ascend) ascend ;;
    *) fail "CONVECTHUB_GPU_VENDOR is '${CONVECTHUB_GPU_VENDOR:-}': it must be nvidia or ascend" ;;
  esac
}

main "$@"
