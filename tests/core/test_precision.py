"""agent.precision: bf16 autocast for the update, fp32 parameters, and which machines get it."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from psp_rl import precision as P
from psp_rl.agents import ContinualPPO
from psp_rl.config.agent import AgentConfig
from psp_rl.config.build import build_agent
from psp_rl.envs import get_sequence
from psp_rl.policies import PSPActorCriticPolicy

FRAMES = spaces.Dict({"obs": spaces.Box(0, 255, (4, 84, 84), np.uint8), "task": spaces.Discrete(2)})


def _loss_and_grads(policy: PSPActorCriticPolicy, obs: dict, actions: torch.Tensor, precision: str):
    policy.zero_grad()
    with P.update_autocast(precision, torch.device("cpu")):
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -log_prob.mean() + 0.5 * values.pow(2).mean() - 0.01 * entropy.mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in policy.named_parameters() if p.grad is not None}


def test_a_bf16_update_matches_fp32_within_bf16s_precision_and_keeps_fp32_parameters():
    """One PPO-style loss of the Nature CNN policy: bf16 autocast against fp32, same weights and
    batch. Tolerance: bf16 keeps 8 bits of mantissa (relative 2^-8 = 0.4% per product), so the
    loss agrees to 1% and each layer's gradient to 5% of its norm."""
    torch.manual_seed(0)
    policy = PSPActorCriticPolicy(FRAMES, spaces.Discrete(18), lambda _: 1e-3, context="binary")
    obs = {"obs": torch.randint(0, 256, (16, 4, 84, 84)).float(), "task": torch.ones(16, 1)}
    actions = torch.randint(0, 18, (16,))
    loss32, grads32 = _loss_and_grads(policy, obs, actions, "fp32")
    loss16, grads16 = _loss_and_grads(policy, obs, actions, "bf16")
    assert loss16.dtype == torch.float32  # the heads hand fp32 to the loss
    assert torch.allclose(loss16, loss32, rtol=1e-2)
    assert grads16.keys() == grads32.keys()
    for name, grad in grads32.items():
        error = (grads16[name] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert error < 5e-2, (name, float(error))
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # weights, per-task biases
    assert all(b.dtype in (torch.float32, torch.bool, torch.int64) for b in policy.buffers())  # contexts


def test_a_bf16_agent_trains_fp32_weights_and_its_checkpoint_loads_under_fp32(tmp_path):
    sequence = get_sequence("cartpole-shift", tasks=["default"])
    agent = ContinualPPO(
        "PSPPolicy", sequence.make_vec_env(0, 2, seed=0), n_steps=32, batch_size=32, n_epochs=1, seed=0
    )
    agent.precision = "bf16"
    before = {name: p.detach().clone() for name, p in agent.policy.named_parameters()}
    agent.learn(64)
    after = dict(agent.policy.named_parameters())
    assert any(not torch.equal(before[name], p) for name, p in after.items())  # it trained
    assert all(p.dtype == torch.float32 for p in after.values())
    agent.save(tmp_path / "model.zip")
    loaded = ContinualPPO.load(tmp_path / "model.zip", env=sequence.make_vec_env(0, 2, seed=0))
    loaded.precision = "fp32"  # what a run on a machine without native bf16 resolves
    for name, p in loaded.policy.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, after[name])


def test_auto_precision_follows_the_hardware_and_complex_contexts_stay_fp32(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not P.native_bf16(cpu) and P.resolve_precision("auto", cpu) == "fp32"
    assert P.resolve_precision("bf16", cpu) == "bf16"  # forced: the config warns, the run obeys
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert P.native_bf16(cpu) and P.resolve_precision("auto", cpu) == "bf16"
    assert P.resolve_precision("auto", cpu, complex_contexts=True) == "fp32"
    assert P.resolve_precision("auto", cpu, torso="nature_cnn") == "bf16"
    for small in ("mlp", "minatar_cnn"):  # where bf16's casts cost more than its products save
        assert P.resolve_precision("auto", cpu, torso=small) == "fp32"
        assert P.resolve_precision("bf16", cpu, torso=small) == "bf16"
    with pytest.raises(ValueError, match="precision='bf16' with complex contexts: autocast has no complex"):
        P.resolve_precision("bf16", cpu, complex_contexts=True)


@pytest.mark.parametrize(
    ("sequence", "requested", "native", "expected"),
    [
        ("cartpole-shift", "auto", True, "fp32"),
        ("atari-small", "auto", True, "bf16"),
        ("atari-small", "auto", False, "fp32"),
        ("cartpole-shift", "bf16", True, "bf16"),
        ("atari-small", "fp32", True, "fp32"),
    ],
)
def test_build_agent_computes_as_its_config_says(monkeypatch, sequence, requested, native, expected):
    """build_agent (not only a run's trainer) resolves agent.precision: the bench's agents and a
    user's are the ones a run trains."""
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512_bf16"} if native else {"avx2"}))
    env = get_sequence(sequence).make_vec_env(0, 1, seed=0)
    config = AgentConfig(algo="ppo", method="psp", n_envs=1, precision=requested)
    assert build_agent(config, env, seed=0, device="cpu").precision == expected
    env.close()
