import numpy as np
import pytest
import torch
from torch import nn

from psp_rl.layers import SuperposedConv2d, SuperposedLinear
from psp_rl.networks import PerTaskLinear, RandomExpansion, build_head, build_torso, mlp_torso, orthogonal_init
from psp_rl.settings import PSPSettings


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("shape", "first"), [((4,), PerTaskLinear), ((10, 10, 10), SuperposedConv2d)])
def test_auto_torso_picks_by_observation_shape(shape, first):
    torso = build_torso(shape, 3, "binary")
    assert isinstance(torso.layers[0], first)
    out = torso(torch.zeros(5, *shape), torch.tensor([0, 1, 2, 0, 1]))
    assert out.shape == (5, torso.latent_dim)


def test_nature_cnn_infers_its_flat_size():
    torso = build_torso((4, 84, 84), 2, "complex")
    linear = [m for m in torso.layers if isinstance(m, SuperposedLinear)][0]
    assert linear.in_features == 3136 and torso.latent_dim == 512
    assert torso(torch.rand(2, 4, 84, 84), 1).shape == (2, 512)


@pytest.mark.parametrize("input_layer", ["per_task", "expand", "superposed"])
def test_mlp_input_layer_options(input_layer):
    torso = mlp_torso(4, [32, 32], 3, PSPSettings("binary", input_layer=input_layer))
    kinds = {"per_task": PerTaskLinear, "expand": RandomExpansion, "superposed": SuperposedLinear}
    assert isinstance(torso.layers[0], kinds[input_layer])
    x = torch.randn(6, 4)
    mixed = torso(x, torch.tensor([0, 1, 2, 2, 1, 0]))
    for i, t in enumerate([0, 1, 2, 2, 1, 0]):
        torch.testing.assert_close(mixed[i], torso(x[i : i + 1], t)[0], atol=1e-6, rtol=0)


def test_none_context_is_the_plain_network_in_parameter_count():
    plain = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    torso = mlp_torso(4, [64, 64], 5, "none")
    head = build_head(64, 2, 5, "none", layer_id=9)
    assert _param_count(torso) + _param_count(head) == _param_count(plain)


def test_superposed_network_costs_only_per_task_biases_and_first_layer():
    plain = mlp_torso(64, [256, 256], 4, "none")
    psp = mlp_torso(64, [256, 256], 4, "binary")  # 64 wide: superposed first layer
    extra_bias = 3 * (256 + 256)  # 3 more tasks' biases per layer
    assert _param_count(psp) == _param_count(plain) + extra_bias


def test_layers_of_one_network_draw_different_contexts():
    torso = mlp_torso(64, [64, 64], 2, "binary")
    a, b = [m for m in torso.layers if isinstance(m, SuperposedLinear)]
    assert not torch.equal(a.contexts.table, b.contexts.table)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mlp_torso(4, [], 2), r"net_arch=\[\]"),
        (lambda: mlp_torso(4, [64, -1], 2), r"net_arch=\[64, -1\]"),
        (lambda: PSPSettings(input_layer="wide"), "input_layer='wide'"),
        (lambda: build_torso((4, 4), 2), r"observation shape \(4, 4\)"),
        (lambda: PSPSettings(torso="resnet"), "torso='resnet'"),
        (lambda: build_torso((4, 84, 84), 2, PSPSettings(torso="mlp")), "needs a flat observation"),
        (lambda: PSPSettings(heads="many"), "heads='many'"),
        (lambda: PerTaskLinear(4, 2, 2)(torch.zeros(1, 4), 2), r"task id 2 out of range \[0, 2\)"),
    ],
)
def test_bad_network_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_separate_torsos_are_independent_per_task():
    from psp_rl.networks import PerTaskConv2d

    torso = build_torso((3, 10, 10), 2, PSPSettings("none", separate=True))
    assert isinstance(torso.layers[0], PerTaskConv2d)
    x = torch.rand(4, 3, 10, 10)
    mixed = torso(x, torch.tensor([0, 1, 1, 0]))
    for i, t in enumerate([0, 1, 1, 0]):
        torch.testing.assert_close(mixed[i], torso(x[i : i + 1], t)[0], atol=1e-6, rtol=0)
    torso(x, 1).sum().backward()  # training task 1 leaves task 0's weights without gradient
    assert torso.layers[0].convs[0].weight.grad is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"context": "fourier"}, ValueError, "context='fourier' is not a context kind"),
        ({"context_seed": -1}, ValueError, "context_seed=-1: expected a non-negative int"),
        ({"separate": "yes"}, ValueError, "separate='yes': expected True or False"),
        ({"contxt": "binary"}, TypeError, r"unexpected keyword argument\(s\) \['contxt'\]"),
    ],
)
def test_bad_psp_settings_name_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        PSPSettings.of(None, **kwargs)


def test_psp_settings_object_and_loose_keywords_build_the_same_policy():
    """SB3's policy_kwargs name the settings one by one (as saved in every model.zip); ``psp=`` hands
    them as one object. Same settings, same seed: the same weights and contexts."""
    from psp_rl.agents import ContinualDQN
    from psp_rl.envs import get_sequence

    env = get_sequence("cartpole-shift", tasks=["default", "reversed"]).make_vec_env(0, seed=0)
    settings = PSPSettings("complex", context_seed=3, center=True)
    loose = ContinualDQN("PSPPolicy", env, seed=0, policy_kwargs=dict(context="complex", context_seed=3, center=True))
    whole = ContinualDQN("PSPPolicy", env, seed=0, policy_kwargs=dict(psp=settings))
    assert loose.policy.psp == whole.policy.psp == settings
    for (name, a), (_, b) in zip(loose.policy.state_dict().items(), whole.policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("context", ["binary", "none", "separate"])
def test_nature_cnn_computes_in_channels_last_with_the_same_values_and_state_dict(context):
    settings = PSPSettings(context="none", separate=True) if context == "separate" else PSPSettings(context=context)
    torch.manual_seed(0)
    torso = build_torso((4, 84, 84), 2, settings)
    frames, seen = torch.rand(3, 4, 84, 84), []
    first = torso.layers[0]
    first.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    fast = torso(frames, 1)
    torso.memory_format = torch.contiguous_format
    plain = torso(frames, 1)
    assert seen == [True, False]
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    minatar = build_torso((4, 10, 10), 2, settings)  # small frames are faster contiguous
    assert minatar.memory_format == torch.contiguous_format
    assert next(iter(torso.state_dict())).startswith("layers.0.")  # saved checkpoints' keys, no module added


def test_frames_are_scaled_straight_into_their_torsos_layout_with_preprocess_obs_values():
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import preprocess_obs

    from psp_rl.policies import split_observation

    space = spaces.Dict({"obs": spaces.Box(0, 255, (4, 84, 84), np.uint8), "task": spaces.Discrete(2)})
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    obs = {"obs": frames, "task": torch.ones(8, 1)}
    nature_cnn = build_torso((4, 84, 84), 2, PSPSettings()).memory_format  # the layout of the torso fed
    x, task = split_observation(obs, space, normalize_images=True, memory_format=nature_cnn)
    assert task == 1 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, preprocess_obs(frames, space["obs"], normalize_images=True))
    minatar_cnn = build_torso((4, 10, 10), 2, PSPSettings()).memory_format  # a contiguous torso: as SB3 scales
    assert split_observation(obs, space, normalize_images=True, memory_format=minatar_cnn)[0].is_contiguous()
    one_env = {"obs": frames[:1], "task": torch.tensor([[1]])}  # an env step: the id as an int, the fast path
    assert type(split_observation(one_env, space, normalize_images=True, memory_format=nature_cnn)[1]) is int


@pytest.mark.parametrize("context", ["binary", "complex", "rotation", "none"])
def test_orthogonal_init_makes_each_task_model_orthogonal(context):
    torso = mlp_torso(64, [32, 32], 3, PSPSettings(context))
    orthogonal_init(torso, gain=2.0)
    for layer in (m for m in torso.layers if isinstance(m, SuperposedLinear)):
        assert torch.count_nonzero(layer.bias) == 0
        for task in range(3):  # rows of W C_k orthogonal, scaled by the gain (a complex layer's halves each)
            weight = layer.task_weight(task) if context != "complex" else layer.weight
            gram = weight @ weight.T
            torch.testing.assert_close(gram, 4.0 * torch.eye(weight.shape[0]), atol=1e-4, rtol=0)


def test_orthogonal_init_initialises_separate_networks_per_task():
    torso = build_torso((4, 10, 10), 2, PSPSettings("none", separate=True))
    head = build_head(torso.latent_dim, 3, 2, PSPSettings("none", separate=True), layer_id=99)
    orthogonal_init(torso, gain=1.0)
    orthogonal_init(head, gain=1.0)
    for task in range(2):
        weight = head.weight[task]
        torch.testing.assert_close(weight @ weight.T, torch.eye(3), atol=1e-5, rtol=0)
    assert not torch.equal(head.weight[0], head.weight[1])  # independent draws
    convs = [m for m in torso.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(torch.count_nonzero(c.bias) == 0 for c in convs)


def test_nature_cnn_features_keep_their_scale_under_orthogonal_init():
    """The reason for the option: torch's default init shrinks the Nature CNN's features ~20x."""
    frames = torch.rand(16, 4, 84, 84)
    torso = build_torso((4, 84, 84), 2, "binary")
    default_rms = torso(frames, 0).pow(2).mean().sqrt()
    orthogonal_init(torso, gain=float(np.sqrt(2)))
    ortho_rms = torso(frames, 0).pow(2).mean().sqrt()
    assert ortho_rms > 5 * default_rms
