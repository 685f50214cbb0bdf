"""Retention probes: *why* an earlier task is kept or lost, measured while later tasks train.

At the end of each task ``j`` the probe keeps a fixed sample of ``j``'s states (from the
agent's replay buffer or last rollout) with what the network computed on them under ``j``'s
context: every task-aware layer's output, the acting output (Q-values for DQN, action logits
for PPO) and the greedy actions. At the end of every later task it runs the same states again
and writes, per finished task ``j``:

- ``crosstalk`` per layer: ``||Y - Y_ref|| / ||Y_ref||`` over the sample (relative change of the
  layer's output under ``j``'s context), split exactly into ``crosstalk_common``, the change of
  the mean output over states (``||mean_s dY|| / rms_s ||Y_ref||``: a shift every state shares),
  and ``crosstalk_spread``, the state-dependent rest (``common^2 + spread^2 = crosstalk^2``);
- ``advantage_shift_common`` / ``advantage_shift_spread``: the output change with its mean over
  actions removed (what can reorder actions), split into the part every state shares and the
  state-dependent rest, both in units of the task's median end-of-task action gap: a common part
  above 1 pushes most states towards the same action, a spread above 1 scrambles them;
- ``margin_shift_mean`` / ``margin_shift_spread``: mean and standard deviation over states of the
  change of the end-of-task greedy action's margin (its output minus the best other one);
- ``margin_over_output``: median margin / median ``|output|`` now, and ``output_shift_a<i>``: the
  mean change of each action's output;
- ``greedy_agreement``: share of states whose greedy action is still the end-of-task one
  (near-ties dominate it: report it, do not gate on it).

A PSP-DQN whose finished tasks act from a distilled policy (``acting="distilled"``) gets the same
output quantities for that policy's logits, as layer ``distilled``: task ``j`` is distilled at the
start of the next task and nothing else trains the distilled policy during that task, so its logits
at the end of that task are the reference, and ``distil_agreement`` there (the share of the sample
whose distilled action is Q's end-of-task greedy one) measures the distillation's fidelity; later
rows measure the crosstalk later distillations add.

``weight_movement`` per layer, ``||W_end - W_start|| / ||W_start||`` over each task, and the
action-gap distribution of its end-of-task output (``gap_median`` in output units and
``gap_over_output``, median gap / median ``|output|``) are written for the task just trained.
Rows go to ``probes.csv`` in the run dir (rewritten atomically) and to TensorBoard as
``probe/<task>/<layer>/<quantity>``; the state (samples, references, rows) is saved in every
checkpoint, so a resumed run writes the same file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from psp_rl.checks import is_int
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.files import atomic_write_csv
from psp_rl.continual.seeds import Stream
from psp_rl.layers import TaskModule

if TYPE_CHECKING:
    from psp_rl.continual.callbacks import LoopView

PROBES_HEADER = ("step", "trained_task", "probe_task", "layer", "quantity", "value")
OUTPUT = "output"  # the layer name of the acting output (Q-values or logits)
DISTILLED = "distilled"  # PSP-DQN's distilled policy logits, the acting output of its finished tasks
POLICY_LAYERS = ("policy_torso", "policy_head")  # the distilled policy's layers in the Q-network
DISTILLED_HEAD = "policy_head"  # the layer whose output is the distilled logits


def acting_layer(rows: Any) -> str:
    """The probes' layer name of what a finished task acts from: the distilled logits where a
    run has them, else the output (``rows``: ``probes.csv`` rows)."""
    return DISTILLED if any(row["layer"] == DISTILLED for row in rows) else OUTPUT


def probed_layers(network: nn.Module, agent: Any) -> dict[str, nn.Module]:
    """The task-aware leaf layers (superposed, per-task) on the acting path, by module name."""
    layers = {}
    for name, module in network.named_modules():
        if not isinstance(module, TaskModule) or any(isinstance(c, TaskModule) for c in module.children()):
            continue
        if agent.acting_modules is not None and not name.startswith(agent.acting_modules):
            continue  # PPO: the critic does not act
        layers[name] = module
    return layers


@torch.no_grad()
def acting_outputs(agent: Any, obs: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(output (batch, n_actions), {layer: output})`` of the acting network on ``obs``: Q-values
    for DQN, the actor head's logits for PPO."""
    policy = agent.policy
    policy.set_training_mode(False)
    network = agent.acting_network()
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.flatten(1)))
        for name, module in probed_layers(network, agent).items()
    ]
    try:
        obs_tensor, _ = policy.obs_to_tensor(obs)
        output = agent.acting_output(obs_tensor)
    finally:
        for hook in hooks:
            hook.remove()
    return output.float().cpu(), {name: value.float().cpu() for name, value in captured.items()}


def is_distilled(agent: Any, task: int) -> bool:
    distilled = getattr(getattr(agent.policy, "q_net", None), "distilled", None)
    return distilled is not None and bool(distilled[task])


def split_change(now: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """``(total, common, spread)`` relative change of ``(states, units)`` outputs.

    ``total = ||now - ref||_F / ||ref||_F``; the common part is the mean change over states, the
    spread what is left, each measured against ``ref``'s root-mean-square row norm so that
    ``common^2 + spread^2 = total^2``.
    """
    change = now - ref
    scale = float(ref.pow(2).sum(1).mean().sqrt()) or 1.0
    common = float(change.mean(0).norm()) / scale
    spread = float((change - change.mean(0)).pow(2).sum(1).mean().sqrt()) / scale
    return float(np.hypot(common, spread)), common, spread


def margins(output: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Output of ``actions`` minus the best other action's, per state (needs >= 2 actions)."""
    chosen = output.gather(1, actions.view(-1, 1)).squeeze(1)
    others = output.scatter(1, actions.view(-1, 1), float("-inf"))
    return chosen - others.max(dim=1).values


def gap_over_output(output: torch.Tensor) -> float:
    """Median gap between the best and the second action over median ``|output|``."""
    return float(margins(output, output.argmax(1)).median() / output.abs().median().clamp_min(1e-12))


def _row(layer: str, quantity: str, value: Any, task: int) -> dict[str, Any]:
    return {"layer": layer, "quantity": quantity, "value": float(value), "probe_task": task}


def layer_weights(network: nn.Module, agent: Any) -> dict[str, torch.Tensor]:
    """A copy of each probed layer's weights (real and imaginary parts together)."""
    out = {}
    for name, module in probed_layers(network, agent).items():
        weights = [p.detach().flatten() for n, p in module.named_parameters() if n.startswith("weight")]
        if weights:
            out[name] = torch.cat(weights).cpu().clone()
    return out


def crosstalk_rows(layer: str, now: torch.Tensor, before: torch.Tensor, j: int) -> list[dict[str, Any]]:
    """Task ``j``'s relative change of ``layer``'s output, whole and split (:func:`split_change`)."""
    total, common, spread = split_change(now, before)
    return [
        _row(layer, q, v, j)
        for q, v in (("crosstalk", total), ("crosstalk_common", common), ("crosstalk_spread", spread))
    ]


def output_rows(layer: str, output: torch.Tensor, before: torch.Tensor, actions: torch.Tensor, j: int) -> list[dict]:
    """What can reorder the actions of ``output`` (states x actions) since ``before``, whose greedy
    actions were ``actions``: margins, the advantage shift in units of ``before``'s median margin,
    greedy agreement."""
    if output.shape[1] < 2:
        return []
    change = output - before
    advantage = change - change.mean(1, keepdim=True)
    common = advantage.mean(0)
    ref_margins = margins(before, actions)
    gap = float(ref_margins.median()) or 1.0
    shift = margins(output, actions) - ref_margins
    values = {
        "advantage_shift_common": common.norm() / gap,
        "advantage_shift_spread": (advantage - common).pow(2).sum(1).mean().sqrt() / gap,
        "margin_shift_mean": shift.mean(),
        "margin_shift_spread": shift.std(),
        "margin_over_output": gap_over_output(output),
        **{f"output_shift_a{a}": value for a, value in enumerate(change.mean(0).tolist())},
        "greedy_agreement": (output.argmax(1) == actions).float().mean(),
    }
    return [_row(layer, quantity, value, j) for quantity, value in values.items()]


class RetentionProbes(ContinualCallback):
    """Measure crosstalk, action margins and weight movement on every finished task.

    :param samples: states kept per task (drawn once, at the task's end, under a fixed seed).
    """

    def __init__(self, samples: int = 500) -> None:
        if not is_int(samples) or samples <= 0:
            raise ValueError(f"probe samples={samples!r}: expected a positive int")
        self.samples = samples
        self.references: dict[int, dict[str, Any]] = {}
        self.task_start_weights: dict[str, torch.Tensor] = {}
        self.rows: list[dict[str, Any]] = []

    def before_task(self, loop: LoopView, stage: int, task: int) -> None:
        self.task_start_weights = layer_weights(loop.agent.acting_network(), loop.agent)

    def after_task(self, loop: LoopView, stage: int, task: int) -> None:
        agent, names = loop.agent, loop.sequence.names
        step, trained = int(agent.num_timesteps), names[task]
        new_rows = []
        for j, ref in sorted(self.references.items()):
            if j == task:
                continue
            captured = DISTILLED not in ref and is_distilled(agent, j)
            if captured:
                new_rows += self._distilled_reference(agent, j, ref)
            new_rows += self._probe(agent, j, ref, distilled=not captured)
        for name, end in layer_weights(agent.acting_network(), agent).items():
            start = self.task_start_weights.get(name)
            if start is not None:
                new_rows.append(_row(name, "weight_movement", (end - start).norm() / (start.norm() or 1.0), task))
        obs = agent.task_states(task, self.samples, seed=loop.stream_seed(Stream.PROBES, stage))
        output, layers = acting_outputs(agent, obs)
        if output.shape[1] >= 2:
            new_rows.append(_row(OUTPUT, "gap_median", margins(output, output.argmax(1)).median(), task))
            new_rows.append(_row(OUTPUT, "gap_over_output", gap_over_output(output), task))
        self.references[task] = {
            "obs": {key: torch.as_tensor(value) for key, value in obs.items()},
            "output": output,
            "layers": layers,
            "actions": output.argmax(1),
        }
        for row in new_rows:
            row.update(step=step, trained_task=trained, probe_task=names[row["probe_task"]])
            self.rows.append(row)
            tag = f"probe/{row['probe_task']}/{row['layer']}/{row['quantity']}"
            loop.writer.add_scalar(tag, row["value"], step)
        self.write(loop)

    def _probe(self, agent: Any, j: int, ref: dict[str, Any], distilled: bool = True) -> list[dict[str, Any]]:
        """Task ``j``'s rows; ``distilled=False`` leaves out its distilled policy (its reference was just taken)."""
        obs = {key: value.numpy() for key, value in ref["obs"].items()}
        output, layers = acting_outputs(agent, obs)
        rows: list[dict[str, Any]] = []
        for name, now in [*layers.items(), (OUTPUT, output)]:
            before = ref["output"] if name == OUTPUT else ref["layers"].get(name)
            if before is None or before.shape != now.shape or (not distilled and name.startswith(POLICY_LAYERS)):
                continue
            rows += crosstalk_rows(name, now, before, j)
        rows += output_rows(OUTPUT, output, ref["output"], ref["actions"], j)
        if distilled and DISTILLED in ref:
            logits = layers[DISTILLED_HEAD]
            rows += crosstalk_rows(DISTILLED, logits, ref[DISTILLED], j)
            rows += output_rows(DISTILLED, logits, ref[DISTILLED], ref[DISTILLED].argmax(1), j)
        return rows

    def _distilled_reference(self, agent: Any, j: int, ref: dict[str, Any]) -> list[dict[str, Any]]:
        """Keep task ``j``'s just-distilled logits (and its policy layers' outputs) as its references;
        its fidelity to Q's greedy actions."""
        obs = {key: value.numpy() for key, value in ref["obs"].items()}
        _, layers = acting_outputs(agent, obs)
        ref["layers"].update({name: value for name, value in layers.items() if name.startswith(POLICY_LAYERS)})
        logits = ref[DISTILLED] = layers[DISTILLED_HEAD]
        fidelity = (logits.argmax(1) == ref["actions"]).float().mean()
        return [
            _row(DISTILLED, "distil_agreement", fidelity, j),
            _row(DISTILLED, "gap_median", margins(logits, logits.argmax(1)).median(), j),
            _row(DISTILLED, "gap_over_output", gap_over_output(logits), j),
        ]

    def write(self, loop: LoopView) -> None:
        rows = [[row[key] for key in PROBES_HEADER] for row in self.rows]
        atomic_write_csv(loop.paths.probes_csv, PROBES_HEADER, rows)

    def state_dict(self) -> dict[str, Any]:
        return {
            "references": {str(task): ref for task, ref in self.references.items()},
            "task_start_weights": self.task_start_weights,
            "rows": self.rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.references = {int(task): ref for task, ref in state["references"].items()}
        self.task_start_weights = dict(state["task_start_weights"])
        self.rows = list(state["rows"])
