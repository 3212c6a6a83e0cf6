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
  local file=${CONVECTHUB_KUBECONFIG:-/etc/rancher/k3s/k3s.yaml} local_server=https://127.0.0.1:6443
  [ -n "${CONVECTHUB_API_SERVER:-}" ] || fail "CONVECTHUB_API_SERVER is not set"
  check_url CONVECTHUB_API_SERVER "$CONVECTHUB_API_SERVER"
  [ -r "$file" ] || fail "cannot read ${file}: is k3s running as a server here (journalctl -u k3s)?"
  grep -qF "server: ${local_server}" "$file" ||
    fail "${file} does not point at ${local_server}: was it edited by hand?"
  # The URL is data: awk reads it from its environment and splices it in as text (no regular
  # expression, no replacement syntax), as a YAML scalar.
  KUBECONFIG_OLD="server: ${local_server}" KUBECONFIG_NEW="server: $(yaml_url "$CONVECTHUB_API_SERVER")" awk '
    BEGIN { old = ENVIRON["KUBECONFIG_OLD"]; new = ENVIRON["KUBECONFIG_NEW"] }
    (at = index($0, old)) > 0 && substr($0, at + length(old)) == "" {
      $0 = substr($0, 1, at - 1) new
    }
    { print }
  ' "$file"
}

main "$@"
