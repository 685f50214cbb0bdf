#!/bin/bash
# Issue 31's budget screen, third round (separate DQN on reversed, quickstart-dqn's agent at lr 1e-3): the rate held
# over each task's first half and annealed over its second (task_hold_linear), at 75k steps (50k was not run: cartpole-shift at 75k went first).
cd "$(dirname "$0")/../../.."
for steps in 75; do for s in 0 1 2; do
  row=hold1e3-$steps-reversed-s$s
  psp-rl train experiments/configs/quickstart-dqn.yaml --run-dir experiments/results/dqn-budget/runs/$row --seed $s \
    --no-progress --resume-or-start --set agent.method=separate agent.network.context=none "sequence.tasks=[reversed]" \
    sequence.steps=${steps}000 eval.every=5000 eval.episodes=10 checkpoint.every=25000 agent.learning_rate=0.001 \
    agent.task_lr_schedule=task_hold_linear >> experiments/results/dqn-budget/logs/$row.log 2>&1
done; done
