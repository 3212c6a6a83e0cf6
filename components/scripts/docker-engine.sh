#!/usr/bin/env bash
# Docker Engine on a node whose site wants it (convecthub:os.docker), beside k3s: k3s keeps
# its own containerd (/run/k3s/containerd) and never uses this one.
#
#   docker-engine.sh apply    unless a Docker engine is there already (then it is configured,
#                             never replaced), add Docker's apt repository (or the site's
#                             mirror of it) and install docker-ce, docker-ce-cli and
#                             containerd.io; write daemon.json and the proxy drop-in (root-only:
#                             a proxy URL may carry a password); enable docker and restart it
#                             when they differ from what it last started with (a record under
#                             /var/lib/convecthub/applied, written once it answers after the
#                             restart: a run cut off before is finished by the next); wait
#                             until it answers.
#   docker-engine.sh remove   take back daemon.json (restoring the one the node had before,
#                             kept as daemon.json.convecthub-orig), the proxy drop-in and the
#                             repository; the packages stay, like os-prep's.
#
# Environment (root is required):
#   CONVECTHUB_NODE_NAME           the node's name (messages)
#   CONVECTHUB_DOCKER_REPO         the repository's base URL (the seeds' docker_repo)
#   CONVECTHUB_DOCKER_KEY_URL      its signing key
#   CONVECTHUB_DOCKER_DAEMON_JSON  the whole daemon.json
#   CONVECTHUB_HTTP_PROXY, CONVECTHUB_HTTPS_PROXY, CONVECTHUB_NO_PROXY   proxy for dockerd
#   CONVECTHUB_DOCKER_START_TIMEOUT  seconds docker may take to answer (default 90)
#   CONVECTHUB_OS_RELEASE          default /etc/os-release
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly SOURCE_FILE=/etc/apt/sources.list.d/convecthub-docker.list
readonly KEYRING=/usr/share/keyrings/convecthub-docker.gpg
readonly DAEMON_JSON=/etc/docker/daemon.json
readonly ORIGINAL_DAEMON_JSON=/etc/docker/daemon.json.convecthub-orig
# Present while daemon.json is this program's (it records that the node's own was kept aside).
readonly OWNED_MARK=/etc/docker/.convecthub-owns-daemon-json
readonly PROXY_DROPIN=/etc/systemd/system/docker.service.d/convecthub-proxy.conf
readonly PACKAGES=(docker-ce docker-ce-cli containerd.io)
readonly START_TIMEOUT=${CONVECTHUB_DOCKER_START_TIMEOUT:-90}
# The record of what docker last started with (common.sh: What has taken effect).
readonly APPLIED=docker

# Values are data (common.sh): refused here, before anything changes, if they could change the
# shape of the file they go into. daemon.json comes whole from the program's JSON dumper.
check_input() {
  check_url CONVECTHUB_DOCKER_REPO "${CONVECTHUB_DOCKER_REPO:?}"
  check_url CONVECTHUB_DOCKER_KEY_URL "${CONVECTHUB_DOCKER_KEY_URL:?}"
  check_text CONVECTHUB_DOCKER_DAEMON_JSON "${CONVECTHUB_DOCKER_DAEMON_JSON:?}"
  check_proxy_settings
}

install_engine() {
  local codename
  codename=$(os_release_field VERSION_CODENAME)
  [ -n "$codename" ] ||
    fail "its os-release names no VERSION_CODENAME, which Docker's repository is organised by: install Docker by hand and set installDocker: false for it in convecthub:nodes"
  check_pattern "VERSION_CODENAME of its os-release" "$codename" '^[a-z0-9]+$' "a release codename"
  apt_repository "$SOURCE_FILE" "$KEYRING" "${CONVECTHUB_DOCKER_KEY_URL:?}" \
    "deb [arch=$(dpkg --print-architecture) signed-by=${KEYRING}] ${CONVECTHUB_DOCKER_REPO:?} ${codename} stable" \
    "convecthub:os docker.keyUrl" || true
  say "installing ${PACKAGES[*]}"
  timeout --kill-after=10 600 apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null ||
    fail "apt-get update failed with Docker's repository ${CONVECTHUB_DOCKER_REPO}: check it, or set convecthub:os docker.repository to the site's mirror"
  DEBIAN_FRONTEND=noninteractive timeout --kill-after=10 1800 \
    apt-get -q -o DPkg::Lock::Timeout=300 -y install "${PACKAGES[@]}" >/dev/null ||
    fail "could not install ${PACKAGES[*]} from ${CONVECTHUB_DOCKER_REPO}"
}

# The proxy dockerd pulls through, as a drop-in of docker.service (empty without a proxy),
# each value quoted as systemd reads it.
proxy_dropin() {
  [ -n "${CONVECTHUB_HTTP_PROXY:-}${CONVECTHUB_HTTPS_PROXY:-}" ] || return 0
  echo "[Service]"
  [ -z "${CONVECTHUB_HTTP_PROXY:-}" ] || systemd_environment HTTP_PROXY "$CONVECTHUB_HTTP_PROXY"
  [ -z "${CONVECTHUB_HTTPS_PROXY:-}" ] || systemd_environment HTTPS_PROXY "$CONVECTHUB_HTTPS_PROXY"
  [ -z "${CONVECTHUB_NO_PROXY:-}" ] || systemd_environment NO_PROXY "$CONVECTHUB_NO_PROXY"
}

# write_config: daemon.json and the proxy drop-in; status 0 when either changed.
write_config() {
  local changed=1 dropin
  dropin=$(proxy_dropin) || exit 1
  if [ ! -e "$OWNED_MARK" ]; then
    if [ -e "$DAEMON_JSON" ]; then
      local kept=${ORIGINAL_DAEMON_JSON}.convecthub-new
      if ! { cp -p -- "$DAEMON_JSON" "$kept" && sync -- "$kept" && mv -f -- "$kept" "$ORIGINAL_DAEMON_JSON"; } 2>/dev/null; then
        rm -f -- "$kept"
        fail "cannot keep the node's own daemon.json as ${ORIGINAL_DAEMON_JSON}: is the disk full?"
      fi
      say "kept the node's own daemon.json as ${ORIGINAL_DAEMON_JSON}"
    fi
    replace_file "$OWNED_MARK" 0644 ""
  fi
  write_file "$DAEMON_JSON" 0644 "$CONVECTHUB_DOCKER_DAEMON_JSON" && changed=0
  write_or_remove "$PROXY_DROPIN" 0600 "$dropin" && changed=0
  return "$changed"
}

docker_answers() {
  docker info >/dev/null 2>&1
}

apply() {
  check_input
  if command -v dockerd >/dev/null 2>&1; then
    say "a Docker engine is installed: configuring it, not replacing it"
  else
    install_engine
  fi
  local last changed=false now
  last=$(applied "$APPLIED")
  # No record yet: say so before anything changes, so that a run cut off from here on is
  # finished by the next one.
  [ -n "$last" ] || record_applied "$APPLIED" pending
  write_config && changed=true
  now=$(digest "$DAEMON_JSON" "$PROXY_DROPIN") || exit 1
  if [ -z "$last" ] && [ "$changed" = false ] && systemctl is-active --quiet docker.service; then
    # In place and running from before this record was kept: there is nothing to restart.
    record_applied "$APPLIED" "$now"
    last=$now
  fi
  systemctl enable --quiet docker.service || fail "systemctl could not enable docker.service"
  if [ "$last" != "$now" ]; then
    systemctl daemon-reload || fail "systemctl daemon-reload failed: on the node, see journalctl -b"
  fi
  if [ "$last" != "$now" ] || ! systemctl is-active --quiet docker.service; then
    systemctl restart docker.service ||
      fail "docker did not start with its new daemon.json: see journalctl -u docker on it"
  fi
  wait_until "$START_TIMEOUT" docker_answers ||
    fail "docker does not answer ${START_TIMEOUT} s after starting: see journalctl -u docker on it"
  # Only now has it taken effect.
  [ "$last" = "$now" ] || record_applied "$APPLIED" "$now"
}

remove() {
  local changed=no
  if [ -e "$OWNED_MARK" ]; then
    if [ -e "$ORIGINAL_DAEMON_JSON" ]; then
      mv -f -- "$ORIGINAL_DAEMON_JSON" "$DAEMON_JSON" ||
        fail "cannot put the node's own daemon.json back from ${ORIGINAL_DAEMON_JSON}"
      say "restored the node's own daemon.json"
    else
      remove_file "$DAEMON_JSON" || true
    fi
    rm -f -- "$OWNED_MARK" || fail "cannot remove ${OWNED_MARK}"
    changed=yes
  fi
  remove_file "$PROXY_DROPIN" && changed=yes
  forget_applied "$APPLIED"
  remove_file "$SOURCE_FILE" || true
  remove_file "$KEYRING" || true
  if [ "$changed" = yes ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet docker.service; then
      systemctl restart docker.service || say "docker did not restart with its earlier settings: see journalctl -u docker on it"
    fi
  fi
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "docker-engine.sh must run as root"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: docker-engine.sh apply|remove" ;;
  esac
}

main "$@"
