#!/usr/bin/env bash
# K3s on this node, from the official install script, or its removal.
#
#   k3s-install.sh apply    write /etc/rancher/k3s/config.yaml, registries.yaml and the
#                           root-only token file; install k3s (online, or from the airgap bundle
#                           copied to the node) when it is missing or another version; restart
#                           it when what it starts with differs from what it last started
#                           with (a record under /var/lib/convecthub/applied, written only once
#                           the restart is done: a run cut off before it is finished by the
#                           next); a server then waits until it is Ready. A second run with
#                           the same input changes nothing. A release more than one
#                           Kubernetes minor after the one the node runs, or a minor before
#                           it, is refused before anything changes (Kubernetes upgrades one
#                           minor at a time): the line names the minors to take in between.
#   k3s-install.sh remove   run k3s's own uninstall script and delete the staged bundle.
#
# Environment (root is required for both):
#   CONVECTHUB_NODE_NAME        the node's name (messages; its config.yaml names it too)
#   CONVECTHUB_K3S_ROLE         server | agent
#   CONVECTHUB_K3S_VERSION      the k3s release, vMAJOR.MINOR.PATCH+k3sN
#   CONVECTHUB_K3S_CONFIG       the text of /etc/rancher/k3s/config.yaml
#   CONVECTHUB_K3S_TOKEN        the cluster token: written to a root-only file, never printed
#   CONVECTHUB_REGISTRIES       the text of /etc/rancher/k3s/registries.yaml (unset: no file)
#   CONVECTHUB_INSTALL_SCRIPT_URL  online: where to fetch the install script
#   CONVECTHUB_BUNDLE_DIR       airgap: directory holding this arch's k3s and install.sh
#   CONVECTHUB_IMAGES_DIR       airgap: directory of image tarballs this node imports
#   CONVECTHUB_BUNDLE_ROOT      airgap: the staging directory to delete on remove
#   CONVECTHUB_HTTP_PROXY, CONVECTHUB_HTTPS_PROXY, CONVECTHUB_NO_PROXY   proxy for k3s and
#                               containerd (and for the download when online), in the
#                               root-only service environment file (a proxy URL may carry a
#                               password)
#   CONVECTHUB_READY_TIMEOUT    seconds a server may take to become Ready (default 600)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly K3S_ETC=/etc/rancher/k3s
readonly TOKEN_FILE=${K3S_ETC}/cluster-token
readonly BIN_DIR=/usr/local/bin
readonly IMAGES_TARGET=/var/lib/rancher/k3s/agent/images
readonly SYSTEMD_DIR=/etc/systemd/system
readonly PROXY_NAMES=(HTTP_PROXY HTTPS_PROXY NO_PROXY)
# The record of what k3s last started with (common.sh: What has taken effect).
readonly APPLIED=k3s
readonly K3S_RELEASES=https://github.com/k3s-io/k3s/releases

role=${CONVECTHUB_K3S_ROLE:-}
node=${CONVECTHUB_NODE_NAME:-$(hostname)}

unit_name() {
  if [ "$1" = server ]; then echo k3s; else echo k3s-agent; fi
}

# installed_version: the version of the k3s binary on the node, empty when there is none.
installed_version() {
  [ -x "${BIN_DIR}/k3s" ] || return 0
  "${BIN_DIR}/k3s" --version 2>/dev/null | awk 'NR == 1 {print $3}'
}

# proxy_value NAME: the value of CONVECTHUB_<NAME> (empty when unset).
proxy_value() {
  local variable="CONVECTHUB_$1"
  printf '%s' "${!variable:-}"
}

# The proxy lines of the service's environment file, quoted as systemd reads them.
proxy_environment() {
  local name value
  for name in "${PROXY_NAMES[@]}"; do
    value=$(proxy_value "$name")
    [ -z "$value" ] || env_assignment "$name" "$value"
  done
}

check_input() {
  [ "$(id -u)" = 0 ] || fail "k3s-install.sh must run as root"
  case "$role" in
    server | agent) ;;
    *) fail "CONVECTHUB_K3S_ROLE is '${role}': it must be server or agent" ;;
  esac
  [ -n "${CONVECTHUB_K3S_VERSION:-}" ] || fail "CONVECTHUB_K3S_VERSION is not set"
  [ -n "${CONVECTHUB_K3S_CONFIG:-}" ] || fail "CONVECTHUB_K3S_CONFIG is not set"
  [ -n "${CONVECTHUB_K3S_TOKEN:-}" ] || fail "CONVECTHUB_K3S_TOKEN is not set"
  # Values are data (common.sh): each is refused here, before anything changes, if it could
  # change the shape of the file it goes into. config.yaml and registries.yaml come whole
  # from the program's YAML dumper, which quotes every value.
  check_pattern CONVECTHUB_K3S_VERSION "$CONVECTHUB_K3S_VERSION" '^v[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]*$' \
    "a k3s release such as vMAJOR.MINOR.PATCH+k3sN"
  check_line CONVECTHUB_K3S_TOKEN "$CONVECTHUB_K3S_TOKEN"
  check_text CONVECTHUB_K3S_CONFIG "$CONVECTHUB_K3S_CONFIG"
  check_text CONVECTHUB_REGISTRIES "${CONVECTHUB_REGISTRIES:-}"
  check_proxy_settings
  [ -z "${CONVECTHUB_INSTALL_SCRIPT_URL:-}" ] ||
    check_url CONVECTHUB_INSTALL_SCRIPT_URL "$CONVECTHUB_INSTALL_SCRIPT_URL"
  local other
  other=$(unit_name "$([ "$role" = server ] && echo agent || echo server)")
  if [ -f "${SYSTEMD_DIR}/${other}.service" ]; then
    fail "runs k3s as ${other} but is now configured as a ${role}: remove the node from convecthub:nodes, run pulumi up, then add it back with its new role"
  fi
  if [ -n "${CONVECTHUB_BUNDLE_DIR:-}" ]; then
    local file
    for file in k3s install.sh; do
      [ -f "${CONVECTHUB_BUNDLE_DIR}/${file}" ] ||
        fail "the airgap bundle has no ${file} at ${CONVECTHUB_BUNDLE_DIR}: run pulumi up again to copy it"
    done
  fi
}

# release_minor VERSION: "MAJOR MINOR" of a k3s release (vMAJOR.MINOR.PATCH+k3sN).
release_minor() {
  local major minor rest
  IFS=. read -r major minor rest <<<"${1#v}"
  echo "${major} ${minor}"
}

# check_upgrade_path: refuse, before anything changes, a k3s that would move more than one
# Kubernetes minor at once, or back a minor (Kubernetes supports neither): the line names the
# minors to take in between. A node without k3s, or at the same minor, passes.
check_upgrade_path() {
  local running target now_major now_minor then_major then_minor minor steps=""
  running=$(installed_version) || true
  target=$CONVECTHUB_K3S_VERSION
  # No k3s, or one whose version this cannot read: nothing to compare.
  matches "$running" '^v[0-9]+\.[0-9]+\.' || return 0
  read -r now_major now_minor <<<"$(release_minor "$running")"
  read -r then_major then_minor <<<"$(release_minor "$target")"
  if [ "$now_major" != "$then_major" ] || [ "$then_minor" -lt "$now_minor" ]; then
    fail "runs k3s ${running}, a later Kubernetes than the ${target} convecthub:k3s.version asks for, and k3s cannot go back a minor: set convecthub:k3s.version to a v${now_major}.${now_minor} release or later"
  fi
  [ $((then_minor - now_minor)) -gt 1 ] || return 0
  for ((minor = now_minor + 1; minor < then_minor; minor++)); do
    steps="${steps:+${steps}, }v${now_major}.${minor}"
  done
  fail "runs k3s ${running} and convecthub:k3s.version asks for ${target}, $((then_minor - now_minor)) minors on: Kubernetes upgrades one minor at a time, so set convecthub:k3s.version to the newest release of ${steps} in turn (${K3S_RELEASES}), running pulumi up after each, then to ${target}"
}

# write_settings: config.yaml, registries.yaml and the token file; status 0 when any changed.
write_settings() {
  local changed=1
  { mkdir -p "$K3S_ETC" && chmod 0755 "$K3S_ETC"; } || fail "cannot make ${K3S_ETC}"
  write_file "$TOKEN_FILE" 0600 "$CONVECTHUB_K3S_TOKEN" && changed=0
  write_file "${K3S_ETC}/config.yaml" 0600 "$CONVECTHUB_K3S_CONFIG" && changed=0
  write_or_remove "${K3S_ETC}/registries.yaml" 0600 "${CONVECTHUB_REGISTRIES:-}" && changed=0
  return "$changed"
}

# stage_images: the bundle's image tarballs into k3s's import directory; status 0 when any
# was new or different.
stage_images() {
  [ -n "${CONVECTHUB_IMAGES_DIR:-}" ] || return 1
  [ -d "$CONVECTHUB_IMAGES_DIR" ] ||
    fail "the airgap images are not at ${CONVECTHUB_IMAGES_DIR}: run pulumi up again to copy them"
  local changed=1 tarball target
  mkdir -p "$IMAGES_TARGET"
  for tarball in "$CONVECTHUB_IMAGES_DIR"/*; do
    [ -f "$tarball" ] || continue
    target="${IMAGES_TARGET}/$(basename "$tarball")"
    if ! cmp -s "$tarball" "$target"; then
      install -m 0644 "$tarball" "$target" ||
        fail "cannot stage $(basename "$tarball") in ${IMAGES_TARGET}: is the disk full?"
      say "staged image archive $(basename "$tarball")"
      changed=0
    fi
  done
  return "$changed"
}

# needs_install: k3s is missing, another version, or (airgap) another binary than the bundle's.
needs_install() {
  [ -f "${SYSTEMD_DIR}/$(unit_name "$role").service" ] || return 0
  [ "$(installed_version)" = "$CONVECTHUB_K3S_VERSION" ] || return 0
  if [ -n "${CONVECTHUB_BUNDLE_DIR:-}" ]; then
    cmp -s "${CONVECTHUB_BUNDLE_DIR}/k3s" "${BIN_DIR}/k3s" || return 0
  fi
  return 1
}

fetch_install_script() {
  local url=${CONVECTHUB_INSTALL_SCRIPT_URL:-https://get.k3s.io} target=$1
  curl -sfL --retry 3 --connect-timeout 20 --max-time 120 -o "$target" "$url" ||
    fail "cannot download the k3s install script from ${url}: check the node's internet access and convecthub:os httpsProxy, or install from an airgap bundle (convecthub:registry.bundleDir)"
}

run_install_script() {
  local script work
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '${work}'" RETURN
  if [ -n "${CONVECTHUB_BUNDLE_DIR:-}" ]; then
    install -m 0755 "${CONVECTHUB_BUNDLE_DIR}/k3s" "${BIN_DIR}/k3s"
    script="${CONVECTHUB_BUNDLE_DIR}/install.sh"
  else
    script="${work}/install.sh"
    fetch_install_script "$script"
  fi
  say "installing k3s ${CONVECTHUB_K3S_VERSION} as ${role}"
  local -a settings=(
    "INSTALL_K3S_VERSION=${CONVECTHUB_K3S_VERSION}"
    "INSTALL_K3S_EXEC=${role}"
    "INSTALL_K3S_SKIP_START=true"
  )
  [ -z "${CONVECTHUB_BUNDLE_DIR:-}" ] || settings+=("INSTALL_K3S_SKIP_DOWNLOAD=true")
  # The install script copies the proxy variables it sees into the service's environment file;
  # no K3S_* variable reaches it (the token is in the token file).
  local name value
  for name in "${PROXY_NAMES[@]}"; do
    value=$(proxy_value "$name")
    [ -z "$value" ] || settings+=("${name}=${value}")
  done
  if ! env -i PATH="$PATH" HOME=/root "${settings[@]}" sh "$script" >"${work}/log" 2>&1; then
    tail -n 20 "${work}/log" >&2
    fail "the k3s install script failed (its last lines are above): fix the cause and run pulumi up again"
  fi
}

# write_service_environment: the proxy settings k3s and containerd start with (root-only: a
# proxy URL may carry a password).
write_service_environment() {
  local lines
  lines=$(proxy_environment) || exit 1
  write_file "${SYSTEMD_DIR}/$(unit_name "$role").service.env" 0600 "$lines"
}

# started_with: a digest of what the service starts with: its unit, environment, settings,
# binary and the image archives it imports.
started_with() {
  local unit images
  unit=$(unit_name "$role")
  images=$(find "$IMAGES_TARGET" -maxdepth 1 -type f -printf '%f %s %T@\n' 2>/dev/null | sort) || true
  digest "$TOKEN_FILE" "${K3S_ETC}/config.yaml" "${K3S_ETC}/registries.yaml" \
    "${SYSTEMD_DIR}/${unit}.service" "${SYSTEMD_DIR}/${unit}.service.env" "${BIN_DIR}/k3s" \
    "images: ${images}"
}

unit_active() {
  local state
  state=$(systemctl is-active "$1" 2>/dev/null || true)
  [ "$state" != failed ] || fail "$1 failed to start: on the node, see journalctl -u $1"
  [ "$state" = active ]
}

# start_unit UNIT: (re)start it without letting systemctl block (k3s's units have no start
# timeout), then wait until systemd reports it active.
start_unit() {
  local unit=$1 timeout=${CONVECTHUB_READY_TIMEOUT:-600}
  systemctl restart --no-block "$unit" ||
    fail "systemctl could not restart ${unit}: on the node, see journalctl -u ${unit}"
  wait_until "$timeout" unit_active "$unit" ||
    fail "${unit} did not start within ${timeout} s: on the node, see journalctl -u ${unit}"
}

server_ready() {
  [ "$("${BIN_DIR}/k3s" kubectl get node "$node" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)" = True ]
}

wait_until_ready() {
  local timeout=${CONVECTHUB_READY_TIMEOUT:-600}
  say "waiting up to ${timeout} s for ${node} to be Ready"
  wait_until "$timeout" server_ready ||
    fail "k3s did not become Ready within ${timeout} s: on the node, see journalctl -u $(unit_name "$role")"
}

apply() {
  check_input
  check_upgrade_path
  local unit changed=false last now
  unit=$(unit_name "$role")
  last=$(applied "$APPLIED")
  # No record yet: say so before anything changes, so that a run cut off from here on is
  # finished by the next one (which then finds "pending", not nothing).
  [ -n "$last" ] || record_applied "$APPLIED" pending
  write_settings && changed=true
  stage_images && changed=true
  if needs_install; then
    run_install_script
    changed=true
  fi
  write_service_environment && changed=true
  now=$(started_with) || exit 1
  if [ -z "$last" ] && [ "$changed" = false ] && systemctl is-active --quiet "$unit"; then
    # In place and running from before this record was kept: there is nothing to restart.
    record_applied "$APPLIED" "$now"
    last=$now
  fi
  if [ "$last" != "$now" ]; then
    systemctl daemon-reload || fail "systemctl daemon-reload failed: on the node, see journalctl -b"
    systemctl enable "$unit" >/dev/null 2>&1 || fail "systemctl could not enable ${unit}"
    say "starting ${unit}"
    start_unit "$unit"
    # Only now has it taken effect.
    record_applied "$APPLIED" "$now"
  elif ! systemctl is-active --quiet "$unit"; then
    say "${unit} was not running: starting it"
    start_unit "$unit"
  fi
  [ "$role" != server ] || wait_until_ready
}

remove() {
  [ "$(id -u)" = 0 ] || fail "k3s-install.sh must run as root"
  local uninstall
  for uninstall in "${BIN_DIR}/k3s-uninstall.sh" "${BIN_DIR}/k3s-agent-uninstall.sh"; do
    if [ -x "$uninstall" ]; then
      say "running $(basename "$uninstall")"
      "$uninstall" >/dev/null 2>&1 || fail "$(basename "$uninstall") failed: run it on the node by hand to see why"
    fi
  done
  remove_file "$TOKEN_FILE" || true
  remove_file "${K3S_ETC}/config.yaml" || true
  remove_file "${K3S_ETC}/registries.yaml" || true
  forget_applied "$APPLIED"
  rmdir "$K3S_ETC" 2>/dev/null || true
  if [ -n "${CONVECTHUB_BUNDLE_ROOT:-}" ] && [ -d "$CONVECTHUB_BUNDLE_ROOT" ]; then
    rm -rf "$CONVECTHUB_BUNDLE_ROOT"
    say "removed ${CONVECTHUB_BUNDLE_ROOT}"
  fi
}

main() {
  exec </dev/null
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: k3s-install.sh apply|remove" ;;
  esac
}

main "$@"
