#!/usr/bin/env bash
# Functions the node scripts share (sourced, never run). A script run by hand sources this file
# from its own directory; under Pulumi, components/remote_script.py sends it ahead of the
# script on stdin, so the node never needs a copy.

# say MESSAGE: one line on stderr, naming the node.
say() { echo "convecthub: node ${CONVECTHUB_NODE_NAME:-$(hostname)}: $*" >&2; }

# fail MESSAGE: say it and stop with status 1.
fail() {
  say "$*"
  exit 1
}

# write_file PATH MODE CONTENT: replace PATH atomically, only when CONTENT differs; status 0
# when it wrote, 1 when PATH already held CONTENT. Never prints CONTENT.
write_file() {
  local path=$1 mode=$2 content=$3
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
    [ "$(stat -c %a "$path")" = "${mode#0}" ] || chmod "$mode" "$path"
    return 1
  fi
  mkdir -p "$(dirname "$path")"
  local tmp
  tmp=$(mktemp "${path}.convecthub.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
  say "wrote ${path}"
}

# remove_file PATH: delete PATH if it is there; status 1 when it was not.
remove_file() {
  [ -e "$1" ] || return 1
  rm -f "$1"
  say "removed $1"
}

# write_or_remove PATH MODE CONTENT: write_file, or remove_file when CONTENT is empty; status 0
# when PATH changed.
write_or_remove() {
  if [ -n "$3" ]; then write_file "$@"; else remove_file "$1"; fi
}

# with_block FILE CONTENT: FILE's text with the managed block set to CONTENT (dropped if empty).
with_block() {
  local file=$1 content=$2
  local begin="# BEGIN convecthub (managed by convecthub-infra; edits here are overwritten)"
  BLOCK_CONTENT=$content awk -v begin="$begin" -v end="# END convecthub" '
    BEGIN { content = ENVIRON["BLOCK_CONTENT"] }
    $0 == begin { skipping = 1; next }
    $0 == end { skipping = 0; next }
    !skipping { print }
    END { if (content != "") { print begin; print content; print end } }
  ' "$file"
}

# set_block FILE CONTENT: write FILE with its managed block set to CONTENT (gone if empty);
# status 0 when FILE changed, 1 when it did not or does not exist.
set_block() {
  local file=$1 content=$2
  [ -f "$file" ] || return 1
  local mode
  mode=$(stat -c '%a' "$file")
  write_file "$file" "$mode" "$(with_block "$file" "$content")"
}

# apt_repository LIST KEYRING KEY_URL LINE SETTING: the apt source file LIST holding LINE,
# whose signing key is fetched once from KEY_URL into KEYRING (dearmored); SETTING names the
# config key of KEY_URL for the error. Status 0 when it changed anything, 1 when all was there.
apt_repository() {
  local list=$1 keyring=$2 key_url=$3 line=$4 setting=$5 changed=1
  if [ ! -s "$keyring" ]; then
    local key
    key=$(mktemp)
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 120 -o "$key" "$key_url" ||
      fail "cannot download the signing key ${key_url}: set ${setting} to the site's mirror of it"
    mkdir -p "$(dirname "$keyring")"
    gpg --batch --yes --dearmor -o "$keyring" "$key"
    rm -f "$key"
    say "added the key ${key_url}"
    changed=0
  fi
  write_file "$list" 0644 "$line" && changed=0
  return "$changed"
}

# wait_until SECONDS COMMAND [ARGS...]: run COMMAND every 2 s until it succeeds (status 0) or
# SECONDS have passed (status 1).
wait_until() {
  local timeout=$1 waited=0
  shift
  until "$@"; do
    [ "$waited" -lt "$timeout" ] || return 1
    sleep 2
    waited=$((waited + 2))
  done
}

# os_release_field NAME: a field of the machine's os-release (CONVECTHUB_OS_RELEASE for tests).
os_release_field() {
  local field=$1
  (
    # shellcheck disable=SC1090,SC1091 # the os-release file of the machine
    . "${CONVECTHUB_OS_RELEASE:-/etc/os-release}" 2>/dev/null || true
    printf '%s' "${!field:-}"
  )
}

# pci_devices: "slot class vendor device" per PCI device, from lspci when it is there, else
# from sysfs.
pci_devices() {
  if command -v lspci >/dev/null 2>&1; then
    lspci -Dn 2>/dev/null | awk '{sub(":$", "", $2); split($3, id, ":"); print $1, $2, id[1], id[2]}'
    return
  fi
  local dir class vendor device
  for dir in /sys/bus/pci/devices/*; do
    [ -r "$dir/class" ] || continue
    class=$(cat "$dir/class")
    vendor=$(cat "$dir/vendor")
    device=$(cat "$dir/device")
    echo "${dir##*/} ${class:2:4} ${vendor#0x} ${device#0x}"
  done
}
