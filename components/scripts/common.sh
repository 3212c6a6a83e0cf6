#!/usr/bin/env bash
# Functions the node scripts share (sourced, never run). A script run by hand sources this file
# from its own directory; under Pulumi, components/remote_script.py sends it ahead of the
# script on stdin, so the node never needs a copy.

# say MESSAGE: one line on stderr, naming the node.
say() { echo "convecthub: node ${CONVECTHUB_NODE_NAME:-$(hostname)}: $*" >&2; }

# fail MESSAGE: say it and stop with status 1. Inside $(...) it stops only that subshell: a
# caller that makes a value with a function that may fail writes `value=$(f) || exit 1`.
fail() {
  say "$*"
  exit 1
}

# ---- Values are data, never code ---------------------------------------------------------
# Every value a script puts into a file that root or a service reads goes through one of the
# checks or escapes below, one per format, whatever the program (or a person running a
# script by hand) handed it. A check refuses a value with one line that names the variable,
# never the value (it may be a secret), before anything on the node changes.

# matches VALUE ERE: whether all of VALUE matches the extended regular expression.
matches() {
  [[ $1 =~ $2 ]]
}

# check_line NAME VALUE: VALUE holds no control character. Every file written here is read
# line by line, so a newline (or a carriage return, which some readers take for one) would
# add a line of the value's choosing.
check_line() {
  case "$2" in
    *[[:cntrl:]]*)
      fail "${1} holds a newline or another control character: refused, as it would add lines to what root reads; give it on one line"
      ;;
  esac
}

# check_text NAME VALUE: a document (YAML, JSON) of lines: no control character but newline
# and tab. The program makes these with a YAML or JSON dumper, which escapes every other one.
check_text() {
  local stripped=${2//[$'\n\t']/}
  case "$stripped" in
    *[[:cntrl:]]*)
      fail "${1} holds a control character besides newline and tab: refused, as its reader could take it for a line break"
      ;;
  esac
}

# check_pattern NAME VALUE ERE WHAT: refuse VALUE unless all of it matches ERE; WHAT says
# what it must be.
check_pattern() {
  check_line "$1" "$2"
  matches "$2" "$3" || fail "${1} is not ${4}: refused"
}

# check_url NAME VALUE: an absolute URL of RFC 3986's characters, without the ones any of
# the formats below would have to escape (quotes, backslash, backtick, spaces, <>{}|^) and
# without # (a comment in an apt source line).
check_url() {
  check_pattern "$1" "$2" "^[A-Za-z][A-Za-z0-9+.-]*://[][A-Za-z0-9._~:/?@!\$&'()*+,;=%-]+$" \
    "a URL (scheme://host...) made of URL characters only, without a #fragment"
}

# has_userinfo URL: whether URL carries user[:password]@ before its host.
has_userinfo() {
  matches "$1" '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@'
}

# check_host NAME VALUE: a DNS name or an IP address (an IPv6 zone id allowed): no space,
# quote, comma or anything else that a config line would read as a separator or a comment.
check_host() {
  check_pattern "$1" "$2" '^[A-Za-z0-9_:]([A-Za-z0-9._:%-]*[A-Za-z0-9_.])?$' \
    "a DNS name or an IP address"
}

# check_ip NAME VALUE: an IPv4 or IPv6 address (the zone id of a link-local IPv6 allowed).
check_ip() {
  check_pattern "$1" "$2" \
    '^(([0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9_.-]+)?)$' \
    "an IP address"
}

# check_label NAME VALUE: a lowercase RFC 1123 label (a node name, a hostname).
check_label() {
  check_pattern "$1" "$2" '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' \
    "a lowercase RFC 1123 label (letters, digits and inner dashes, at most 63)"
}

# check_no_proxy NAME VALUE: a comma-separated no-proxy list (names, .domains, addresses,
# CIDRs, *), nothing that would end a quoted string or a line.
check_no_proxy() {
  check_pattern "$1" "$2" '^[][A-Za-z0-9._:/%*,-]+$' \
    "a comma-separated list of hosts, domains, addresses and CIDRs"
}

# check_proxy_settings: the proxy a script passes on (CONVECTHUB_HTTP_PROXY, _HTTPS_PROXY: URLs;
# CONVECTHUB_NO_PROXY: a no-proxy list), each checked when it is set.
check_proxy_settings() {
  [ -z "${CONVECTHUB_HTTP_PROXY:-}" ] || check_url CONVECTHUB_HTTP_PROXY "$CONVECTHUB_HTTP_PROXY"
  [ -z "${CONVECTHUB_HTTPS_PROXY:-}" ] || check_url CONVECTHUB_HTTPS_PROXY "$CONVECTHUB_HTTPS_PROXY"
  [ -z "${CONVECTHUB_NO_PROXY:-}" ] || check_no_proxy CONVECTHUB_NO_PROXY "$CONVECTHUB_NO_PROXY"
}

# pam_env_line NAME VALUE: NAME=VALUE for /etc/environment, which pam_env reads without any
# escape and scripts often source: only values that need no quoting are taken.
pam_env_line() {
  check_pattern "$1" "$2" '^[][A-Za-z0-9._~:/?@%+,=*-]+$' \
    "plain enough for /etc/environment (no quotes, spaces, \$, ;, & or other shell characters)"
  printf '%s=%s\n' "$1" "$2"
}

# env_assignment NAME VALUE: NAME=VALUE for a systemd EnvironmentFile= (which reads it the way
# sh would): bare when VALUE needs no quoting, else in double quotes with \ " $ ` escaped.
env_assignment() {
  local name=$1 value=$2
  check_line "$name" "$value"
  if ! matches "$value" '^[][A-Za-z0-9._~:/?@%+,=*-]*$'; then
    value=${value//\\/\\\\}
    value=${value//\"/\\\"}
    value=${value//\$/\\\$}
    value=${value//\`/\\\`}
    value="\"${value}\""
  fi
  printf '%s=%s\n' "$name" "$value"
}

# systemd_environment NAME VALUE: an Environment= line of a unit or drop-in, quoted as
# systemd reads it: \ and " escaped, % doubled (else a specifier).
systemd_environment() {
  local name=$1 value=$2
  check_line "$name" "$value"
  value=${value//\\/\\\\}
  value=${value//\"/\\\"}
  value=${value//%/%%}
  printf 'Environment="%s=%s"\n' "$name" "$value"
}

# yaml_url URL: a URL (check_url) as a YAML scalar: plain when YAML reads it back as the same
# string, else double-quoted with JSON's escapes (which YAML shares).
yaml_url() {
  local value=$1
  if matches "$value" '^[A-Za-z][A-Za-z0-9+.-]*://[][A-Za-z0-9._~:/?@%+=-]*$' && [[ $value != *: ]]; then
    printf '%s' "$value"
    return
  fi
  value=${value//\\/\\\\}
  value=${value//\"/\\\"}
  printf '"%s"' "$value"
}

# fstab_field NAME VALUE: one field of an fstab line, escaped as libmount reads it (space,
# tab, backslash and # as octal); empty, or with another control character, it is refused.
fstab_field() {
  local name=$1 value=$2
  [ -n "$value" ] || fail "${name} is empty: refused, as it would shift the fields of /etc/fstab"
  check_line "$name" "${value//$'\t'/ }"
  value=${value//\\/\\134}
  value=${value//$'\t'/\\011}
  value=${value// /\\040}
  value=${value//#/\\043}
  printf '%s' "$value"
}

# hosts_line NAME ADDRESS WHERE: "ADDRESS<tab>NAME" for /etc/hosts, NAME a label and ADDRESS
# an IP address; WHERE names the setting they came from for a refusal.
hosts_line() {
  check_label "${3}: a name" "$1"
  check_ip "${3}: the address of ${1}" "$2"
  printf '%s\t%s\n' "$2" "$1"
}

# ---- Files: all or nothing ---------------------------------------------------------------

# holds PATH CONTENT: whether PATH is a file whose text is CONTENT.
holds() {
  [ -f "$1" ] && [ "$(cat -- "$1")" = "$2" ]
}

# replace_file PATH MODE CONTENT: PATH holds CONTENT (and a final newline) with MODE, or the
# script stops with one line naming PATH and PATH is as it was: the text goes to a temporary
# file beside it, is flushed to disk, and only then renamed over PATH. Says nothing else.
replace_file() {
  local path=$1 mode=$2 content=$3 dir tmp error
  dir=$(dirname -- "$path")
  error=$(mkdir -p -- "$dir" 2>&1) || fail "cannot write ${path}: ${error##*: }"
  tmp=$(mktemp -- "${path}.convecthub.XXXXXX" 2>&1) || fail "cannot write ${path}: ${tmp##*: }"
  if ! error=$(
    {
      chmod "$mode" "$tmp" &&
        printf '%s\n' "$content" >"$tmp" &&
        sync -- "$tmp" &&
        mv -f -- "$tmp" "$path"
    } 2>&1
  ); then
    rm -f -- "$tmp"
    fail "cannot write ${path} (${error##*: }): it is left as it was"
  fi
  error=$(sync -- "$dir" 2>&1) || fail "wrote ${path} but cannot flush its directory (${error##*: })"
}

# write_file PATH MODE CONTENT: replace PATH atomically (replace_file), only when CONTENT
# differs; status 0 when it wrote, 1 when PATH already held CONTENT (its mode is then set to
# MODE). Never prints CONTENT; a write that fails stops the script.
write_file() {
  local path=$1 mode=$2 content=$3 error
  if holds "$path" "$content"; then
    if [ "$(stat -c %a -- "$path")" != "${mode#0}" ]; then
      error=$(chmod "$mode" -- "$path" 2>&1) || fail "cannot set the mode of ${path} to ${mode}: ${error##*: }"
    fi
    return 1
  fi
  replace_file "$path" "$mode" "$content"
  say "wrote ${path}"
}

# remove_file PATH: delete PATH if it is there; status 1 when it was not.
remove_file() {
  [ -e "$1" ] || return 1
  local error
  error=$(rm -f -- "$1" 2>&1) || fail "cannot remove $1: ${error##*: }"
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

# set_block FILE CONTENT: write FILE with its managed block set to CONTENT (gone if empty),
# keeping its mode; status 0 when FILE changed, 1 when it did not or does not exist.
set_block() {
  local file=$1 content=$2 mode text
  [ -f "$file" ] || return 1
  mode=$(stat -c '%a' -- "$file") || fail "cannot read the mode of ${file}"
  text=$(with_block "$file" "$content") || fail "cannot read ${file}: it is left as it was"
  write_file "$file" "$mode" "$text"
}

# ---- What has taken effect -----------------------------------------------------------------
# A script that must restart or mount something for a change to take effect records what it
# applied only once that is done, under the state directory; the next run compares what is
# on the node with that record, so a run cut off between writing a file and restarting is
# finished by the next one, even though the file holds the new text already.

applied_marker() { echo "${CONVECTHUB_STATE_DIR:-/var/lib/convecthub}/applied/$1"; }

# applied NAME: what the record NAME holds ("" when there is none).
applied() {
  local marker
  marker=$(applied_marker "$1")
  if [ -e "$marker" ]; then cat -- "$marker"; fi
}

# record_applied NAME VALUE: the record NAME holds VALUE (root-only).
record_applied() {
  replace_file "$(applied_marker "$1")" 0600 "$2"
}

# forget_applied NAME: drop the record NAME (and its directory when it is the last).
forget_applied() {
  local marker
  marker=$(applied_marker "$1")
  [ ! -e "$marker" ] || rm -f -- "$marker" || fail "cannot remove ${marker}"
  rmdir -- "$(dirname -- "$marker")" 2>/dev/null || true
}

# digest ITEM...: one sha256 over files and words: an item that starts with / is a path and
# counts by its content (a missing file as missing), any other item by its text.
digest() {
  local item sums="" sum
  for item in "$@"; do
    if [[ $item != /* ]]; then
      sum="text ${item}"
    elif [ -f "$item" ]; then
      sum=$(sha256sum -- "$item") || fail "cannot read ${item}"
    else
      sum="missing ${item}"
    fi
    sums+="${sum}"$'\n'
  done
  sum=$(printf '%s' "$sums" | sha256sum)
  echo "${sum%% *}"
}

# apt_repository LIST KEYRING KEY_URL LINE SETTING: the apt source file LIST holding LINE,
# whose signing key is fetched once from KEY_URL into KEYRING (dearmored); SETTING names the
# config key of KEY_URL for the error. Status 0 when it changed anything, 1 when all was there.
# The caller checks KEY_URL and the values in LINE (check_url) first.
apt_repository() {
  local list=$1 keyring=$2 key_url=$3 line=$4 setting=$5 changed=1
  check_line "the apt source line of ${list}" "$line"
  if [ ! -s "$keyring" ]; then
    local key tmp error
    key=$(mktemp) || fail "cannot make a temporary file for the signing key ${key_url}"
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 120 -o "$key" "$key_url" ||
      fail "cannot download the signing key ${key_url}: set ${setting} to the site's mirror of it"
    # Dearmored into a file beside the keyring, renamed when complete: a run cut off (or a
    # full disk) never leaves half a key that later runs would take for the key.
    error=$(mkdir -p -- "$(dirname -- "$keyring")" 2>&1) || fail "cannot write ${keyring}: ${error##*: }"
    tmp=$(mktemp -- "${keyring}.convecthub.XXXXXX" 2>&1) || fail "cannot write ${keyring}: ${tmp##*: }"
    if ! error=$(gpg --batch --yes --dearmor -o "$tmp" "$key" 2>&1) || [ ! -s "$tmp" ]; then
      rm -f -- "$tmp" "$key"
      fail "cannot dearmor the signing key from ${key_url} into ${keyring} (${error##*: }): set ${setting} to the site's mirror of it"
    fi
    rm -f -- "$key"
    if ! error=$({ chmod 0644 "$tmp" && sync -- "$tmp" && mv -f -- "$tmp" "$keyring"; } 2>&1); then
      rm -f -- "$tmp"
      fail "cannot write ${keyring} (${error##*: }): it is left as it was"
    fi
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
