#!/usr/bin/env bash
# Run THERE (the device machine, repo root), with .whl carried (experiments/gpu/fetch_wheels.sh made it):
#   run(command="SWEEP=lr-hold bash experiments/gpu/device_sweeps.sh", carry=[".whl"], timeout_s=570)
# The lent machine's 16 cores for resumable CPU sweeps, one SWEEP per call:
#   lr-hold     issue 33: hidden-ids-dynamics under task_hold_linear, seeds 6-9 (hidden, announced, hidden with the
#               median choice; 12 trials of 300k steps, ~4-5 min each there);
#   dqn-budget  issue 31 item 1: the PSP rows' seeds 0-2 (15 trials of 250k steps, ~15 min each there: two calls,
#               the second on the warm machine, whose ignored run dirs stay between calls).
# (2026-12-04 ran the drift's last seeds and hidden-ids-dynamics seeds 6-9 this way, then dqn-budget.)
# The machine has no Ray, so the sweeps run their trials in local processes (`psp-rl sweep --backend auto`); the
# GPU is hidden (small networks train on the CPU, and the device is not part of a run's identity). At STOP_AFTER
# seconds every trial still running gets a SIGTERM and keeps its last checkpoint; the trials' run dirs and logs
# come back in $OUT as runs.tar.gz.NN parts (a call brings back at most 8 files of 16 MiB), unpacked here with
#   cat /work/.device/.../runs.tar.gz.* | tar -xz
# and the same sweep commands resume what did not finish. STOP_AFTER=40 tries it on a clone here.
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
STOP_AFTER=${STOP_AFTER:-420}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=
{ nproc; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core'; } > "$OUT/machine.txt"

hidden=experiments/results/hidden-ids-dynamics
budget=experiments/results/dqn-budget/cartpole-shift-keepbest
seeds="6 7 8 9"
if [ "${SWEEP:-lr-hold}" = lr-hold ]; then
  trials=$(for s in $seeds; do for d in lr-hold/hidden lr-hold/announced lr-hold-median/hidden; do
    echo "$hidden/$d/runs/psp-binary-s$s"; done; done)
  for mode in hidden announced; do
    timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_hidden_ids.py experiments/configs/hidden-ids-dynamics.yaml \
      --seeds $seeds --modes "$mode" --out "$hidden/lr-hold" --set agent.task_lr_schedule=task_hold_linear \
      --max-parallel 5 > "$OUT/lr-hold-$mode.log" 2>&1 &
  done
  timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_hidden_ids.py experiments/configs/hidden-ids-dynamics.yaml \
    --seeds $seeds --modes hidden --out "$hidden/lr-hold-median" --announced "$hidden/lr-hold/announced" \
    --set agent.task_lr_schedule=task_hold_linear inference.choice_error=median --max-parallel 5 \
    > "$OUT/lr-hold-median.log" 2>&1 &
else  # SWEEP=dqn-budget: issue 31 item 1's PSP rows at seeds 0-2 (15 trials; finetune and separate are done)
  rows="psp-hold-m5 psp-hold-m20 psp-hold-visits psp-hold-visits-m20 psp-hold-visits-small"
  trials=$(for s in 0 1 2; do for r in $rows; do echo "$budget/runs/$r-s$s"; done; done)
  timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_retention.py experiments/configs/cartpole-shift.yaml \
    --set agent.learning_rate=0.001 sequence.steps=50000 agent.task_lr_schedule=task_hold_linear keep_best=true \
    probes.enabled=true --variants experiments/variants/dqn-budget.yaml --methods $rows --seeds 0 1 2 \
    --out "$budget" --max-parallel 15 > "$OUT/psp.log" 2>&1 &
fi
wait
# The sweeps' trial processes outlive their parent by the seconds their last checkpoint takes.
for _ in $(seq 60); do pgrep -f spawn_main > /dev/null || break; sleep 1; done
# What comes back is a pruned copy (the trials here stay whole, so a second call on the warm machine resumes them):
# a finished trial without its checkpoints (its metrics say all), an unfinished one with its newest only, and past
# ~50 MB of checkpoints (a call brings back 64 MiB) unfinished trials without any (they restart there).
stage=$(mktemp -d)
kept=0
for d in $trials; do
  [ -d "$d" ] || continue
  mkdir -p "$stage/$(dirname "$d")" "$stage/$(dirname "$(dirname "$d")")/logs"
  cp -a "$d" "$stage/$d"
  log="$(dirname "$(dirname "$d")")/logs/$(basename "$d").log"
  [ -f "$log" ] && cp "$log" "$stage/$log"
  copy="$stage/$d"
  [ -f "$copy/metrics.json" ] && rm -rf "$copy/checkpoints"
  [ -d "$copy/checkpoints" ] || continue
  ls -d "$copy"/checkpoints/ckpt-* | sort | head -n -1 | xargs -r rm -rf
  size=$(du -sb "$copy/checkpoints" | cut -f1)
  if [ $((kept + size)) -gt 50000000 ]; then rm -rf "$copy/checkpoints"; else kept=$((kept + size)); fi
done
tar -cz -C "$stage" experiments | split -d -b 15M - "$OUT/runs.tar.gz."
ls -l "$OUT"
