"""Online EWC (Kirkpatrick et al. 2017; Schwarz et al. 2018) as a hook of the continual loop.

At the end of each task the diagonal Fisher of the agent's action distribution is estimated on
that task's states and folded into a running one, ``F <- decay * F + F_task``, and the weights
are kept as the anchor ``theta*``. While later tasks train, the penalty
``lambda/2 * sum F (theta - theta*)^2`` is added to SB3's loss through its gradient
``lambda * F * (theta - theta*)``, which a step pre-hook of the torch optimizer adds to ``.grad``:
SB3's ``train()`` is not copied. One difference from writing the penalty into the loss: SB3
clips the gradient norm before the optimizer step, so the penalty's share is not clipped.

The action distribution is the policy for PPO and ``softmax(Q)`` for DQN (so the penalty keeps
the *ranking* of actions that the greedy policy reads, not the absolute Q-values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from psp_rl.checks import is_int
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.seeds import Stream
from psp_rl.policies import trained_parameters

if TYPE_CHECKING:
    from psp_rl.continual.callbacks import LoopView

# Chosen on DQN cartpole-shift, seed 0 (experiments/results/ewc-lambda/README.md).
EWC_LAMBDA = 1000.0


def fisher_diagonal(agent: BaseAlgorithm, obs: dict[str, np.ndarray], seed: int) -> dict[str, torch.Tensor]:
    """Mean over states of ``(d log pi(a|s) / d theta)^2`` with ``a ~ pi(.|s)`` (the true Fisher)."""
    policy = agent.policy
    params = trained_parameters(policy)
    obs_tensor, _ = policy.obs_to_tensor(obs)
    policy.set_training_mode(False)
    distribution = agent.action_distribution(obs_tensor)
    # Actions drawn under their own seed: the estimate, and so a resumed run, is reproducible.
    with torch.random.fork_rng(devices=[agent.device] if agent.device.type == "cuda" else []):
        torch.manual_seed(seed)
        actions = distribution.sample()
    log_probs = distribution.log_prob(actions)
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    for i in range(len(log_probs)):  # per-sample gradients: the Fisher is a mean of squares, not a square of means
        grads = torch.autograd.grad(log_probs[i], list(params.values()), retain_graph=True, allow_unused=True)
        for name, grad in zip(params, grads, strict=True):
            if grad is not None:
                fisher[name] += grad.detach() ** 2
    return {name: f / len(log_probs) for name, f in fisher.items()}


class OnlineEWC(ContinualCallback):
    """Online EWC: a Fisher-weighted pull towards the weights each earlier task ended with.

    :param strength: ``lambda``, the penalty's weight.
    :param decay: ``gamma`` of online EWC; 1 keeps every task's Fisher at full weight.
    :param samples: states per task for the Fisher estimate.
    """

    def __init__(self, strength: float = EWC_LAMBDA, decay: float = 1.0, samples: int = 256) -> None:
        if not strength >= 0:
            raise ValueError(f"ewc strength={strength!r}: expected a number >= 0")
        if not 0 < decay <= 1:
            raise ValueError(f"ewc decay={decay!r}: expected 0 < decay <= 1")
        if not is_int(samples) or samples <= 0:
            raise ValueError(f"ewc samples={samples!r}: expected a positive int")
        self.strength, self.decay, self.samples = strength, decay, samples
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._hooked: Any = None

    def before_training(self, loop: LoopView) -> None:
        optimizer = loop.agent.policy.optimizer
        if self._hooked is not optimizer:  # a resumed run has a new agent, hence a new optimizer
            optimizer.register_step_pre_hook(self._add_penalty_gradient)
            self._hooked, self._policy = optimizer, loop.agent.policy

    def after_task(self, loop: LoopView, stage: int, task: int) -> None:
        agent = loop.agent
        seed = loop.stream_seed(Stream.EWC, stage)
        task_fisher = fisher_diagonal(agent, agent.task_states(task, self.samples, seed), seed)
        for name, f in task_fisher.items():
            self.fisher[name] = self.decay * self.fisher[name] + f if name in self.fisher else f
        self.anchor = {name: p.detach().clone() for name, p in agent.policy.named_parameters() if name in self.fisher}

    def after_eval(self, loop: LoopView, rows: list[dict[str, Any]]) -> None:
        if self.fisher:  # how far training has pulled the weights from the earlier tasks' anchor
            loop.writer.add_scalar("ewc/penalty", self.penalty(), loop.agent.num_timesteps)

    def penalty(self) -> float:
        """``lambda/2 * sum F (theta - theta*)^2`` at the current weights."""
        params = dict(self._policy.named_parameters())
        total = sum(float((self.fisher[n] * (params[n].detach() - self.anchor[n]) ** 2).sum()) for n in self.fisher)
        return 0.5 * self.strength * total

    def _add_penalty_gradient(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.fisher or self.strength == 0:
            return
        for name, p in self._policy.named_parameters():
            if name not in self.fisher:
                continue
            grad = self.strength * self.fisher[name] * (p.detach() - self.anchor[name])
            p.grad = grad if p.grad is None else p.grad + grad

    def state_dict(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher, self.anchor = dict(state["fisher"]), dict(state["anchor"])
