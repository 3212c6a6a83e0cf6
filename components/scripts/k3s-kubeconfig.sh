#!/usr/bin/env bash
# Print the cluster's admin kubeconfig, its server pointed at the API endpoint. Run on the
# first server; changes nothing. Its output is a secret: the program marks it so and turns
# off the command's logging.
#
# Environment:
#   CONVECTHUB_API_SERVER   the URL clients use, e.g. https://10.0.0.10:6443
#   CONVECTHUB_KUBECONFIG   default /etc/rancher/k3s/k3s.yaml
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

main() {
  exec </dev/null
  local file=${CONVECTHUB_KUBECONFIG:-/etc/rancher/k3s/k3s.yaml}
  [ -n "${CONVECTHUB_API_SERVER:-}" ] || fail "CONVECTHUB_API_SERVER is not set"
  [ -r "$file" ] || fail "cannot read ${file}: is k3s running as a server here (journalctl -u k3s)?"
  grep -q 'server: https://127.0.0.1:6443' "$file" ||
    fail "${file} does not point at https://127.0.0.1:6443: was it edited by hand?"
  sed "s#server: https://127.0.0.1:6443#server: ${CONVECTHUB_API_SERVER}#" "$file"
}

main "$@"
