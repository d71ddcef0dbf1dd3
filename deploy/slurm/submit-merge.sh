#!/bin/bash
# Submits a pma merge split into N parts: a job array of N tasks (merge-array.sbatch)
# and a finalize job that runs only if every task succeeded (afterok); if one fails,
# the finalize job is cancelled instead of waiting forever (--kill-on-invalid-dep).
#
#   deploy/slurm/submit-merge.sh N OUT CKPT... [merge options]
#   deploy/slurm/submit-merge.sh 8 /lustre/run1/merged /lustre/run1/checkpoint-{9000..10000..100} --method ema --alpha 0.2
#
# Each part gets PMA_CPUS_PER_PART CPUs (default 8) and as many merge threads. Cluster
# options (partition, account, time limit) come from the usual sbatch variables:
# SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, ... A failed part is
# rerun alone (sbatch --array=I --export=ALL,PMA_PARTS=N merge-array.sbatch ...), then
# merge-finalize.sbatch OUT; finished parts are not redone.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 N OUT CKPT... [pma merge options]" >&2
  exit 2
fi
parts="$1"
out="$2"
shift 2
case "$parts" in
  '' | *[!0-9]* | 0) echo "N must be a positive integer (got '$parts')" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
array="$(sbatch --parsable --array="0-$((parts - 1))" --cpus-per-task="${PMA_CPUS_PER_PART:-8}" --export="ALL,PMA_PARTS=$parts" \
  "$here/merge-array.sbatch" "$@" --out "$out")"
array="${array%%;*}" # --parsable prints "id;cluster" on federated clusters
final="$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$here/merge-finalize.sbatch" "$out")"
final="${final%%;*}"
echo "pma merge: parts are job $array (array 0-$((parts - 1))), finalize is job $final"
