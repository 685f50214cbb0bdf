"""Task sequences: ordered tasks that share one observation space and one action space."""

from __future__ import annotations

import numbers
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from psp_rl.checks import is_int
from psp_rl.envs.episodes import check_carryable
from psp_rl.envs.factories import FACTORIES, make_atari_env
from psp_rl.envs.wrappers import TaskObservation


@dataclass(frozen=True)
class TaskSpec:
    """One task of a sequence.

    :param name: a short unique name (``"long-pole"``).
    :param make_env: a factory called as ``make_env(training=..., **params)``.
    :param params: the factory's keyword arguments (env id, physics parameters, ...).
    :param steps: environment steps to train on this task.
    """

    name: str
    make_env: Callable[..., gym.Env]
    params: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 10_000

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name={self.name!r}: expected a non-empty string")
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps <= 0:
            raise ValueError(f"task {self.name!r}: steps={self.steps!r}, expected a positive int")

    def build(self, training: bool = True, render_mode: str | None = None) -> gym.Env:
        """The task's raw environment (without the task id); ``render_mode`` is gymnasium's
        (``"rgb_array"`` for a video), passed to the factory only when given."""
        rendering = {} if render_mode is None else {"render_mode": render_mode}
        try:
            return self.make_env(training=training, **rendering, **self.params)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"task {self.name!r}: {exc}") from exc


class TaskSequence:
    """An ordered list of tasks sharing observation and action spaces, optionally cycled.

    Task ids are positions in ``tasks``; a cycled sequence revisits the same ids (CORA cycles
    its Atari games), so the agent's contexts stay tied to the game, not to the visit.

    :param tasks: the tasks, in training order.
    :param name: the sequence's name.
    :param cycles: how many times the whole sequence is trained.
    :param max_tasks: capacity of the ``task`` entry of the observation (default: ``len(tasks)``).
    :param task_ids: ``"announced"``: every observation's ``task`` entry is the task's id;
        ``"hidden"``: it is always 0, so the agent must tell the tasks apart itself (the loop still
        knows the schedule, to evaluate each task and to score a change detector).
    :param switch: ``"reset"``: training starts fresh episodes at every switch (and every chunk);
        ``"mid_episode"``: the running episodes go on under the next task's physics, from the state
        they were in (:mod:`psp_rl.envs.episodes`; classic-control envs only, one-env-per-process
        vec envs), and chunks inside a task go on with them too.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        *,
        name: str = "custom",
        cycles: int = 1,
        max_tasks: int | None = None,
        task_ids: str = "announced",
        switch: str = "reset",
    ) -> None:
        if not tasks:
            raise ValueError(f"sequence {name!r}: tasks is empty; expected at least one TaskSpec")
        names = [t.name for t in tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sequence {name!r}: task names must be unique, repeated: {duplicates}")
        if not is_int(cycles) or cycles < 1:
            raise ValueError(f"sequence {name!r}: cycles={cycles!r}, expected a positive int")
        max_tasks = len(tasks) if max_tasks is None else max_tasks
        if not is_int(max_tasks) or max_tasks < len(tasks):
            raise ValueError(f"sequence {name!r}: max_tasks={max_tasks!r}, expected an int >= {len(tasks)}")
        if task_ids not in TASK_IDS:
            raise ValueError(f"sequence {name!r}: task_ids={task_ids!r}, expected one of {list(TASK_IDS)}")
        if switch not in SWITCHES:
            raise ValueError(f"sequence {name!r}: switch={switch!r}, expected one of {list(SWITCHES)}")
        self.tasks, self.name, self.cycles, self.max_tasks = list(tasks), name, cycles, max_tasks
        self.task_ids, self.switch = task_ids, switch
        self.observation_space, self.action_space = self._shared_spaces()

    def _shared_spaces(self) -> tuple[gym.spaces.Dict, gym.spaces.Space]:
        first = None
        for i, task in enumerate(self.tasks):
            env = self.make_env(i)
            obs_space, act_space = env.observation_space, env.action_space
            if self.switch == "mid_episode":
                check_carryable(env, task.name)
            env.close()
            if first is None:
                first = (task.name, obs_space, act_space)
                continue
            for what, mine, theirs in (
                ("observation_space", obs_space, first[1]),
                ("action_space", act_space, first[2]),
            ):
                if mine != theirs:
                    raise ValueError(
                        f"task {task.name!r}: {what} {mine} differs from task {first[0]!r}'s {theirs}; "
                        "the tasks of one sequence must share their spaces"
                    )
        return first[1], first[2]

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self.tasks)

    def __getitem__(self, task: int | str) -> TaskSpec:
        return self.tasks[self.index(task)]

    def __repr__(self) -> str:
        hidden = ", task_ids='hidden'" if self.hidden else ""
        switch = ", switch='mid_episode'" if self.switch == "mid_episode" else ""
        return (
            f"TaskSequence({self.name!r}, tasks={[t.name for t in self.tasks]}, cycles={self.cycles}{hidden}{switch})"
        )

    @property
    def hidden(self) -> bool:
        """Whether observations hide the task id (``task_ids="hidden"``)."""
        return self.task_ids == "hidden"

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def spaces(self) -> tuple[gym.spaces.Dict, gym.spaces.Space]:
        """The ``{"obs", "task"}`` observation space and the action space every task shares."""
        return self.observation_space, self.action_space

    @property
    def schedule(self) -> list[int]:
        """Task ids in training order, cycles included."""
        return list(range(len(self.tasks))) * self.cycles

    def index(self, task: int | str) -> int:
        """The id of a task given by id or name."""
        if isinstance(task, str):
            if task not in self.names:
                raise ValueError(f"task {task!r}: not in sequence {self.name!r}; tasks are {self.names}")
            return self.names.index(task)
        if not is_int(task) or not 0 <= task < len(self.tasks):
            raise ValueError(f"task={task!r}: expected a task name or an id in [0, {len(self.tasks)})")
        return int(task)

    def make_env(
        self, task: int | str, seed: int | None = None, *, training: bool = True, render_mode: str | None = None
    ) -> TaskObservation:
        """One env of ``task`` with ``{"obs", "task"}`` observations, seeded when ``seed`` is given
        (``task`` is 0 in every observation when the ids are hidden); ``render_mode`` as
        :meth:`TaskSpec.build`."""
        tid = self.index(task)
        env = TaskObservation(self.tasks[tid].build(training, render_mode), 0 if self.hidden else tid, self.max_tasks)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def make_vec_env(
        self,
        task: int | str,
        n_envs: int = 1,
        seed: int | None = None,
        *,
        training: bool = True,
        vec_env: str = "dummy",
        max_episode_steps: int | None = None,
        env_threads: int = 1,
    ):
        """An SB3 vec env of ``n_envs`` monitored envs of ``task``; env ``i`` is seeded ``seed + i``.

        :param vec_env: ``"dummy"`` (``DummyVecEnv``: envs step in this process), ``"subproc"``
            (``SubprocVecEnv``: one worker process per env; workers ignore SIGINT and SIGTERM, so a
            Ctrl-C reaches the training process alone and a graceful stop can still step them) or
            ``"ale"`` (Atari tasks only: ale-py's C++ vector env, :mod:`psp_rl.envs.atari_vector`).
        :param max_episode_steps: cut episodes after this many steps (an evaluation's cap).
        :param env_threads: ``"ale"``: its C++ threads (0: one per core; the steps are the same for any count).
        """
        # Imported here: psp_rl.envs itself depends on gymnasium only (no torch at import).
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        if not is_int(n_envs) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r}: expected a positive int")
        self.check_vec_env(vec_env)
        if vec_env == "ale":
            return self._ale_vec_env(self.index(task), n_envs, seed, training, max_episode_steps, env_threads)
        factory = _MonitoredTask(self, self.index(task), training, max_episode_steps, vec_env == "subproc")
        venv = (SubprocVecEnv if vec_env == "subproc" else DummyVecEnv)([factory] * n_envs)
        if seed is not None:
            venv.seed(seed)
        return venv

    def check_vec_env(self, vec_env: str) -> None:
        """``ValueError`` unless every task can step in ``vec_env`` (``"ale"``: Atari tasks only)."""
        if vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env={vec_env!r}: expected one of {list(VEC_ENVS)}")
        others = [spec.name for spec in self.tasks if vec_env == "ale" and spec.make_env is not make_atari_env]
        if others:
            raise ValueError(
                f"vec_env='ale' steps Atari games only; task(s) {others} are not; expected dummy or subproc"
            )

    def _ale_vec_env(
        self, task: int, n_envs: int, seed: int | None, training: bool, max_episode_steps: int | None, threads: int
    ):
        """``n_envs`` envs of Atari task ``task`` on ale-py's vector env, monitored (SB3's episode info)."""
        from stable_baselines3.common.vec_env import VecMonitor

        from psp_rl.envs.atari_vector import AtariTaskVecEnv

        params = dict(self.tasks[task].params)
        if params.pop("terminal_on_life_loss", False):
            raise ValueError(f"task {self.tasks[task].name!r}: vec_env='ale' has no life-loss terminal; use dummy")
        env = AtariTaskVecEnv(
            params.pop("game"),
            n_envs,
            0 if self.hidden else task,
            self.max_tasks,
            training=training,
            max_episode_steps=max_episode_steps,
            num_threads=threads,
            **params,
        )
        if seed is not None:
            env.seed(seed)
        return VecMonitor(env)


VEC_ENVS = ("dummy", "subproc", "ale")
TASK_IDS = ("announced", "hidden")
SWITCHES = ("reset", "mid_episode")


@dataclass(frozen=True)
class _MonitoredTask:
    """Builds one monitored env of a task; picklable, so subprocess workers can call it."""

    sequence: TaskSequence
    task: int
    training: bool
    max_episode_steps: int | None
    in_worker: bool

    def __call__(self) -> gym.Env:
        from stable_baselines3.common.monitor import Monitor

        if self.in_worker:
            # The terminal sends Ctrl-C to the whole process group (batch systems SIGTERM); a worker
            # that exited on it would break the parent's graceful stop (its next step raises
            # BrokenPipeError). A worker whose parent died exits on the closed pipe.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        env: gym.Env = self.sequence.make_env(self.task, training=self.training)
        if self.max_episode_steps is not None:
            env = gym.wrappers.TimeLimit(env, self.max_episode_steps)
        return Monitor(env)


def _task_from_spec(spec: Mapping[str, Any], where: str, default_steps: int | None) -> TaskSpec:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {spec!r}")
    known = {"name", "env_id", "atari", "minatar", "params", "steps"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    sources = [k for k in ("env_id", "atari", "minatar") if k in spec]
    if len(sources) != 1:
        raise ValueError(f"{where}: expected exactly one of env_id, atari, minatar; got {sources or 'none'}")
    source = sources[0]
    if not isinstance(spec.get("params") or {}, Mapping):
        raise ValueError(f"{where}.params: expected a mapping of parameter -> value, got {spec['params']!r}")
    params = dict(spec.get("params") or {})
    key = {"env_id": "env_id", "atari": "game", "minatar": "game"}[source]
    factory = FACTORIES["gym" if source == "env_id" else source]
    params[key] = spec[source]
    steps = spec.get("steps", default_steps)
    if steps is None:
        raise ValueError(f"{where}.steps: missing; give steps per task or a sequence-wide steps")
    name = spec.get("name", f"{spec[source]}-{where.rsplit('[', 1)[-1].rstrip(']')}")
    try:
        return TaskSpec(name=name, make_env=factory, params=params, steps=steps)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def sequence_from_spec(spec: Mapping[str, Any]) -> TaskSequence:
    """Build a sequence from a dict / YAML mapping, so users define sequences without code.

    ```yaml
    name: my-cartpoles
    steps: 20000            # default steps per task
    cycles: 1
    tasks:
      - {name: default, env_id: CartPole-v1}
      - {name: heavy, env_id: CartPole-v1, params: {masspole: 0.5}}
      - {name: pong, atari: Pong}       # or minatar: Breakout
    ```
    Errors name the task and field: ``tasks[1].params: parameter 'gravty': ...``.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"sequence spec: expected a mapping, got {spec!r}")
    keys = ("name", "tasks", "steps", "cycles", "max_tasks", "task_ids", "switch")
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ValueError(f"sequence spec: unknown key(s) {unknown}; expected {', '.join(keys)}")
    tasks_spec = spec.get("tasks")
    if not isinstance(tasks_spec, Sequence) or isinstance(tasks_spec, str) or not tasks_spec:
        raise ValueError(f"sequence spec: tasks={tasks_spec!r}, expected a non-empty list of tasks")
    tasks = [_task_from_spec(t, f"tasks[{i}]", spec.get("steps")) for i, t in enumerate(tasks_spec)]
    return TaskSequence(
        tasks,
        name=spec.get("name", "custom"),
        cycles=spec.get("cycles", 1),
        max_tasks=spec.get("max_tasks"),
        task_ids=spec.get("task_ids", "announced"),
        switch=spec.get("switch", "reset"),
    )
