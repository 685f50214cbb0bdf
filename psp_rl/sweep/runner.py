"""Sweeps: every (method, seed) of one config as a Ray task, resumable, with the retention table at the end.

A *method* is a named overlay of ``agent`` settings on the base config (:data:`METHODS`, plus any
given as variants), so a baseline or a remedy is sweepable without code. Each trial trains
``ContinualTrainer(config, <out>/runs/<method>-s<seed>, resume="or_start")`` in a Ray worker:

- a finished trial (``metrics.json`` written by the same config) is reused untouched, read by the
  sweep itself (no Ray cluster starts when every trial has finished);
- an unfinished one resumes from its own newest checkpoint (exactly, as ``--resume`` does);
- a trial that raises is retried once, then reported with its error and its log file
  (``<out>/logs/<method>-s<seed>.log``); the table is written over the trials that finished.

Killing the sweep and running the same command again completes it. Ray runs locally unless an
``address`` names a running cluster (``ray start --head`` on one machine, ``ray start
--address=...`` on the others); each trial asks Ray for ``cpus_per_trial`` CPUs and
``gpus_per_trial`` GPUs. Without Ray (``backend="processes"``, or ``"auto"`` where Ray is not
installed) the trials run in fresh local processes, ``max_parallel`` at a time, with the same run
directories, logs, retries and table: what a machine without Ray's wheel (a lent GPU machine) can run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psp_rl.config.compat import merge_agent_options
from psp_rl.config.loading import parse_config
from psp_rl.config.schema import RunConfig
from psp_rl.continual.run_dir import RunDir
from psp_rl.errors import CheckpointError, ConfigError

METHODS: dict[str, dict[str, Any]] = {
    **{f"psp-{kind}": {"method": "psp", "network": {"context": kind}} for kind in ("binary", "complex", "rotation")},
    **{
        method: {"method": method, "network": {"context": "none"}}
        for method in ("finetune", "multihead", "separate", "ewc")
    },
}
"""The built-in methods: ``agent`` settings laid over the base config."""

# Ray's shared-memory object store holds only small results here (a trial returns its metrics).
OBJECT_STORE_BYTES = 100 * 1024**2


@dataclass(frozen=True)
class Trial:
    """One (method, seed) of a sweep."""

    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-s{self.seed}"

    @classmethod
    def from_name(cls, name: str) -> Trial | None:
        """The trial a run directory is named for (``<method>-s<seed>``), else None."""
        method, sep, seed = name.rpartition("-s")
        return cls(method, int(seed)) if sep and method and seed.isdigit() else None


@dataclass
class SweepOutcome:
    """What a sweep produced: each method's metrics over the seeds that finished, and the failures.

    :param results: method -> one metrics dict per finished seed (in seed order).
    :param run_dirs: method -> those seeds' run directories.
    :param failures: trial -> its error (the last attempt's) and log file.
    """

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    run_dirs: dict[str, list[Path]] = field(default_factory=dict)
    failures: dict[Trial, tuple[str, Path]] = field(default_factory=dict)

    def add(self, trial: Trial, metrics: dict[str, Any], run_dir: Path) -> None:
        self.results.setdefault(trial.method, []).append(metrics)
        self.run_dirs.setdefault(trial.method, []).append(run_dir)


def method_table(methods: Sequence[str], overlays: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """The built-in methods and ``overlays`` by name; ``ConfigError`` naming any of ``methods`` not there."""
    table = {**METHODS, **(overlays or {})}
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {unknown}; expected some of {list(table)}")
    return table


def trial_config(base: Mapping[str, Any], trial: Trial, methods: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The run config of ``trial``: the method's agent settings over the base config's."""
    agent = merge_agent_options(base.get("agent", {}), methods[trial.method])
    if agent.get("method") != "ewc":  # a base config may carry the ewc method's settings
        agent.pop("ewc", None)
    return {**base, "name": trial.name, "seed": trial.seed, "agent": agent}


def run_trial(config: dict[str, Any], run_dir: str, log_file: str) -> dict[str, Any]:
    """Train one trial to its end (resuming it) and return its metrics; logs go to ``log_file``.

    A finished run of the same config is returned untouched; a run dir holding another config's
    run raises (it is never overwritten).
    """
    from psp_rl.config.build import ContinualTrainer  # in the Ray worker: torch loads here

    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("psp_rl")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        parsed = parse_config(config, source=f"trial {config['name']}")
        # The sweep reused what had finished when it started; this one finished since (another sweep on the same
        # out, or an attempt that wrote its metrics, then failed).
        # A finished run's checkpoints may be gone (committed results keep none): it is read, never retrained.
        metrics = _finished_metrics(parsed, run_dir)  # another config's run raises
        if metrics is not None:
            logger.info("%s: finished before, reused", config["name"])
            return metrics
        metrics = ContinualTrainer(parsed, run_dir, resume="or_start").run()
        logger.info("%s: finished, final average %.1f", config["name"], metrics["final_average_return"])
        return metrics
    except BaseException:
        logger.error("%s failed:\n%s", config["name"], traceback.format_exc())
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Refuse, quickly and in one line, a Ray address nothing listens on (``host:port`` or ``ray://host:port``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--address {address!r}: no Ray cluster reachable there ({exc.strerror or exc})") from None


def run_sweep(
    base: Mapping[str, Any],
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    overlays: Mapping[str, Mapping[str, Any]] | None = None,
    address: str | None = None,
    max_parallel: int | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    retries: int = 1,
    backend: str = "auto",
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> SweepOutcome:
    """Run every (method, seed) trial of ``base`` on Ray or in local processes; see the module docstring.

    :param methods: names in :data:`METHODS` or ``overlays``.
    :param overlays: more named methods (``name -> agent settings``).
    :param address: a Ray cluster (default: a local one on this machine's cores).
    :param max_parallel: trials running at once (default: this machine's cores / the config's threads).
    :param retries: attempts after a trial's first failure.
    :param backend: ``"ray"``, ``"processes"`` (local, no Ray) or ``"auto"`` (Ray where it is installed).
    :param report: receives the progress lines (trials done / running / failed / waiting).
    """
    table = method_table(methods, overlays)
    if not methods or not seeds:
        raise ConfigError("--methods and --seeds: give at least one of each")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel {max_parallel}: expected a positive int")
    trials = [Trial(m, s) for s in seeds for m in methods]  # every method of a seed first: early tables compare
    configs = {t: trial_config(base, t, table) for t in trials}
    for trial, config in configs.items():  # every trial's config is valid before any starts
        parse_config(config, source=f"method {trial.method!r}")
    backend = resolve_backend(backend, address, gpus_per_trial)
    if address is not None:
        check_address(address)
    threads = base.get("threads", 1)
    if max_parallel is None:
        max_parallel = max(1, (os.cpu_count() or 1) // (threads if isinstance(threads, int) else 1))
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)

    reused = {t: m for t in trials if (m := _finished_before(configs[t], _run_dir(out, t))) is not None}
    if len(reused) == len(trials):  # nothing to train: no cluster to start (seconds of Ray and worker start-up)
        report(f"sweep: {len(trials)} done (finished before, reused), 0 running, 0 failed, 0 waiting")
        return _outcome(trials, reused, SweepOutcome(), out)

    pending = [t for t in trials if t not in reused]
    # What a trial is called with, for either backend: its config, its run dir and its log file.
    calls = {t: (configs[t], str(_run_dir(out, t)), str(_log_file(out, t))) for t in pending}
    if backend == "processes":
        # A fresh interpreter per trial (as a Ray worker is), so no trial inherits another's torch state.
        with ProcessPoolExecutor(
            max_parallel, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
        ) as pool:

            def submit(trial: Trial) -> Future:
                return pool.submit(run_trial, *calls[trial])

            return _collect(submit, pending, trials, out, max_parallel, retries, report, reused)

    if address is None:
        # A local cluster is one node: Ray then uses the loopback address instead of this machine's
        # network address (its single-node mode on macOS and Windows), so no port faces the network.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray  # only Ray sweeps need Ray: pip install "psp_rl[sweep]"

    ray.init(
        address=address,
        num_cpus=None if address else max(max_parallel * cpus_per_trial, 1),
        object_store_memory=None if address else OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        # Retries are the sweep's own (the same for both backends): Ray runs each attempt once.
        remote = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(run_trial)

        def submit(trial: Trial) -> Future:
            return remote.remote(*calls[trial]).future()

        return _collect(submit, pending, trials, out, max_parallel, retries, report, reused)
    finally:
        ray.shutdown()


def resolve_backend(backend: str, address: str | None, gpus_per_trial: float) -> str:
    """``"ray"`` or ``"processes"`` for ``backend``; ``ConfigError`` for what only Ray can do without it."""
    if backend not in ("auto", "ray", "processes"):
        raise ConfigError(f"--backend {backend!r}: expected auto, ray or processes")
    if backend == "auto":
        backend = "ray" if importlib.util.find_spec("ray") is not None else "processes"
    if backend == "processes" and address is not None:
        raise ConfigError(f'--address {address!r}: a cluster needs the ray backend (pip install "psp_rl[sweep]")')
    if backend == "processes" and gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial}: GPU reservations need the ray backend")
    return backend


def _run_dir(out: Path, trial: Trial) -> Path:
    return out / "runs" / trial.name


def _log_file(out: Path, trial: Trial) -> Path:
    return out / "logs" / f"{trial.name}.log"


def _finished_metrics(config: RunConfig, run_dir: str | Path) -> dict[str, Any] | None:
    """The metrics of the run ``config`` finished in ``run_dir``, else None; a run dir holding another
    config's run raises :class:`CheckpointError` naming the difference."""
    from psp_rl.config.build import config_for_run_dir  # torch: loaded already with the config's modules

    paths = RunDir(run_dir)
    if not (paths.metrics.exists() and paths.config.exists()):
        return None
    config_for_run_dir(config, run_dir, resume=True)
    return json.loads(paths.metrics.read_text())


def _finished_before(config: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """:func:`_finished_metrics` for the sweep itself: a run dir holding another config's run is left to its
    trial, which fails naming the difference."""
    try:
        return _finished_metrics(parse_config(config), run_dir)
    except (CheckpointError, ConfigError):
        return None


def _outcome(trials: list[Trial], metrics: dict[Trial, dict], outcome: SweepOutcome, out: Path) -> SweepOutcome:
    for trial in trials:  # methods in the order asked, seeds in order
        if trial in metrics:
            outcome.add(trial, metrics[trial], _run_dir(out, trial))
    return outcome


def _collect(
    submit: Callable[[Trial], Future],
    pending: list[Trial],
    trials: list[Trial],
    out: Path,
    max_parallel: int,
    retries: int,
    report: Callable,
    reused: dict[Trial, dict],
) -> SweepOutcome:
    """Run ``pending`` through ``submit``, ``max_parallel`` at a time, each up to ``1 + retries`` times."""
    outcome, waiting, running = SweepOutcome(), list(pending), {}
    metrics: dict[Trial, dict] = dict(reused)
    attempts: dict[Trial, int] = {}
    start = time.perf_counter()

    def launch() -> None:
        while waiting and len(running) < max_parallel:
            trial = waiting.pop(0)
            attempts[trial] = attempts.get(trial, 0) + 1
            running[submit(trial)] = trial

    launch()
    while running:
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in done:
            trial = running.pop(future)
            try:
                metrics[trial] = future.result()
            except Exception as exc:  # the trial's own error (Ray wraps it: its cause)
                if attempts[trial] <= retries:
                    waiting.insert(0, trial)
                    continue
                cause = getattr(exc, "cause", None) or exc
                outcome.failures[trial] = (f"{type(cause).__name__}: {cause}", _log_file(out, trial))
        launch()  # before the report, so that it counts the trial just started as running
        report(
            f"sweep: {len(metrics)} done, {len(running)} running, {len(outcome.failures)} failed, "
            f"{len(waiting)} waiting ({time.perf_counter() - start:.0f} s)"
        )
    return _outcome(trials, metrics, outcome, out)


def finished_trials(out: Path, methods: Sequence[str], seeds: Sequence[int]) -> SweepOutcome:
    """The trials of a sweep that have finished, read from ``out`` without training any."""
    outcome = SweepOutcome()
    for trial in (Trial(method, seed) for method in methods for seed in seeds):
        run_dir = _run_dir(out, trial)
        if RunDir(run_dir).metrics.exists():
            outcome.add(trial, json.loads(RunDir(run_dir).metrics.read_text()), run_dir)
    return outcome
