#!/usr/bin/env bash
# Run THERE (the device machine, repo root), with .whl carried (experiments/gpu/fetch_wheels.sh made it):
#   run(command="bash experiments/gpu/device_sweeps.sh", carry=[".whl"], timeout_s=570)
# The lent machine's 16 cores for the resumable CPU sweeps of issue 33 that fit in one call: the push-force drift's
# seeds left (item 5) and hidden-ids-dynamics at seeds 6-9, hidden and announced (item 4). The machine has no Ray,
# so the sweeps run their trials in local processes (`psp-rl sweep --backend auto`); the GPU is hidden (small
# networks train on the CPU, and the device is not part of a run's identity). At STOP_AFTER seconds every trial
# still running gets a SIGTERM and keeps its last checkpoint; the new run dirs and logs come back in $OUT as
# runs.tar.gz.NN parts (a call brings back at most 8 files of 16 MiB), unpacked here with
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

drift=experiments/results/drift-force-10seeds
hidden=experiments/results/hidden-ids-dynamics
budget=experiments/results/dqn-budget/cartpole-shift-keepbest
if [ "${SWEEP:-issue33}" = issue33 ]; then
  # The trials these sweeps have left (the others finished and are reused): what comes back.
  trials="$drift/runs/drift-smooth-s8 $drift/runs/drift-smooth-s9"
  for s in 7 8 9; do trials="$trials $drift/runs/drift-smooth-bins-s$s"; done
  for s in 6 7 8 9; do trials="$trials $hidden/hidden/runs/psp-binary-s$s $hidden/announced/runs/psp-binary-s$s"; done
  timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_drift.py experiments/configs/cartpole-drift-force.yaml \
    --variants drift-smooth drift-smooth-bins --seeds 0 1 2 3 4 5 6 7 8 9 --max-parallel 5 --out "$drift" \
    --oracle experiments/results/drift-force-oracle/seed-{0..9} > "$OUT/drift.log" 2>&1 &
  for mode in hidden announced; do
    timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_hidden_ids.py experiments/configs/hidden-ids-dynamics.yaml \
      --seeds 6 7 8 9 --modes "$mode" --max-parallel 4 > "$OUT/hidden-$mode.log" 2>&1 &
  done
else  # SWEEP=dqn-budget: issue 31 item 1's finetune reference and the PSP rows at seeds 0-1 (15 trials)
  rows="psp-hold-m5 psp-hold-m20 psp-hold-visits psp-hold-visits-m20 psp-hold-visits-small"
  trials=$(for s in 0 1 2 3 4; do echo "$budget/runs/finetune-s$s"; done; for s in 0 1; do for r in $rows; do echo "$budget/runs/$r-s$s"; done; done)
  set_args=(agent.learning_rate=0.001 sequence.steps=50000 agent.task_lr_schedule=task_hold_linear keep_best=true)
  timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_retention.py experiments/configs/cartpole-shift.yaml \
    --set "${set_args[@]}" --methods finetune --seeds 0 1 2 3 4 --out "$budget" --max-parallel 5 > "$OUT/finetune.log" 2>&1 &
  timeout -k 20 -s TERM "$STOP_AFTER" python3 experiments/bench_retention.py experiments/configs/cartpole-shift.yaml \
    --set "${set_args[@]}" probes.enabled=true --variants experiments/variants/dqn-budget.yaml --methods $rows \
    --seeds 0 1 --out "$budget" --max-parallel 10 > "$OUT/psp.log" 2>&1 &
fi
wait
# The sweeps' trial processes outlive their parent by the seconds their last checkpoint takes.
for _ in $(seq 60); do pgrep -f spawn_main > /dev/null || break; sleep 1; done
# A finished trial comes back without its checkpoints (its metrics say all), an unfinished one with its newest only.
for d in $trials; do
  [ -f "$d/metrics.json" ] && rm -rf "$d/checkpoints"
  [ -d "$d/checkpoints" ] && ls -d "$d"/checkpoints/ckpt-* | sort | head -n -1 | xargs -r rm -rf
done
# What comes back is at most 64 MiB: unfinished trials past ~50 MB of checkpoints come back without (they restart).
kept=0
for d in $trials; do
  [ -d "$d/checkpoints" ] || continue
  size=$(du -sb "$d/checkpoints" | cut -f1)
  if [ $((kept + size)) -gt 50000000 ]; then rm -rf "$d/checkpoints"; else kept=$((kept + size)); fi
done

logs=$(for d in $trials; do echo "$(dirname "$(dirname "$d")")/logs/$(basename "$d").log"; done)
tar -cz $(ls -d $trials $logs 2>/dev/null) | split -d -b 15M - "$OUT/runs.tar.gz."
ls -l "$OUT"
