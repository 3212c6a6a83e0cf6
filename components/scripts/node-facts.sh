#!/usr/bin/env bash
# Preflight: report what this machine is, as one JSON object on stdout, and refuse (exit 1,
# one line on stderr) a machine that cannot run the platform. Changes nothing.
#
# Environment (all optional):
#   CONVECTHUB_NODE_NAME       name of the node in the stack config (for messages)
#   CONVECTHUB_IFACE           private-network interface whose IPv4 is the node's address
#   CONVECTHUB_EXPECT_ARCH     amd64 | arm64: what the stack config says the machine is
#   CONVECTHUB_MIN_CPUS        default 2      (the seeds' minimum: 2 cores,
#   CONVECTHUB_MIN_MEMORY_MB   default 3584    4 GB machines report about 3.8 GiB,
#   CONVECTHUB_MIN_DISK_GB     default 10      10 GB free where k3s keeps its data)
#   CONVECTHUB_DISK_PATH       default /var/lib
#   CONVECTHUB_OS_RELEASE      default /etc/os-release
# It also reports what the machine runs already: its k3s release (k3sVersion) and NVIDIA
# driver version (nvidiaDriver), each null when there is none.
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

json_string() {
  local text=$1
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\n'/\\n}
  text=${text//$'\t'/\\t}
  printf '"%s"' "$text"
}

machine_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) uname -m ;;
  esac
}

iface_address() {
  local iface=$1
  { ip -4 -o addr show dev "$iface" scope global 2>/dev/null || true; } | awk '{split($4, a, "/"); print a[1]; exit}'
}

default_iface() {
  { ip -4 route show default 2>/dev/null || true; } | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}'
}

# One JSON object per display, 3D or accelerator device on the PCI bus.
pci_accelerators() {
  local first=1 slot class vendor device
  while read -r slot class vendor device; do
    case "$class" in
      0300 | 0302 | 1200) ;;
      *) continue ;;
    esac
    [ "$first" = 1 ] || printf ','
    first=0
    printf '{"slot":%s,"class":%s,"vendor":%s,"device":%s}' \
      "$(json_string "$slot")" "$(json_string "$class")" \
      "$(json_string "$(vendor_name "$vendor")")" "$(json_string "$vendor:$device")"
  done < <(pci_devices)
}

interface_names() {
  local dir names=""
  for dir in /sys/class/net/*; do
    names="${names:+$names, }${dir##*/}"
  done
  echo "$names"
}

vendor_name() {
  case "$1" in
    10de) echo nvidia ;;
    19e5) echo huawei ;;
    1002) echo amd ;;
    8086) echo intel ;;
    *) echo "$1" ;;
  esac
}

json_or_null() {
  if [ -n "$1" ]; then json_string "$1"; else printf null; fi
}

# running_k3s: the release of the k3s binary on this machine; empty without one.
running_k3s() {
  local binary
  binary=$(command -v k3s 2>/dev/null || true)
  [ -n "$binary" ] || [ ! -x /usr/local/bin/k3s ] || binary=/usr/local/bin/k3s
  [ -n "$binary" ] || return 0
  { timeout 10 "$binary" --version 2>/dev/null || true; } | awk 'NR == 1 && $1 == "k3s" {print $3}'
}

# running_nvidia_driver: the driver version nvidia-smi reports; empty when it does not answer.
running_nvidia_driver() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  { timeout 10 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null || true; } |
    awk 'NR == 1 && /^[0-9][0-9.]*$/ {print}'
}

passwordless_sudo() {
  if [ "$(id -u)" = 0 ]; then
    echo true
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo true
  else
    echo false
  fi
}

version_at_least() {
  local have=$1 want=$2
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" = "$want" ]
}

check_os() {
  local id=$1 version=$2
  case "$id" in
    ubuntu) version_at_least "$version" 20.04 && return ;;
    debian) version_at_least "$version" 11 && return ;;
  esac
  fail "runs ${id:-an unknown OS} ${version}, which is not supported: install Ubuntu 20.04 or newer (or Debian 11 or newer)"
}

main() {
  exec </dev/null
  local os_id os_version arch cpus memory_mb disk_path disk_free_gb iface address sudo_ok user
  local k3s_version nvidia_driver
  os_id=$(os_release_field ID)
  os_version=$(os_release_field VERSION_ID)
  arch=$(machine_arch)
  cpus=$(nproc)
  memory_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  disk_path=${CONVECTHUB_DISK_PATH:-/var/lib}
  disk_free_gb=$(df -Pk "$disk_path" | awk 'NR == 2 {print int($4 / 1048576)}')
  iface=${CONVECTHUB_IFACE:-$(default_iface)}
  address=""
  [ -z "$iface" ] || address=$(iface_address "$iface")
  sudo_ok=$(passwordless_sudo)
  user=$(id -un)
  k3s_version=$(running_k3s)
  nvidia_driver=$(running_nvidia_driver)

  check_os "$os_id" "$os_version"
  if [ -n "${CONVECTHUB_EXPECT_ARCH:-}" ] && [ "$arch" != "$CONVECTHUB_EXPECT_ARCH" ]; then
    fail "is ${arch}, but its stack config says arch: ${CONVECTHUB_EXPECT_ARCH}: set arch: ${arch} for it in convecthub:nodes"
  fi
  local min_cpus=${CONVECTHUB_MIN_CPUS:-2} min_memory=${CONVECTHUB_MIN_MEMORY_MB:-3584} min_disk=${CONVECTHUB_MIN_DISK_GB:-10}
  if [ "$cpus" -lt "$min_cpus" ] || [ "$memory_mb" -lt "$min_memory" ] || [ "$disk_free_gb" -lt "$min_disk" ]; then
    fail "has ${cpus} CPUs, ${memory_mb} MB memory and ${disk_free_gb} GB free on ${disk_path}; it needs at least ${min_cpus} CPUs, ${min_memory} MB memory and ${min_disk} GB free: give it more, or leave it out of convecthub:nodes"
  fi
  if [ -n "${CONVECTHUB_IFACE:-}" ] && [ -z "$address" ]; then
    fail "has no IPv4 address on interface ${CONVECTHUB_IFACE} (it has: $(interface_names)): fix iface for it in convecthub:nodes"
  fi
  if [ -z "$address" ]; then
    fail "has no IPv4 address on a default route: set iface (the private-network interface) or address for it in convecthub:nodes"
  fi
  if [ "$sudo_ok" != true ]; then
    fail "user ${user} cannot run sudo without a password: on the node run  echo '${user} ALL=(ALL:ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/${user}  or connect as root"
  fi

  printf '{"hostname":%s,"os":{"id":%s,"version":%s},"kernel":%s,"arch":%s,"cpus":%s,"memoryMb":%s,"diskFreeGb":%s,"iface":%s,"address":%s,"user":%s,"home":%s,"passwordlessSudo":%s,"gpus":[%s],"k3sVersion":%s,"nvidiaDriver":%s}\n' \
    "$(json_string "$(hostname)")" "$(json_string "$os_id")" "$(json_string "$os_version")" \
    "$(json_string "$(uname -r)")" "$(json_string "$arch")" "$cpus" "$memory_mb" "$disk_free_gb" \
    "$(json_string "$iface")" "$(json_string "$address")" "$(json_string "$user")" \
    "$(json_string "${HOME:-}")" "$sudo_ok" \
    "$(pci_accelerators)" "$(json_or_null "$k3s_version")" "$(json_or_null "$nvidia_driver")"
}

main "$@"
