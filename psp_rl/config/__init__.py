"""A run from a YAML config: the schema, loading and ``--set``, compatibility with saved runs, and
:class:`ContinualTrainer`, the loop a config builds (what ``psp-rl train`` runs)."""

from psp_rl.config.build import ContinualTrainer
from psp_rl.config.loading import load_config, parse_config
from psp_rl.config.schema import RunConfig

__all__ = ["ContinualTrainer", "RunConfig", "load_config", "parse_config"]
