"""SB3 policies that read ``{"obs", "task"}`` observations and route the task to every superposed layer.

``DQN(PSPDQNPolicy, env)`` and ``PPO(PSPActorCriticPolicy, env)`` work with SB3's own machinery:
target networks, ``predict``, ``evaluate_policy``, ``save``/``load``, Dummy/Subproc vec envs.

The task id reaches the policy as the raw integer (SB3 would one-hot a ``Discrete`` entry in
``preprocess_obs``; these policies preprocess only the ``obs`` entry and read ``task`` directly,
so no ``argmax`` round trip). The capacity stays in the space: ``Discrete(max_tasks)`` sizes the
contexts and an id outside it raises ``ValueError`` in the first superposed layer.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import is_image_space, maybe_transpose, preprocess_obs
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import is_vectorized_observation
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from psp_rl.contexts import Context, drift_context, mixture_contexts
from psp_rl.networks import DuelingHead, LayerIds, build_head, build_torso, orthogonal_init
from psp_rl.settings import PSPSettings

ACTINGS = ("q", "distilled", "auto")


def trained_parameters(policy: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of an SB3 policy that training moves, by name: not its target networks (SB3
    names them ``*_target``, e.g. DQN's ``q_net_target``), which are lagged copies."""
    return {name: p for name, p in policy.named_parameters() if not name.split(".")[0].endswith("_target")}


def check_task_observation_space(observation_space: spaces.Space) -> tuple[spaces.Box, int]:
    """Return ``(obs_space, num_tasks)`` of a ``{"obs": Box, "task": Discrete(n)}`` space (a
    drifting task adds ``"theta": Box(0, 1, (1,))``), else raise."""
    keys = set(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else set()
    if keys not in ({"obs", "task"}, {"obs", "task", "theta"}):
        raise ValueError(
            f"observation_space {observation_space}: expected Dict({{'obs': Box, 'task': Discrete(max_tasks)}}), "
            "with 'theta' for a drifting task; wrap the env with psp_rl.envs.TaskObservation "
            "(TaskSequence.make_env does)"
        )
    obs_space, task_space = observation_space["obs"], observation_space["task"]
    if not isinstance(obs_space, spaces.Box):
        raise ValueError(f"observation_space['obs'] {obs_space}: expected a Box")
    if not isinstance(task_space, spaces.Discrete) or int(task_space.start) != 0:
        raise ValueError(f"observation_space['task'] {task_space}: expected Discrete(max_tasks) starting at 0")
    return obs_space, int(task_space.n)


def drift_slot(theta: torch.Tensor, num_tasks: int, drift: str) -> torch.Tensor:
    """The context of each ``theta`` in ``[0, 1]``: the nearest of ``num_tasks`` grid points
    (``smooth``, ``mixture``) or its bin of width ``1 / num_tasks`` (``binned``)."""
    theta = theta.reshape(-1).clamp(0.0, 1.0)
    if drift in ("smooth", "mixture"):
        return torch.round(theta * (num_tasks - 1)).long()
    return torch.clamp((theta * num_tasks).long(), max=num_tasks - 1)  # binned, smooth_bins


def drift_grid(num_tasks: int, drift: str) -> list[float]:
    """The ``theta`` each slot's smooth context is drawn at: the grid ``k / (num_tasks - 1)``, ends
    included (``smooth``), or the centres ``(k + 1/2) / num_tasks`` of equal bins (``smooth_bins``:
    every slot sees the same share of a sweep, where the grid's two end slots see half; measured on
    the force drift, the end slot played its own value worst, 137 against 379-444 next to it)."""
    if drift == "smooth_bins":
        return [(k + 0.5) / num_tasks for k in range(num_tasks)]
    return [k / max(num_tasks - 1, 1) for k in range(num_tasks)]


def split_observation(
    obs: PyTorchObs,
    observation_space: spaces.Dict,
    normalize_images: bool,
    drift: str = "none",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, int | torch.Tensor]:
    """``(preprocessed obs (batch, ...), task)`` from a Dict observation batch.

    ``memory_format`` is the layout of the torso the observation goes to
    (:attr:`~psp_rl.networks.TaskSequential.memory_format`): images are scaled straight into a
    ``channels_last`` one, one pass over the batch instead of a scaling and a copy (the same values).

    ``task`` is an ``int`` when the whole batch is one task (a rollout, a single-task replay
    batch): every layer then takes its fast path without re-checking ids. Otherwise it is the
    ``(batch,)`` int64 tensor of ids. With ``drift`` other than ``"none"`` the ``theta`` entry
    picks the context (:func:`drift_slot`) instead of the ``task`` entry.
    """
    raw, space = obs["obs"], observation_space["obs"]
    if memory_format == torch.channels_last and normalize_images and is_image_space(space, check_channels=False):
        x = torch.empty(raw.shape, dtype=torch.float32, device=raw.device, memory_format=memory_format)
        torch.div(raw, 255.0, out=x)
    else:
        x = preprocess_obs(raw, space, normalize_images=normalize_images)
    if drift != "none":
        if "theta" not in obs:
            raise ValueError(f"drift={drift!r}: the observation has no 'theta' entry (the task does not drift)")
        task = drift_slot(obs["theta"], int(observation_space["task"].n), drift)
    else:  # replay and rollout buffers store a Discrete entry as shape (batch, 1); predict gives (batch,)
        task = obs["task"].reshape(-1).long()
    if task.numel() == 1:  # one env's step: its id (one sync)
        return x, int(task)
    if task.numel():  # one task: its smallest id is its largest (one op and one sync on the hot path)
        low, high = torch.aminmax(task)
        if (ids := torch.stack((low, high)).tolist())[0] == ids[1]:
            return x, ids[0]
    return x, task


def fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, for the losses under bf16 autocast (no op dispatched when it already is:
    a head's output is, in fp32 runs, at every env step)."""
    return x if x.dtype == torch.float32 else x.float()


def use_drift_contexts(module: nn.Module, psp: PSPSettings) -> None:
    """With ``psp.drift`` ``smooth``, ``smooth_bins`` or ``mixture``, give every superposed layer of ``module`` the
    drift contexts of its task slots (regenerated at every construction, a load included, as the
    others are)."""
    if psp.drift not in ("smooth", "smooth_bins", "mixture"):
        return
    for layer in module.modules():
        if isinstance(getattr(layer, "contexts", None), Context) and layer.context == psp.context:
            size, where = layer.contexts.size, dict(seed=layer.seed, layer=layer.layer_id)
            if psp.drift == "mixture":
                layer.contexts.assign(mixture_contexts(psp.context, size, layer.num_tasks, **where))
                continue
            grid = drift_grid(layer.num_tasks, psp.drift)
            layer.contexts.assign(torch.stack([drift_context(psp.context, size, t, **where) for t in grid]))


class PSPQNetwork(BasePolicy):
    """A superposed Q-network: ``Q(obs, .) = head(torso(obs, task), task)``.

    :param observation_space: ``{"obs": Box, "task": Discrete(max_tasks)}``.
    :param action_space: ``Discrete(n_actions)``.
    :param psp: how the network superposes its tasks (:class:`~psp_rl.settings.PSPSettings`:
        context, context seed, torso, input layer, heads, separate networks, centring).
    :param net_arch: MLP hidden widths (default ``[256, 256]``); ignored by CNN torsos.
    :param activation_fn: MLP activation.
    :param normalize_images: divide uint8 frames by 255.
    :param dueling: a dueling head, ``Q = V + A - mean(A)``, both streams superposed.
    :param acting: ``"q"`` acts greedily on Q for every task; ``"distilled"`` adds a small
        superposed policy network (its own ``distil_arch`` tanh torso and a logit head) into
        which each finished task's greedy policy is distilled (:meth:`distil`); a task marked
        in ``distilled`` then acts from its logits, whose margins are large, instead of from
        Q-values whose gaps are a small fraction of Q (see ``psp_rl.plugins.probes``).
        For frames the distilled policy is a second CNN of Q's torso kind. ``"auto"``:
        ``"distilled"`` for flat observations, ``"q"`` for images (what runs saved before image
        distillation existed built; they resume as they ran).
    :param distil_arch: hidden widths of the distilled policy's MLP torso (default ``[64, 64]``).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        psp: PSPSettings | None = None,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        dueling: bool = False,
        acting: str = "q",
        distil_arch: list[int] | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=normalize_images)
        if acting not in ACTINGS:
            raise ValueError(f"acting={acting!r}: expected one of {list(ACTINGS)}")
        obs_space, num_tasks = check_task_observation_space(observation_space)
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"action_space {action_space}: a Q-network needs Discrete actions")
        self.psp = psp = PSPSettings.of(psp)
        self.net_arch, self.activation_fn = net_arch, activation_fn
        self.dueling, self.acting, self.distil_arch = dueling, acting, distil_arch
        self.torso = build_torso(obs_space.shape, num_tasks, psp, net_arch=net_arch, activation_fn=activation_fn)
        n_actions, latent = int(action_space.n), self.torso.latent_dim
        # The advantage stream keeps the plain head's layer id, so its contexts are the same.
        q_head = build_head(latent, n_actions, num_tasks, psp, layer_id=LayerIds.Q_HEAD)
        if dueling:
            value = build_head(latent, 1, num_tasks, psp, layer_id=LayerIds.DUELING_VALUE_HEAD)
            q_head = DuelingHead(value, q_head)
        self.q_head = q_head
        self.policy_torso = self.policy_head = None
        if acting == "distilled" or (acting == "auto" and len(obs_space.shape) == 1):
            if len(obs_space.shape) == 1:
                self.policy_torso = build_torso(
                    obs_space.shape,
                    num_tasks,
                    replace(psp, torso="mlp"),
                    net_arch=[64, 64] if distil_arch is None else distil_arch,
                    layer_offset=LayerIds.DISTILLED_TORSO,
                    activation_fn=nn.Tanh,
                )
                # The logit head reads tanh features (near zero-mean) and was measured uncentred.
                head_psp = replace(psp, center=False)
            else:
                if distil_arch is not None:
                    raise ValueError(
                        f"distil_arch={distil_arch!r}: the distilled policy of image observations has "
                        "Q's CNN torso; distil_arch sets MLP widths"
                    )
                # Frames: a second CNN of Q's torso kind, whose ReLU features are centred as Q's are.
                self.policy_torso = build_torso(obs_space.shape, num_tasks, psp, layer_offset=LayerIds.DISTILLED_TORSO)
                head_psp = psp
            self.policy_head = build_head(
                self.policy_torso.latent_dim, n_actions, num_tasks, head_psp, layer_id=LayerIds.DISTILLED_HEAD
            )
            # Which tasks act from the distilled policy (saved with the weights: a resume keeps it).
            self.register_buffer("distilled", torch.zeros(num_tasks, dtype=torch.bool))
        if psp.init == "orthogonal":  # the torsos' gain for ReLU, the output layers' 1
            for torso in (self.torso, self.policy_torso):
                if torso is not None:
                    orthogonal_init(torso, math.sqrt(2))
            for head in (self.q_head, self.policy_head):
                if head is not None:
                    orthogonal_init(head, 1.0)
        use_drift_contexts(self, psp)

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        x, task = split_observation(
            obs, self.observation_space, self.normalize_images, self.psp.drift, self.torso.memory_format
        )
        return fp32(self.q_head(self.torso(x, task), task))

    def set_training_mode(self, mode: bool) -> None:
        """As SB3's, skipped when nothing would change: SB3 calls it at every env step and every
        update, and walking the module tree (two torsos with a distilled policy) cost ~10% of a
        CartPole update. Only centring layers read the mode; they and this module are checked."""
        if self.training == mode and all(layer.training == mode for layer in self._mode_readers()):
            return
        self.train(mode)

    def _mode_readers(self) -> list[nn.Module]:
        if getattr(self, "_mode_reader_cache", None) is None:
            self._mode_reader_cache = [m for m in self.modules() if getattr(m, "center", False) is True]
        return self._mode_reader_cache

    def policy_logits(self, obs: PyTorchObs) -> torch.Tensor:
        """The distilled policy's action logits, ``(batch, n_actions)`` (``acting="distilled"``)."""
        if self.policy_torso is None or self.policy_head is None:
            raise ValueError("policy_logits: this Q-network has no distilled policy (acting='q')")
        x, task = split_observation(
            obs, self.observation_space, self.normalize_images, self.psp.drift, self.policy_torso.memory_format
        )
        return self.policy_head(self.policy_torso(x, task), task)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> torch.Tensor:
        actions = self(observation).argmax(dim=1).reshape(-1)
        if self.policy_torso is None or not bool(self.distilled.any()):
            return actions
        from_policy = self.distilled[observation["task"].reshape(-1).long()]
        if not bool(from_policy.any()):
            return actions
        return torch.where(from_policy, self.policy_logits(observation).argmax(dim=1), actions)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            psp=self.psp,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            dueling=self.dueling,
            acting=self.acting,
            distil_arch=self.distil_arch,
        )
        return data


class _TaskObsToTensor:
    """SB3's ``obs_to_tensor`` for ``{"obs", "task"}`` observations, without its deep copy of the
    dict (a fresh dict of copied arrays serves the same purpose), a part of every env step.

    ``device`` is read from one parameter kept at the first call: SB3's property walks the whole
    module tree to find a first parameter, at every env step (two torsos with a distilled policy
    made it ~5% of a CartPole step). Moving the policy (``to``, ``cuda``: ``_apply``, which may put
    new parameters in place) forgets the kept one."""

    observation_space: spaces.Dict

    @property
    def device(self) -> torch.device:
        probe = self.__dict__.get("_device_probe")
        if probe is None:  # a tuple, so that nn.Module does not register the parameter twice
            probe = self.__dict__["_device_probe"] = (next(self.parameters(), None),)  # type: ignore[attr-defined]
        return probe[0].device if probe[0] is not None else torch.device("cpu")

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self.__dict__.pop("_device_probe", None)
        return super()._apply(fn, recurse)  # type: ignore[misc]

    def obs_to_tensor(self, observation: Any) -> tuple[PyTorchObs, bool]:
        if not isinstance(observation, dict):
            return super().obs_to_tensor(observation)  # type: ignore[misc]
        tensors, vectorized, device = {}, False, self.device
        for key, value in observation.items():
            space = self.observation_space.spaces[key]
            array = np.array(maybe_transpose(value, space) if is_image_space(space) else value)  # a copy
            vectorized = vectorized or is_vectorized_observation(array, space)
            tensors[key] = torch.as_tensor(array.reshape((-1, *space.shape)), device=device)
        return tensors, vectorized


class PSPDQNPolicy(_TaskObsToTensor, DQNPolicy):
    """DQN policy with superposed Q-networks (online and target share their contexts).

    Use as ``DQN(PSPDQNPolicy, env, policy_kwargs=dict(context="binary"))``: the PSP settings come
    as one :class:`~psp_rl.settings.PSPSettings` (``psp=``) or as its fields by name (``context``,
    ``context_seed``, ``torso``, ``input_layer``, ``heads``, ``separate``, ``center``). ``dueling``,
    ``acting`` and ``distil_arch`` are :class:`PSPQNetwork`'s.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        psp: PSPSettings | None = None,
        dueling: bool = False,
        acting: str = "q",
        distil_arch: list[int] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        check_task_observation_space(observation_space)
        # Set before super().__init__, which builds the networks through make_q_net.
        self.psp = PSPSettings.of(psp, **settings)
        self._q_kwargs = dict(dueling=dueling, acting=acting, distil_arch=distil_arch)
        if optimizer_class is torch.optim.Adam:
            # Adam's fused kernel: one pass per tensor where the default makes ~6 small ops (one step
            # on the CartPole Q-network, one thread: 580 -> 153 us, a fifth of an update). A run saved
            # before keeps its optimizer's unfused setting on resume (it is part of the saved state).
            optimizer_kwargs = {"fused": True, **(optimizer_kwargs or {})}
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def make_q_net(self) -> PSPQNetwork:
        return PSPQNetwork(
            self.observation_space,
            self.action_space,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            normalize_images=self.normalize_images,
            psp=self.psp,
            **self._q_kwargs,
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        data.update(self._q_kwargs, psp=self.psp)
        return data


class PSPActorCriticPolicy(_TaskObsToTensor, ActorCriticPolicy):
    """Actor-critic policy (PPO, A2C) with superposed torsos and heads.

    Discrete actions get a categorical actor, ``Box`` actions a diagonal Gaussian with one
    learned ``log_std`` per task. MLP observations get separate actor and critic torsos (as
    SB3's MlpPolicy), image observations one shared CNN torso (as SB3's CnnPolicy), unless
    ``share_torso`` says otherwise.

    :param net_arch: MLP hidden widths (default ``[64, 64]`` as SB3's PPO).
    :param activation_fn: MLP activation (default ``Tanh`` as SB3's PPO).
    :param psp: how the networks superpose their tasks (:class:`~psp_rl.settings.PSPSettings`), or
        its fields by name (``context``, ``context_seed``, ``torso``, ``input_layer``, ``heads``,
        ``separate``, ``center``: superposed layers centre their inputs per task, as PSP-DQN's do).
    :param share_torso: one torso for actor and critic (default: only for image observations).
    :param log_std_init: initial log standard deviation of Gaussian actions.
    :param use_sde: must be False (gSDE is not supported).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        psp: PSPSettings | None = None,
        share_torso: bool | None = None,
        log_std_init: float = 0.0,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
        **settings: Any,
    ) -> None:
        obs_space, _ = check_task_observation_space(observation_space)
        if use_sde:  # the on-policy algorithms pass it; state-dependent noise is not superposed here
            raise ValueError("use_sde=True: not supported by PSPActorCriticPolicy; use use_sde=False")
        if not isinstance(action_space, spaces.Discrete | spaces.Box):
            raise ValueError(f"action_space {action_space}: expected Discrete or Box")
        self.psp = PSPSettings.of(psp, **settings)
        self.share_torso = len(obs_space.shape) == 3 if share_torso is None else share_torso
        self._psp_net_arch = [64, 64] if net_arch is None else net_arch
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            activation_fn=activation_fn,
            ortho_init=False,  # the layers keep torch's initialisation (variance-matched)
            log_std_init=log_std_init,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        obs_space, num_tasks = check_task_observation_space(self.observation_space)
        torso_kwargs = dict(net_arch=self._psp_net_arch, activation_fn=self.activation_fn)
        self.pi_torso = build_torso(obs_space.shape, num_tasks, self.psp, **torso_kwargs)
        self.vf_torso = (
            self.pi_torso
            if self.share_torso
            else build_torso(obs_space.shape, num_tasks, self.psp, layer_offset=LayerIds.CRITIC_TORSO, **torso_kwargs)
        )
        latent = self.pi_torso.latent_dim
        n_out = (
            int(self.action_space.n) if isinstance(self.action_space, spaces.Discrete) else self.action_space.shape[0]
        )
        self.action_head = build_head(latent, n_out, num_tasks, self.psp, layer_id=LayerIds.ACTION_HEAD)
        self.value_head = build_head(latent, 1, num_tasks, self.psp, layer_id=LayerIds.VALUE_HEAD)
        if self.psp.init == "orthogonal":  # SB3's ortho_init gains: torsos sqrt(2), actor 0.01, critic 1
            # In a fixed order (a set's would follow memory addresses): the same seed, the same weights.
            for torso in dict.fromkeys((self.pi_torso, self.vf_torso)):
                orthogonal_init(torso, math.sqrt(2))
            orthogonal_init(self.action_head, 0.01)
            orthogonal_init(self.value_head, 1.0)
        else:
            with torch.no_grad():  # small initial actions, as SB3's 0.01-gain actor init
                for param in self.action_head.parameters():
                    param.mul_(0.01)
        if isinstance(self.action_space, spaces.Box):
            self.log_std = nn.Parameter(torch.full((num_tasks, n_out), float(self.log_std_init)))
        use_drift_contexts(self, self.psp)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _latents(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor, int | torch.Tensor]:
        x, task = split_observation(
            obs, self.observation_space, self.normalize_images, self.psp.drift, self.pi_torso.memory_format
        )
        latent_pi = self.pi_torso(x, task)
        latent_vf = latent_pi if self.vf_torso is self.pi_torso else self.vf_torso(x, task)
        return latent_pi, latent_vf, task

    def _distribution(self, latent_pi: torch.Tensor, task: int | torch.Tensor) -> Distribution:
        out = fp32(self.action_head(latent_pi, task))
        if isinstance(self.action_dist, CategoricalDistribution):
            return self.action_dist.proba_distribution(action_logits=out)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            return self.action_dist.proba_distribution(out, self.log_std[task])
        raise ValueError(f"action distribution {type(self.action_dist).__name__}: not supported")

    def _value(self, latent_vf: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        return fp32(self.value_head(latent_vf, task))

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[torch.Tensor, ...]:
        latent_pi, latent_vf, task = self._latents(obs)
        distribution = self._distribution(latent_pi, task)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))
        return actions, self._value(latent_vf, task), log_prob

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latent_pi, latent_vf, task = self._latents(obs)
        distribution = self._distribution(latent_pi, task)
        return self._value(latent_vf, task), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        # Acting needs the actor only: the critic's torso is not run (a third of predict's time).
        x, task = split_observation(
            obs, self.observation_space, self.normalize_images, self.psp.drift, self.pi_torso.memory_format
        )
        return self._distribution(self.pi_torso(x, task), task)

    def set_training_mode(self, mode: bool) -> None:
        """As SB3's, skipped when the mode is already set: ``predict`` calls it at every env step,
        and walking the module tree cost a fifth of an evaluation step (no layer here reads the
        mode, so the check on this module is enough)."""
        if self.training != mode:
            self.train(mode)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        x, task = split_observation(
            obs, self.observation_space, self.normalize_images, self.psp.drift, self.vf_torso.memory_format
        )
        return self._value(self.vf_torso(x, task), task)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in (
            "ortho_init",
            "use_sde",
            "full_std",
            "use_expln",
            "squash_output",
            "sde_net_arch",
            "features_extractor_class",
            "features_extractor_kwargs",
            "share_features_extractor",
        ):
            data.pop(key, None)
        data.update(psp=self.psp, share_torso=self.share_torso, net_arch=self._psp_net_arch)
        return data
