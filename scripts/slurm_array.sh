#!/usr/bin/env bash
# One shard of an experiment's units per SLURM array task, all writing into one shared result folder; the task
# that finds every unit done writes the result. No cluster library needed:
#
#   sbatch --array=0-3 --gres=gpu:1 --time=24:00:00 scripts/slurm_array.sh main --preset paper --set model.path=/models/pythia-2.8b --root results
#
# Any `iml run` arguments follow the script's name. A preempted or failed task is simply resubmitted (or the whole
# array again): finished units are kept, only missing ones are computed. Locally (no SLURM), run it once per shard:
#   SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=2 bash scripts/slurm_array.sh mnist --preset smoke --root /tmp/r
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SLURM_ARRAY_TASK_ID:?run under sbatch --array, or set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT}"
: "${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT is not set}"
exec .venv/bin/python -m iml run "$@" --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}"
