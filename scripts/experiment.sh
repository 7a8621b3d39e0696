#!/usr/bin/env bash
# The main job. Until the experiments land (issue: rolling agent upgrades under load), it
# brings the local cluster up, shows it, and takes it down again; the trap always cleans up.
set -euo pipefail
pb="${1:-.venv/bin/patternbench}"
results="${2:-results}"
mkdir -p "$results"
trap '"$pb" cluster down' EXIT
"$pb" cluster up
"$pb" cluster status | tee "$results/cluster-status.txt"
echo "experiments are not there yet: the cluster came up and will now be taken down."
echo "report: $results/cluster-status.txt"
