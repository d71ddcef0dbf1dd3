#!/bin/bash
# Runs the partitioned merge on Kubernetes: the Indexed Job, then, only if every index
# succeeded, the finalize Job. Kubernetes has no dependencies between Jobs, so this
# script waits for the first one.
#   deploy/k8s/run-merge.sh [namespace]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ns=(--namespace "${1:-default}")
until_done() {
  while :; do
    state="$(kubectl "${ns[@]}" get job "$1" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')"
    case "$state" in
      *Complete*) return 0 ;;
      *Failed*) echo "job $1 failed: kubectl ${ns[*]} describe job $1" >&2; return 1 ;;
    esac
    sleep "${PMA_POLL_SECONDS:-20}"
  done
}
kubectl "${ns[@]}" apply -f "$here/merge-indexed-job.yaml"
until_done pma-merge-parts
kubectl "${ns[@]}" apply -f "$here/merge-finalize-job.yaml"
until_done pma-merge-finalize
kubectl "${ns[@]}" logs job/pma-merge-finalize
