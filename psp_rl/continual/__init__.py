"""The continual loop: sequence trainer, evaluation matrix, metrics, TensorBoard, checkpoints, reports."""

from psp_rl.continual.build import trainer_from_config
from psp_rl.continual.callbacks import ContinualCallback, LoopView
from psp_rl.continual.checkpoints import CheckpointError
from psp_rl.continual.config import ConfigError, RunConfig, load_config, parse_config
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.loop import ContinualLoop, NumericalError, RunInterrupted
from psp_rl.continual.metrics import compute_metrics
from psp_rl.continual.parts import AgentFactory, RunIdentity, SettingsIdentity
from psp_rl.continual.run_dir import RunDir
from psp_rl.continual.trainer import ContinualTrainer

__all__ = [
    "AgentFactory",
    "CheckpointError",
    "ConfigError",
    "ContinualCallback",
    "ContinualLoop",
    "ContinualTrainer",
    "LoopView",
    "NumericalError",
    "RunConfig",
    "RunDir",
    "RunIdentity",
    "RunInterrupted",
    "SettingsIdentity",
    "compute_metrics",
    "evaluate_tasks",
    "load_config",
    "parse_config",
    "trainer_from_config",
]
