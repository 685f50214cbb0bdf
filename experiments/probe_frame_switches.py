"""Which window statistic shows a change of MinAtar game to the acting game's dynamics model? (issue 33 item 4)

    python -m experiments.probe_frame_switches [--seeds 0 1 2] [--out experiments/results/hidden-ids-minatar/probe]

Task inference raises a dynamics alarm when ``surprises`` windows in a row score beyond ``error_fit`` times the
acting context's usual error (:meth:`~psp_rl.plugins.inference.task_inference.TaskInference.transitions`). On
MinAtar's frames that ratio saw Breakout -> SpaceInvaders at ~480x but SpaceInvaders -> Freeway at ~10x and
Freeway -> Asterix at 0.2x (hidden-ids-minatar's README): a game whose frame changes are small is predicted
"well" by any model, in absolute terms. This probe plays the 5 games (``--transitions`` each, in the run's
order, the units fixed on Breakout's first 2,000 changes as in a run; at random, or with ``--policy RUN`` a
finished run's agent under each game's own id), fits one ridge model per game as a context would, and scores
held-out windows (``--window`` transitions) of every game under every game's model:

- ``ratio``: the window's error over the model's usual error (its mean on its own game's held-out windows):
  today's statistic;
- ``normalized``: the same with each window's error divided by the spread of the window's own changes (their
  mean squared deviation from the window's mean change: 1 minus the window's R^2 under the model), so a quiet
  game is not "well predicted" for being quiet;
- ``observations``: no dynamics at all: the window's frames' Mahalanobis distance from the model's game's
  frames, whose mean and covariance the ridge model's statistics already hold (``X^T X``), over its usual one;
- ``recent``: the window's error under the acting model over its error under a ridge model of the ``--before``
  transitions just before it (a likelihood-ratio test: after a switch those are the new game's; within a game
  the acting model has seen far more of it). No usual error: the diagonal is the acting model against a model
  of its own game's last transitions;
- ``counts``: no dynamics either: the window's per-channel pixel counts' Mahalanobis distance from the model's
  game's (:class:`~psp_rl.plugins.inference.channel_counts.ChannelCounts`), over its usual one.

It prints, per statistic, the median over windows for each (model's game, window's game); the diagonal is a
game's own play (about 1 by construction), the rest a switch from the row's game to the column's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from experiments.probe_dynamics import play_episodes, trained_agent
from psp_rl.continual.files import atomic_write_text, markdown_table
from psp_rl.envs import get_sequence
from psp_rl.plugins.inference.channel_counts import gaussian_of, mean_distance
from psp_rl.plugins.inference.dynamics import PROJECTIONS, DynamicsEvidence, RidgeDynamics
from psp_rl.threads import set_threads

STATISTICS = ("ratio", "normalized", "observations", "recent", "counts")
RECENT_RIDGE = 1.0  # (a model of a few hundred transitions of 256 numbers needs more than the contexts' 1e-3)


def stretches(
    episodes, size: int, count: int, rng: np.random.Generator, before: int
) -> list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]]:
    """``count`` runs of ``size`` consecutive transitions of the played episodes, across their ends as a run's
    windows are (8 envs' transitions interleaved; a random Breakout episode is shorter than a window), each
    with the ``before`` transitions that came just before it."""
    obs, actions, next_obs = (np.concatenate(col) for col in zip(*episodes, strict=True))
    starts = rng.integers(before, len(obs) - size, size=count)
    return [
        (
            (obs[s : s + size], actions[s : s + size], next_obs[s : s + size]),
            (obs[s - before : s], actions[s - before : s], next_obs[s - before : s]),
        )
        for s in starts
    ]


def recent_error(evidence: DynamicsEvidence, case: tuple[np.ndarray, ...], recent: tuple[np.ndarray, ...]) -> float:
    """The window's error under a ridge model of the transitions just before it alone (out of sample)."""
    model = RidgeDynamics(evidence.scale.mean.size, evidence.model.n_actions, 1, evidence.scale, ridge=RECENT_RIDGE)
    model.observe(*changes(evidence, *recent), 0)
    return float(model.errors(*changes(evidence, *case), [0])[0])


def changes(evidence: DynamicsEvidence, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> tuple:
    """What a ridge model of ``evidence`` reads of transitions: the embedded frames, the actions, their change."""
    z = evidence.embed(obs)
    return z, actions, evidence.embed(next_obs) - z


def spread(evidence: DynamicsEvidence, obs: np.ndarray, next_obs: np.ndarray) -> float:
    """The window's changes' mean squared deviation from their mean, in the units the errors are in."""
    delta = (evidence.embed(next_obs) - evidence.embed(obs)) / evidence.scale.std
    return float(np.mean((delta - delta.mean(axis=0)) ** 2))


def observation_distance(evidence: DynamicsEvidence, context: int, obs: np.ndarray, ridge: float = 1e-3) -> float:
    """The window's mean squared Mahalanobis distance (per dimension) of its embedded frames from ``context``'s,
    read off the ridge model's own statistics (``X^T X`` holds the frames' count, sum and second moment)."""
    xtx, dim = evidence.model.xtx[context], evidence.scale.mean.size
    mean, _, regularized = gaussian_of(xtx[:dim, :dim], xtx[:dim, -1], xtx[-1, -1], ridge)
    return mean_distance(evidence.embed(obs), mean, regularized)


def probe(
    seed: int,
    transitions: int,
    window: int,
    trials: int,
    before: int,
    policy: Path | None = None,
    projection: str = "dense",
) -> dict[str, np.ndarray]:
    """Per statistic, a (model's game, window's game) matrix of medians over held-out windows."""
    games, agent = trained_agent(policy) if policy else (get_sequence("minatar"), None)
    n = len(games)
    evidence = DynamicsEvidence(
        games.spaces[0]["obs"], games.spaces[1], n, warmup=2000, projection=projection, counts=True
    )
    rng = np.random.default_rng(seed)
    held_out = []
    for game in range(n):
        for part in play_episodes(games, game, transitions, seed=1000 * seed + game, agent=agent):
            evidence.observe(*part, context=game)
        played = play_episodes(games, game, transitions // 2, seed=1000 * seed + 100 + game, agent=agent)
        held_out.append(stretches(played, window, trials, rng, before))
    # (model, game, window): the acting model is the row's game's, the window from the column's game; every
    # model scores a window in one call, which gives (game, window, model)
    errors = np.array([[evidence.errors(*c, contexts=range(n)) for c, _ in held_out[g]] for g in range(n)])
    errors = errors.transpose(2, 0, 1)
    spreads = np.array([[spread(evidence, c[0], c[2]) for c, _ in held_out[g]] for g in range(n)])
    distances = np.array(
        [[[observation_distance(evidence, m, c[0]) for c, _ in held_out[g]] for g in range(n)] for m in range(n)]
    )
    recent = np.array([[recent_error(evidence, c, r) for c, r in held_out[g]] for g in range(n)])
    counts = np.array([[evidence.counts.distances(c[0], range(n)) for c, _ in held_out[g]] for g in range(n)])
    out = {}
    statistics = (
        ("ratio", errors),
        ("normalized", errors / spreads[None]),
        ("observations", distances),
        ("counts", counts.transpose(2, 0, 1)),
    )
    for name, values in statistics:
        usual = np.array([values[m, m].mean() for m in range(n)])
        out[name] = np.median(values / usual[:, None, None], axis=2)
    out["recent"] = np.median(errors / recent[None], axis=2)  # no usual error: the recent model is the reference
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--transitions", type=int, default=4000, help="random-play transitions per game for its model")
    parser.add_argument("--window", type=int, default=50, help="transitions per scored window (inference.window)")
    parser.add_argument("--trials", type=int, default=50, help="held-out windows per game")
    parser.add_argument("--policy", type=Path, help="a finished MinAtar run whose agent plays (default: random play)")
    parser.add_argument("--before", type=int, default=800, help="transitions the recent model is fitted on")
    parser.add_argument("--projection", choices=PROJECTIONS, default="dense", help="how frames are embedded")
    parser.add_argument("--out", type=Path, help="write table.md here")
    args = parser.parse_args(argv)
    set_threads(1)
    names = get_sequence("minatar").names
    results = [
        probe(seed, args.transitions, args.window, args.trials, args.before, args.policy, args.projection)
        for seed in args.seeds
    ]
    command = ["python", "-m", "experiments.probe_frame_switches", *(sys.argv[1:] if argv is None else argv)]
    text = [f"`{' '.join(command)}`", ""]
    for name in STATISTICS:
        matrix = np.mean([r[name] for r in results], axis=0)
        off = matrix[~np.eye(len(names), dtype=bool)]
        text += [
            f"**{name}** (median over windows, mean over seeds {args.seeds}; rows: the acting model's game, "
            f"columns: the window's game; smallest switch {off.min():.2f}x)",
            "",
            markdown_table(
                ["model \\ window", *names], [[row, *(f"{v:.2f}" for v in matrix[i])] for i, row in enumerate(names)]
            ),
            "",
        ]
    print("\n".join(text))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "table.md", "\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
