#!/usr/bin/env bash
# Prepare a node's operating system for Kubernetes, or undo that preparation.
#
#   os-prep.sh apply    converge: hostname, /etc/hosts block, swap off, kernel modules and
#                       sysctls for pod networking, time sync, apt mirror and proxy, HTTP
#                       proxy, base packages. Idempotent: a second run changes no file.
#                       Every value is checked before anything changes and refused, in one
#                       line naming it, when it could add lines or fields to a file (common.sh).
#   os-prep.sh remove   undo what apply added: files removed, originals put back. Installed
#                       packages and the running kernel settings stay (a reboot resets those).
#
# Environment (root is required for both):
#   CONVECTHUB_NODE_NAME      node name; the hostname too unless CONVECTHUB_SET_HOSTNAME=false
#   CONVECTHUB_SET_HOSTNAME   true (default) | false
#   CONVECTHUB_HOSTS          fleet as "name=address,name=address" for the /etc/hosts block
#   CONVECTHUB_APT_MIRROR     distribution mirror URL that replaces the apt sources
#   CONVECTHUB_APT_PROXY      HTTP proxy for apt only (e.g. an apt-cacher-ng)
#   CONVECTHUB_HTTP_PROXY, CONVECTHUB_HTTPS_PROXY, CONVECTHUB_NO_PROXY   system-wide proxy, in
#                             /etc/environment, which every user can read: a proxy URL that
#                             carries a user:password@ is left out of it (apt's root-only
#                             proxy file, k3s's and docker's root-only files still get it)
#   CONVECTHUB_NTP_SERVERS    space-separated NTP servers (default: the distribution's)
#   CONVECTHUB_PACKAGES       space-separated packages to install besides the base set
#   CONVECTHUB_STATE_DIR      where originals are kept for remove (default /var/lib/convecthub)
set -euo pipefail

readonly BASE_PACKAGES="ca-certificates curl gnupg iptables conntrack socat"
readonly SWAP_MARK="#convecthub-swap-off# "
readonly SYSCTL_FILE=/etc/sysctl.d/90-convecthub.conf
readonly MODULES_FILE=/etc/modules-load.d/convecthub.conf
readonly APT_PROXY_FILE=/etc/apt/apt.conf.d/90convecthub-proxy
readonly MIRROR_FILE=/etc/apt/sources.list.d/convecthub-mirror.sources
readonly TIMESYNCD_FILE=/etc/systemd/timesyncd.conf.d/convecthub.conf
readonly CHRONY_FILE=/etc/chrony/sources.d/convecthub.sources
readonly PACKAGE_NAME='^[a-z0-9][a-z0-9+.-]+$'
# An uncommented line naming one of these is the distribution's own archive.
readonly DISTRIBUTION_ARCHIVES='^[^#]*(archive\.ubuntu\.com|security\.ubuntu\.com|ports\.ubuntu\.com|deb\.debian\.org|security\.debian\.org|ftp\.[a-z.]*debian\.org)'

node=${CONVECTHUB_NODE_NAME:-$(hostname)}
state_dir=${CONVECTHUB_STATE_DIR:-/var/lib/convecthub}
apt_sources_changed=false
apt_failure=""

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

# Values are data (common.sh): each one is refused here, before anything on the node changes,
# if it could change the shape of the file it goes into.
check_input() {
  local value
  if [ "${CONVECTHUB_SET_HOSTNAME:-true}" = true ] && [ -n "${CONVECTHUB_NODE_NAME:-}" ]; then
    check_label CONVECTHUB_NODE_NAME "$node"
  fi
  for value in CONVECTHUB_APT_MIRROR CONVECTHUB_APT_PROXY; do
    [ -z "${!value:-}" ] || check_url "$value" "${!value}"
  done
  check_proxy_settings
  check_line CONVECTHUB_NTP_SERVERS "${CONVECTHUB_NTP_SERVERS:-}"
  local -a words
  read -r -a words <<<"${CONVECTHUB_NTP_SERVERS:-}"
  for value in "${words[@]}"; do check_host "CONVECTHUB_NTP_SERVERS (a server)" "$value"; done
  check_line CONVECTHUB_PACKAGES "${CONVECTHUB_PACKAGES:-}"
  read -r -a words <<<"${CONVECTHUB_PACKAGES:-}"
  for value in "${words[@]}"; do
    check_pattern "CONVECTHUB_PACKAGES (a package)" "$value" "$PACKAGE_NAME" "a Debian package name"
  done
  hosts_block >/dev/null
}

# A machine without /etc/hosts (minimal images) gets the standard localhost lines first.
ensure_hosts_file() {
  [ -e /etc/hosts ] && return 0
  write_file /etc/hosts 644 "$(printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback')"
}

# hosts_block: the /etc/hosts block of CONVECTHUB_HOSTS ("name=address,..."), each entry
# checked: a name, an IP address (common.sh: hosts_line).
hosts_block() {
  local entry number=0
  local -a entries
  check_line CONVECTHUB_HOSTS "${CONVECTHUB_HOSTS:-}"
  IFS=',' read -r -a entries <<<"${CONVECTHUB_HOSTS:-}"
  for entry in "${entries[@]}"; do
    number=$((number + 1))
    [ -n "$entry" ] || continue
    [[ $entry == *=* ]] || fail "CONVECTHUB_HOSTS entry ${number} is not name=address: refused"
    hosts_line "${entry%%=*}" "${entry#*=}" "CONVECTHUB_HOSTS entry ${number}"
  done
}

apply_hostname() {
  [ "${CONVECTHUB_SET_HOSTNAME:-true}" = true ] || return 0
  local current
  current=$(hostname)
  [ "$current" != "$node" ] || [ "$(cat /etc/hostname 2>/dev/null)" != "$node" ] || return 0
  [ -f "$state_dir/hostname.orig" ] || replace_file "$state_dir/hostname.orig" 0644 "$current"
  set_hostname "$node"
}

# set_hostname NAME: the static (/etc/hostname) and the kernel's hostname are NAME. Through
# systemd-hostnamed where systemd runs, as it tells other services; hostnamed is started on
# demand over D-Bus and that start can time out on a busy machine, so it is asked three
# times, and then the two are set directly, which is all hostnamectl does with them.
set_hostname() {
  local name=$1 attempt
  if [ -d /run/systemd/system ] && command -v hostnamectl >/dev/null 2>&1; then
    for attempt in 1 2 3; do
      if hostnamectl set-hostname "$name" 2>/dev/null; then
        say "hostname is now ${name}"
        return 0
      fi
      [ "$attempt" = 3 ] || sleep "$attempt"
    done
    say "hostnamectl did not answer; setting /etc/hostname and the kernel's hostname directly"
  fi
  write_file /etc/hostname 0644 "$name" || true
  hostname "$name" || fail "could not set the hostname ${name}: is this machine's hostname locked?"
  say "hostname is now ${name}"
}

remove_hostname() {
  [ -f "$state_dir/hostname.orig" ] || return 0
  set_hostname "$(cat "$state_dir/hostname.orig")"
  rm -f "$state_dir/hostname.orig"
}

# Swap: off now, and the fstab entries commented out with a mark so remove can restore them.
apply_swap() {
  if [ "$(awk 'NR > 1' /proc/swaps | wc -l)" -gt 0 ]; then
    swapoff -a || fail "cannot turn swap off (swapoff -a failed): turn it off by hand, then run again"
    say "swap is off"
  fi
  [ -f /etc/fstab ] || return 0
  local text
  text=$(awk -v mark="$SWAP_MARK" '
    $0 !~ /^[[:space:]]*#/ && $3 == "swap" { print mark $0; next }
    { print }' /etc/fstab) || fail "cannot read /etc/fstab: it is left as it was"
  write_file /etc/fstab 644 "$text" || true
}

remove_swap() {
  [ -f /etc/fstab ] || return 0
  local text
  text=$(awk -v mark="$SWAP_MARK" '
      index($0, mark) == 1 { print substr($0, length(mark) + 1); next }
      { print }' /etc/fstab) || fail "cannot read /etc/fstab: it is left as it was"
  if write_file /etc/fstab 644 "$text"; then
    swapon -a || say "could not turn swap back on; it will be on after a reboot"
  fi
}

# Kernel modules and sysctls that pod networking needs.
apply_kernel() {
  write_file "$MODULES_FILE" 644 "$(printf 'overlay\nbr_netfilter')" || true
  local module
  for module in overlay br_netfilter; do
    modprobe "$module" 2>/dev/null || true
  done
  grep -qw overlay /proc/filesystems ||
    fail "the kernel has no overlay filesystem (modprobe overlay failed): install the kernel's extra modules package"
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    fail "the kernel has no br_netfilter (modprobe br_netfilter failed): install the kernel's extra modules package"

  write_file "$SYSCTL_FILE" 644 "$(sysctl_settings)" || true
  local key value
  while IFS='=' read -r key value; do
    set_sysctl "$key" "$value" required
  done < <(sysctl_settings required)
  while IFS='=' read -r key value; do
    set_sysctl "$key" "$value" at-least
  done < <(sysctl_settings tunable)
}

# sysctl_settings [required|tunable]: key=value lines (both kinds when no argument).
sysctl_settings() {
  if [ "${1:-required}" = required ]; then
    printf '%s\n' net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  fi
  if [ "${1:-tunable}" = tunable ]; then
    printf '%s\n' fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288
  fi
}

set_sysctl() {
  local key=$1 want=$2 kind=$3 have
  have=$(sysctl -n "$key" 2>/dev/null || echo "")
  if [ "$have" = "$want" ] || { [ "$kind" = at-least ] && [ -n "$have" ] && [ "$have" -ge "$want" ]; }; then
    return 0
  fi
  if sysctl -q -w "${key}=${want}" 2>/dev/null; then
    say "set ${key}=${want}"
  elif [ "$kind" = required ]; then
    fail "cannot set ${key}=${want} (it is ${have:-missing}): allow it, e.g. in the host of this container"
  else
    say "left ${key} at ${have:-unset} (cannot set ${want} here; it applies after a reboot)"
  fi
}

remove_kernel() {
  remove_file "$MODULES_FILE" || true
  remove_file "$SYSCTL_FILE" || true
}

# Time sync: chrony or ntpd when one is installed, else systemd-timesyncd.
apply_time_sync() {
  local servers server lines=""
  local -a list
  # Words (never globs), each a host name or address (checked in check_input).
  read -r -a list <<<"${CONVECTHUB_NTP_SERVERS:-}"
  servers=${list[*]}
  if command -v chronyd >/dev/null 2>&1; then
    if [ -n "$servers" ]; then
      for server in "${list[@]}"; do lines="${lines}server ${server} iburst"$'\n'; done
      write_file "$CHRONY_FILE" 644 "${lines%$'\n'}" || true
    else
      remove_file "$CHRONY_FILE" || true
    fi
    # Reloaded until a reload went through after the last change (a run cut off between the
    # write and the reload is finished by the next).
    local now
    now=$(digest "$CHRONY_FILE") || exit 1
    if [ "$(applied chrony)" != "$now" ] && chronyc reload sources >/dev/null 2>&1; then
      record_applied chrony "$now"
    fi
    return 0
  fi
  if command -v ntpd >/dev/null 2>&1 || command -v openntpd >/dev/null 2>&1; then
    [ -z "$servers" ] || say "ntpd keeps time here: set its servers (${servers}) in its own config"
    return 0
  fi
  if ! command -v timedatectl >/dev/null 2>&1 || [ ! -e /lib/systemd/systemd-timesyncd ]; then
    install_packages systemd-timesyncd
  fi
  if [ -n "$servers" ]; then
    write_file "$TIMESYNCD_FILE" 644 "$(printf '[Time]\nNTP=%s' "$servers")" || true
  else
    remove_file "$TIMESYNCD_FILE" || true
  fi
  local now
  now=$(digest "$TIMESYNCD_FILE") || exit 1
  # In a container timesyncd never runs (the host keeps time), so look at the unit, not NTP=.
  if [ "$(systemctl is-enabled systemd-timesyncd.service 2>/dev/null)" != enabled ]; then
    timedatectl set-ntp true 2>/dev/null || say "time sync is left to the host (no NTP here: $(systemd-detect-virt 2>/dev/null || echo unknown))"
  elif [ "$(applied timesyncd)" != "$now" ]; then
    # Restarted until a restart went through after the last change (a run cut off between
    # the write and the restart is finished by the next).
    if systemctl try-restart systemd-timesyncd.service; then
      record_applied timesyncd "$now"
    fi
  fi
}

remove_time_sync() {
  forget_applied chrony
  forget_applied timesyncd
  remove_file "$CHRONY_FILE" || true
  if remove_file "$TIMESYNCD_FILE"; then
    rmdir --ignore-fail-on-non-empty "$(dirname "$TIMESYNCD_FILE")"
    systemctl try-restart systemd-timesyncd.service 2>/dev/null || true
  fi
}

# Apt: an optional mirror in place of the distribution's sources, and an optional proxy.
apply_apt() {
  # The proxies are URLs without quotes or control characters (check_input): they cannot end
  # apt's quoted string. A file naming a proxy password is root's only.
  local proxy=${CONVECTHUB_APT_PROXY:-${CONVECTHUB_HTTP_PROXY:-}} lines="" mode=644
  [ -z "$proxy" ] || lines="Acquire::http::Proxy \"${proxy}\";"
  if [ -n "${CONVECTHUB_HTTPS_PROXY:-}" ]; then
    lines="${lines:+$lines$'\n'}Acquire::https::Proxy \"${CONVECTHUB_HTTPS_PROXY}\";"
  fi
  if has_userinfo "$proxy" || has_userinfo "${CONVECTHUB_HTTPS_PROXY:-}"; then mode=600; fi
  if [ -n "$lines" ]; then
    write_file "$APT_PROXY_FILE" "$mode" "$lines" && apt_sources_changed=true
  else
    remove_file "$APT_PROXY_FILE" && apt_sources_changed=true
  fi
  if [ -n "${CONVECTHUB_APT_MIRROR:-}" ]; then
    use_apt_mirror "$CONVECTHUB_APT_MIRROR"
  else
    restore_apt_sources
  fi
}

use_apt_mirror() {
  local mirror=$1 id codename suites components keyring
  # shellcheck disable=SC1091
  id=$(. /etc/os-release && echo "$ID")
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || fail "cannot tell the release codename from /etc/os-release to use the apt mirror"
  case "$id" in
    ubuntu)
      suites="$codename ${codename}-updates ${codename}-security"
      components="main restricted universe multiverse"
      keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
      ;;
    *)
      suites="$codename ${codename}-updates"
      components="main"
      keyring=/usr/share/keyrings/debian-archive-keyring.gpg
      ;;
  esac
  local source
  local -a sources
  mapfile -t sources < <(distribution_sources)
  for source in "${sources[@]}"; do
    { mkdir -p "$state_dir/apt-sources" &&
      mv -- "$source" "$state_dir/apt-sources/$(basename "$source")"; } ||
      fail "cannot move ${source} aside to ${state_dir}/apt-sources"
    say "moved ${source} aside for the mirror (kept in ${state_dir}/apt-sources)"
    apt_sources_changed=true
  done
  write_file "$MIRROR_FILE" 644 "$(printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s' \
    "$mirror" "$suites" "$components" "$keyring")" && apt_sources_changed=true
  return 0
}

# The apt source files that name the distribution's own archive (not docker's, nvidia's...).
distribution_sources() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -s "$file" ] && [ "$file" != "$MIRROR_FILE" ] && grep -qE "$DISTRIBUTION_ARCHIVES" "$file"; then
      echo "$file"
    fi
  done
}

restore_apt_sources() {
  remove_file "$MIRROR_FILE" && apt_sources_changed=true
  [ -d "$state_dir/apt-sources" ] || return 0
  local saved target
  for saved in "$state_dir"/apt-sources/*; do
    [ -e "$saved" ] || continue
    case "${saved##*/}" in
      sources.list) target=/etc/apt/sources.list ;;
      *) target=/etc/apt/sources.list.d/${saved##*/} ;;
    esac
    mv -- "$saved" "$target" || fail "cannot put ${target} back from ${saved}"
    say "restored ${target}"
    apt_sources_changed=true
  done
  rmdir "$state_dir/apt-sources"
}

remove_apt() {
  remove_file "$APT_PROXY_FILE" || true
  restore_apt_sources
}

# System-wide proxy for every process that reads /etc/environment. That file is every user's
# to read, so a proxy URL with a user:password@ stays out of it (root's services get it from
# their own root-only files); the others are plain enough for pam_env and for sh, which
# scripts source it with (common.sh: pam_env_line).
apply_proxy_environment() {
  local lines="" name value line
  for name in http_proxy https_proxy no_proxy; do
    case "$name" in
      http_proxy) value=${CONVECTHUB_HTTP_PROXY:-} ;;
      https_proxy) value=${CONVECTHUB_HTTPS_PROXY:-} ;;
      no_proxy) value=${CONVECTHUB_NO_PROXY:-} ;;
    esac
    [ -n "$value" ] || continue
    if has_userinfo "$value"; then
      say "left ${name} out of /etc/environment, which every user can read: its URL carries a password"
      continue
    fi
    line=$(pam_env_line "$name" "$value") || exit 1
    lines+="${line}"$'\n'
    line=$(pam_env_line "${name^^}" "$value") || exit 1
    lines+="${line}"$'\n'
  done
  if [ ! -e /etc/environment ] && [ -n "$lines" ]; then
    { : >/etc/environment; } 2>/dev/null || fail "cannot create /etc/environment"
  fi
  set_block /etc/environment "${lines%$'\n'}" || true
}

missing_packages() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || echo "$package"
  done
}

# A run cut off during an install (lost connection, power) leaves dpkg half-done: finish it.
finish_interrupted_dpkg() {
  [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || return 0
  say "finishing an interrupted package installation (dpkg --configure -a)"
  dpkg --force-confold --configure -a >/dev/null ||
    fail "dpkg --configure -a failed: repair the node's packages by hand, then run again"
}

# run_apt SECONDS ARGS...: apt-get, cut off after SECONDS and tried three times in all (a
# mirror or proxy that stalls must not hang the node's preparation for ever).
run_apt() {
  local limit=$1 attempt log
  shift
  log=$(mktemp)
  for attempt in 1 2 3; do
    if timeout --kill-after=10 "$limit" apt-get -q -o DPkg::Lock::Timeout=300 \
      -o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 \
      "$@" >"$log" 2>&1; then
      rm -f "$log"
      return 0
    fi
    if [ "$attempt" -lt 3 ]; then
      say "apt-get $1 failed (attempt ${attempt} of 3): $(apt_error "$log"); trying again"
      finish_interrupted_dpkg
      sleep 2
    fi
  done
  apt_failure=$(apt_error "$log")
  rm -f "$log"
  return 1
}

apt_error() {
  local line
  line=$(grep -E '^(E|Err):' "$1" | tail -n 1)
  echo "${line:-$(tail -n 1 "$1")}"
}

install_packages() {
  local -a missing
  mapfile -t missing < <(missing_packages "$@")
  if [ "${#missing[@]}" -eq 0 ] && [ "$apt_sources_changed" = false ]; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  finish_interrupted_dpkg
  run_apt 300 update ||
    fail "apt-get update failed (${apt_failure}): check the node's apt sources, or set convecthub:os aptMirror / aptProxy"
  apt_sources_changed=false
  [ "${#missing[@]}" -gt 0 ] || return 0
  say "installing ${missing[*]}"
  run_apt 1800 -y install --no-install-recommends "${missing[@]}" ||
    fail "could not install ${missing[*]} (${apt_failure}): check the node's apt sources, or set convecthub:os aptMirror / aptProxy"
}

apply() {
  check_input
  local hosts
  hosts=$(hosts_block) || exit 1
  apply_hostname
  ensure_hosts_file || true
  set_block /etc/hosts "$hosts" || true
  apply_swap
  apply_kernel
  apply_apt
  apply_proxy_environment
  # shellcheck disable=SC2086 # the package lists are space-separated words
  install_packages $BASE_PACKAGES ${CONVECTHUB_PACKAGES:-}
  apply_time_sync
}

remove() {
  remove_time_sync
  set_block /etc/environment "" || true
  remove_apt
  remove_kernel
  remove_swap
  set_block /etc/hosts "" || true
  remove_hostname
  rmdir "$state_dir" 2>/dev/null || true
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "os-prep.sh must run as root"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: os-prep.sh apply|remove" ;;
  esac
}

main "$@"
