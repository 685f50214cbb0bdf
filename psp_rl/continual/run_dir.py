"""The run directory: every file a run writes, named in one place.

::

    runs/<name>/
      config.yaml      the resolved config (every default written out)
      eval.csv         step, trained_task, eval_task, mean, std, episodes
      metrics.json     final returns, forgetting, transfer, eval matrix, throughput
      evaluate.csv     written by ``psp-rl evaluate``
      probes.csv       retention probes (``probes.enabled``)
      checkpoints/     ckpt-<step>-<stage>/ {model.zip, replay_buffer.pkl, callbacks.pt, state.json}
      tb/              TensorBoard (tb/sb3: SB3's own scalars)
      .lock            held while a process writes the run
"""

from __future__ import annotations

import shutil
from pathlib import Path

from psp_rl.continual.files import RunLock
from psp_rl.errors import ConfigError


class RunDir:
    """Paths inside one run directory (nothing is created until a run writes).

    :param path: the directory (``runs/<config name>`` by default in ``psp-rl train``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config(self) -> Path:
        """The resolved config: ``config.yaml``."""
        return self.path / "config.yaml"

    @property
    def eval_csv(self) -> Path:
        """One row per (evaluation, task): ``eval.csv``."""
        return self.path / "eval.csv"

    @property
    def metrics(self) -> Path:
        """The final metrics: ``metrics.json``."""
        return self.path / "metrics.json"

    @property
    def evaluate_csv(self) -> Path:
        """``psp-rl evaluate``'s output: ``evaluate.csv``."""
        return self.path / "evaluate.csv"

    @property
    def probes_csv(self) -> Path:
        """The retention probes: ``probes.csv``."""
        return self.path / "probes.csv"

    @property
    def checkpoints(self) -> Path:
        """One sub-directory per checkpoint: ``checkpoints``."""
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files: ``tb``."""
        return self.path / "tb"

    def lock(self) -> RunLock:
        return RunLock(self.path)

    def holds_run(self) -> bool:
        """Whether anything besides the lock file is there (an earlier run, finished or not)."""
        return self.path.is_dir() and any(p.name != ".lock" for p in self.path.iterdir())

    def prepare(self, resume: bool | str, overwrite: bool) -> bool:
        """Make the directory ready for a run; return whether it holds no earlier run (so a run that
        fails before its first step may remove it again).

        :param resume: ``True``: there must be a run here; ``"or_start"``: continue one if there is.
        :param overwrite: delete an earlier run first (refused while another process holds it).
        """
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"run dir {str(path)!r}: exists and is not a directory")
        has_run = self.holds_run()
        if resume is True and not has_run:
            raise ConfigError(
                f"run dir {str(path)!r}: no run to resume (missing or empty); check the path, or pass "
                "--resume-or-start to start a run there"
            )
        if has_run and not (resume or overwrite):
            raise ConfigError(f"run dir {str(path)!r} already holds a run; pass --resume to continue it or --overwrite")
        if has_run and overwrite:
            self.lock().acquire()  # refuse to delete a run that is still going
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"run dir {str(path)!r}: not writable ({exc.strerror})") from None
        return not has_run or overwrite

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)
