#!/usr/bin/env bash
# A node's membership of the cluster, run on the first server with k3s's own kubectl.
#
#   k3s-membership.sh apply    wait until the node is Ready, then make its labels and taints
#                              the ones given: those this script set before and are no longer
#                              given are removed; labels and taints set by others stay.
#   k3s-membership.sh remove   drain the node (bounded by the drain timeout) and delete its Node
#                              object, so it can join again later under the same name.
#
# Environment (root is required: k3s's admin kubeconfig is root-only):
#   CONVECTHUB_NODE_NAME       the member node's name
#   CONVECTHUB_LABELS          its labels, one key=value per line
#   CONVECTHUB_TAINTS          its taints, one key=value:Effect (or key:Effect) per line
#   CONVECTHUB_READY_TIMEOUT   seconds the node may take to become Ready (default 600)
#   CONVECTHUB_DRAIN_TIMEOUT   seconds draining may take; 0 skips draining (default 120)
set -euo pipefail

if ! declare -F write_file >/dev/null; then
  # shellcheck source=components/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

# Annotations on the Node that record what this script manages, so it can take back what
# the config no longer gives.
readonly LABELS_NOTE=convecthub.io/managed-labels
readonly TAINTS_NOTE=convecthub.io/managed-taints

member=${CONVECTHUB_NODE_NAME:-}

kubectl() { k3s kubectl "$@"; }

api_answers() { kubectl get --raw /readyz >/dev/null 2>&1; }

node_field() {
  kubectl get node "$member" -o "jsonpath=$1" 2>/dev/null || true
}

# annotation_items NAME: the comma-separated items of one of our annotations, one per line.
annotation_items() {
  # jsonpath prints no final newline: add one, or `read` would drop the last item.
  printf '%s\n' "$(node_field "{.metadata.annotations.${1//./\\.}}")" | tr ',' '\n' | sed '/^$/d'
}

node_ready() {
  [ "$(node_field '{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# is_one_of ITEM LIST...: whether ITEM is in LIST.
is_one_of() {
  local item=$1 each
  shift
  for each in "$@"; do
    [ "$each" != "$item" ] || return 0
  done
  return 1
}

# item_id KIND ITEM: what identifies a label (its key) or a taint (key:Effect) on a node.
item_id() {
  case "$1" in
    label) echo "${2%%=*}" ;;
    taint) echo "${2%%[=:]*}:${2##*:}" ;;
  esac
}

# reconcile KIND NOTE ITEMS: make the node's labels (KIND label) or taints (KIND taint) that
# this script manages exactly ITEMS (one per line); NOTE is the annotation that records them.
reconcile() {
  local kind=$1 note=$2 items=$3 wanted=() ids=() line id
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    # Values are data: an item kubectl would take for an option is refused.
    case "$line" in
      -*) fail "CONVECTHUB_${kind^^}S holds an item that starts with -: refused, as kubectl would read it as an option" ;;
    esac
    check_line "CONVECTHUB_${kind^^}S" "$line"
    wanted+=("$line")
    ids+=("$(item_id "$kind" "$line")")
  done <<<"$items"
  while IFS= read -r id; do
    [ -n "$id" ] || continue
    if ! is_one_of "$id" "${ids[@]}"; then
      kubectl "$kind" node "$member" "${id}-" >/dev/null 2>&1 || true
      say "removed ${kind} ${id} from ${member}"
    fi
  done < <(annotation_items "$note")
  if [ "${#wanted[@]}" -gt 0 ]; then
    kubectl "$kind" --overwrite node "$member" "${wanted[@]}" >/dev/null
  fi
  kubectl annotate --overwrite node "$member" "${note}=$(
    IFS=,
    echo "${ids[*]}"
  )" >/dev/null
}

apply() {
  api_answers || fail "the cluster's API does not answer on this server: on it, see journalctl -u k3s"
  wait_until "${CONVECTHUB_READY_TIMEOUT:-600}" node_ready ||
    fail "node ${member} did not become Ready within ${CONVECTHUB_READY_TIMEOUT:-600} s: on ${member}, see journalctl -u k3s-agent (or -u k3s on a server)"
  reconcile label "$LABELS_NOTE" "${CONVECTHUB_LABELS:-}"
  reconcile taint "$TAINTS_NOTE" "${CONVECTHUB_TAINTS:-}"
  say "${member} is Ready with its labels and taints"
}

remove() {
  if ! command -v k3s >/dev/null 2>&1 || ! api_answers; then
    say "k3s does not answer on this server: nothing to drain or delete for ${member}"
    return 0
  fi
  if [ -z "$(node_field '{.metadata.name}')" ]; then
    say "${member} is not in the cluster: nothing to drain or delete"
    return 0
  fi
  local timeout=${CONVECTHUB_DRAIN_TIMEOUT:-120}
  if [ "$timeout" -gt 0 ]; then
    say "draining ${member} (up to ${timeout} s)"
    kubectl drain "$member" --ignore-daemonsets --delete-emptydir-data --force \
      --timeout="${timeout}s" >/dev/null 2>&1 ||
      say "draining ${member} did not finish within ${timeout} s: deleting it anyway"
  fi
  kubectl delete node "$member" --timeout=120s >/dev/null
  say "deleted node ${member} from the cluster"
}

main() {
  exec </dev/null
  [ "$(id -u)" = 0 ] || fail "k3s-membership.sh must run as root"
  [ -n "$member" ] || fail "CONVECTHUB_NODE_NAME is not set"
  case "${1:-}" in
    apply) apply ;;
    remove) remove ;;
    *) fail "usage: k3s-membership.sh apply|remove" ;;
  esac
}

main "$@"
