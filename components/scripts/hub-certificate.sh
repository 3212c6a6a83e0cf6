#!/usr/bin/env bash
# The hub's self-signed TLS certificate, for a site that gives none: made once on the first
# server and kept there, so every `pulumi up` serves the same one; made again only when the
# names it must cover change (or it is within 30 days of expiring). Prints
# {"certificate": PEM, "key": PEM} on stdout, which the program keeps secret.
#
#   hub-certificate.sh apply    make (or reuse) the certificate; print it with its key
#   hub-certificate.sh remove   delete them
#
# Environment (root is required):
#   CONVECTHUB_NODE_NAME      the node's name (messages)
#   CONVECTHUB_HUB_NAMES      comma-separated addresses and DNS names the hub is reached by;
#                             the first is the certificate's subject
#   CONVECTHUB_HUB_TLS_DIR    where they are kept (default /var/lib/convecthub/hub-tls)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

readonly TLS_DIR=${CONVECTHUB_HUB_TLS_DIR:-/var/lib/convecthub/hub-tls}
readonly DAYS=3650
readonly RENEW_SECONDS=$((30 * 24 * 3600))

# subject_alt_names NAMES: openssl's subjectAltName for comma-separated names (IP: or DNS:).
subject_alt_names() {
  local name entries=() list=()
  IFS=, read -r -a list <<<"$1"
  for name in "${list[@]}"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
      entries+=("IP:${name}")
    else
      entries+=("DNS:${name}")
    fi
  done
  (
    IFS=,
    echo "${entries[*]}"
  )
}

current() {
  [ -s "${TLS_DIR}/tls.crt" ] && [ -s "${TLS_DIR}/tls.key" ] &&
    [ "$(cat "${TLS_DIR}/names" 2>/dev/null)" = "$CONVECTHUB_HUB_NAMES" ] &&
    openssl x509 -checkend "$RENEW_SECONDS" -noout -in "${TLS_DIR}/tls.crt" >/dev/null
}

make_certificate() {
  local names=$CONVECTHUB_HUB_NAMES
  { mkdir -p "$TLS_DIR" && chmod 0700 "$TLS_DIR"; } || fail "cannot make ${TLS_DIR}"
  openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days "$DAYS" \
    -subj "/O=ConvectHub/CN=${names%%,*}" \
    -addext "subjectAltName=$(subject_alt_names "$names")" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "${TLS_DIR}/tls.key.new" -out "${TLS_DIR}/tls.crt.new" 2>/dev/null ||
    fail "openssl could not make the hub's certificate: check that openssl is installed on it"
  {
    chmod 0600 "${TLS_DIR}/tls.key.new" && sync -- "${TLS_DIR}/tls.key.new" "${TLS_DIR}/tls.crt.new" &&
      mv -f -- "${TLS_DIR}/tls.key.new" "${TLS_DIR}/tls.key" &&
      mv -f -- "${TLS_DIR}/tls.crt.new" "${TLS_DIR}/tls.crt"
  } || fail "cannot put the hub's certificate in ${TLS_DIR}: is the disk full?"
  # Written last: until it is, the next run makes the certificate again.
  replace_file "${TLS_DIR}/names" 0600 "$names"
  say "made a self-signed certificate for ${names}"
}

# json_string FILE: the file's text as a JSON string.
json_string() {
  local text
  text=$(cat "$1")
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  printf '"%s"' "${text//$'\n'/\\n}"
}

apply() {
  [ -n "${CONVECTHUB_HUB_NAMES:-}" ] || fail "CONVECTHUB_HUB_NAMES is empty"
  # Each name goes into openssl's subject and subjectAltName, where / and , are separators.
  local name list=()
  check_line CONVECTHUB_HUB_NAMES "$CONVECTHUB_HUB_NAMES"
  IFS=, read -r -a list <<<"$CONVECTHUB_HUB_NAMES"
  for name in "${list[@]}"; do check_host "CONVECTHUB_HUB_NAMES (a name)" "$name"; done
  current || make_certificate
  printf '{"certificate": %s, "key": %s}\n' \
    "$(json_string "${TLS_DIR}/tls.crt")" "$(json_string "${TLS_DIR}/tls.key")"
}

remove() {
  rm -rf "$TLS_DIR"
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "hub-certificate.sh must run as root"
  command -v openssl >/dev/null 2>&1 ||
    fail "openssl is missing, which makes the hub's certificate: install it (apt-get install openssl), or give the hub a certificate in convecthub:hub.tls"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: hub-certificate.sh apply|remove" ;;
  esac
}

main "$@"
