"""The engine: the continual loop, its callbacks, evaluation, metrics, checkpoints and run directory.

It is handed its parts (an agent factory, a task sequence, settings objects, callbacks) and imports
nothing of the config: :mod:`psp_rl.config` builds a run from a YAML file, :mod:`psp_rl.plugins`
holds the callbacks the baselines and task inference bring.
"""

from psp_rl.continual.callbacks import ContinualCallback, LoopView
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.loop import ContinualLoop
from psp_rl.continual.metrics import compute_metrics
from psp_rl.continual.parts import AgentFactory, RunIdentity, SettingsIdentity
from psp_rl.continual.run_dir import RunDir
from psp_rl.continual.settings import CheckpointConfig, EvalConfig

__all__ = [
    "AgentFactory",
    "CheckpointConfig",
    "ContinualCallback",
    "ContinualLoop",
    "EvalConfig",
    "LoopView",
    "RunDir",
    "RunIdentity",
    "SettingsIdentity",
    "compute_metrics",
    "evaluate_tasks",
]
