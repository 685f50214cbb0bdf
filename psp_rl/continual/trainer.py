"""``ContinualTrainer``: the continual loop assembled from a :class:`RunConfig` (what ``psp-rl train`` runs).

The loop itself, with its parts handed in, is :class:`~psp_rl.continual.loop.ContinualLoop`;
this module only builds those parts from a config (through :mod:`psp_rl.continual.build`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from psp_rl.continual.build import config_for_run_dir, loop_arguments
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.checkpoints import CheckpointError, TrainerState
from psp_rl.continual.config import RunConfig
from psp_rl.continual.loop import ContinualLoop, NumericalError, RunInterrupted, check_resume
from psp_rl.continual.metrics import compute_metrics

# Importable from here as before the loop was split out of this module.
__all__ = [
    "CheckpointError",
    "ContinualTrainer",
    "NumericalError",
    "RunInterrupted",
    "TrainerState",
    "compute_metrics",
]


class ContinualTrainer(ContinualLoop):
    """Trains the agent a config describes on its task sequence; writes ``runs/<name>/``.

    :param config: the validated run config; options left out take their defaults now, so
        ``config.yaml`` and the checkpoints record what ran whatever later releases change them to.
    :param run_dir: the run directory (default ``runs/<config.name>``).
    :param resume: ``True``: continue the run in ``run_dir``; ``"or_start"``: continue it if there
        is one, else start one. A config that differs from the saved run in a setting that shapes
        it raises :class:`~psp_rl.continual.checkpoints.CheckpointError`.
    :param callbacks: hooks run after those the config brings (``method: ewc`` brings
        :class:`~psp_rl.continual.ewc.OnlineEWC`, ``probes.enabled`` the retention probes).
    :param options: ``overwrite``, ``progress``, ``stop_within_s`` (see :class:`ContinualLoop`).
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path | None = None,
        *,
        resume: bool | Literal["or_start"] = False,
        callbacks: Sequence[ContinualCallback] = (),
        **options: object,
    ) -> None:
        check_resume(resume)  # before the run dir's config.yaml is read
        run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config.name
        self.config = config_for_run_dir(config, run_dir, resume)
        arguments = loop_arguments(self.config)
        arguments["callbacks"] = [*arguments["callbacks"], *callbacks]
        super().__init__(run_dir=run_dir, resume=resume, **arguments, **options)

    @property
    def name(self) -> str:
        return self.config.name
