"""The continual loop: sequence trainer, evaluation matrix, metrics, TensorBoard, checkpoints, reports."""

from psp_rl.continual.config import ConfigError, RunConfig, load_config, parse_config
from psp_rl.continual.trainer import (
    CheckpointError,
    ContinualCallback,
    ContinualTrainer,
    NumericalError,
    RunInterrupted,
    compute_metrics,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContinualCallback",
    "ContinualTrainer",
    "NumericalError",
    "RunConfig",
    "RunInterrupted",
    "compute_metrics",
    "load_config",
    "parse_config",
]
