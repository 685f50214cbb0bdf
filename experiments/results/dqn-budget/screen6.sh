#!/bin/bash
# Issue 31 item 2 under the new default (sixth screen): quickstart-dqn.yaml as it ships, margin left out, so margin 20
# on its vector observations (was 5), seeds 0-4, resumable; beside quickstart-keepbest's psp-visits rows (margin 5,
# 2026-12-03, another EPYC). Usage: screen6.sh SEED...
cd "$(dirname "$0")/../../.."
for s in "$@"; do
  row=psp-visits-m20-s$s
  /usr/bin/time -f "$row wall %e s" psp-rl train experiments/configs/quickstart-dqn.yaml \
    --run-dir experiments/results/dqn-budget/quickstart-keepbest/runs/$row --seed $s --no-progress --resume-or-start \
    >> experiments/results/dqn-budget/quickstart-keepbest/logs/$row.log 2>&1
done
