#!/usr/bin/env bash
# Run THERE (the device machine, repo root), with .whl carried (experiments/gpu/fetch_wheels.sh made it):
#   run(command="bash experiments/gpu/device_check.sh", carry=[".whl"], timeout_s=570)
# Issue 34 item 6 in one call of at most 9 minutes (~6 expected): the GPU rows of bench_throughput (Atari PPO
# and DQN, stock SB3 against PSP, 8 envs) and a short learning run of atari-3-gpu.yaml (Breakout alone, 200k
# agent steps; 103 s on the H200 of 2026-12-04), each result into $OUT. DEVICE=cpu STEPS=1024
# LEARN_STEPS=4096 try the same script on a CPU machine (~2 minutes on 2 cores).
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-20000}
LEARN_STEPS=${LEARN_STEPS:-200000}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1
{ nvidia-smi 2>&1 || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  > "$OUT/machine.txt"
# The GPU rows: 8 envs, the update on the device; one run each. One bench per row, so that a row cut by its
# timeout leaves the other's table. DQN runs a fifth of the steps: on the H200 (2026-12-04) its row did ~300
# env-steps/s, and 20k steps x 3 agents outran 120 s. binary-fp32 prices the bf16 autocast. At most 8 files
# come back from $OUT: these are 8.
timeout 180 python3 experiments/bench_throughput.py --device "$DEVICE" --rows atari-ppo \
  --agents vanilla binary none binary-fp32 --n-envs 8 --steps "$STEPS" --repeats 1 --replay-transitions 0 \
  --out "$OUT/throughput-atari-ppo.md" 2>&1 | tee -a "$OUT/bench.log"
timeout 150 python3 experiments/bench_throughput.py --device "$DEVICE" --rows atari-dqn --agents vanilla binary none \
  --n-envs 8 --steps "$((STEPS / 5))" --repeats 1 --replay-transitions 0 --out "$OUT/throughput-atari-dqn.md" 2>&1 \
  | tee -a "$OUT/bench.log"
# The short learning run: the GPU config on one game, evaluated twice.
run=/tmp/atari-gpu-breakout
# From another folder: the repo's psp_rl/ would hide the wheel's, which holds psp_rl.agents and psp_rl.envs.
config=$PWD/experiments/configs/atari-3-gpu.yaml
(cd /tmp && timeout 180 python3 -m psp_rl.cli train "$config" --run-dir "$run" --overwrite \
  --no-progress --set "sequence.spec.tasks=[{name: breakout, atari: Breakout}]" "eval.reference_returns={breakout: 31.8}" \
  "sequence.steps=$LEARN_STEPS" \
  "eval.every=$((LEARN_STEPS / 2))" "checkpoint.every=$LEARN_STEPS") 2>&1 | tee "$OUT/learn.log"
cp "$run/eval.csv" "$run/config.yaml" "$OUT/" 2>/dev/null
cp "$run/metrics.json" "$OUT/" 2>/dev/null
ls -l "$OUT"
