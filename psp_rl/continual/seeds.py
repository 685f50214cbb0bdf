"""Seeds for every random purpose of a run, each from its own named stream, none equal to another's.

One run seed drives everything: each purpose (a training chunk's envs and RNGs, an evaluation's
episodes, random play, task inference's trials, the probes' samples, ...) draws from
``stream_seed(seed, stream, *parts)``, where ``parts`` say which chunk, step or task. The entropy
given to NumPy's ``SeedSequence`` is ``(seed, stream, len(parts), *parts)``: the stream id keeps
purposes apart, and the count of parts keeps ``(1, 2)`` apart from ``(1, 2, 0)`` (``SeedSequence``
pads short entropy with zeros, so without the count those two would be the same seed).

Scheme 1 is how runs drew their seeds before this module: stream numbers shared a slot with stage
numbers, so a stage-1 chunk at step n drew the seed of task 0's evaluation at step n. A run records
its scheme in ``config.yaml`` (``seed_scheme``); one saved without the key resumes under scheme 1,
exactly as it ran.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from psp_rl.checks import is_int

SEED_SCHEME = 2
"""The scheme new runs use."""
SCHEMES = (1, 2)
_WORD = 2**32  # SeedSequence splits larger ints into several 32-bit words: parts stay below one word


class Stream(IntEnum):
    """The purposes that draw seeds."""

    CHUNK = 1  # a training chunk: its envs' episodes and the agent's RNGs (stage, steps done in the stage)
    EVAL = 2  # an evaluation's episodes (global step, task)
    RANDOM_EPISODES = 3  # random play's episodes at the start (task)
    RANDOM_POLICY = 4  # random play's actions (task)
    TASK_ENV = 5  # an env the agent acts in at a switch, e.g. PSP-DQN's distil_visits (global step, task)
    INFERENCE = 6  # task inference's evaluation episodes (stage, task)
    PROBES = 7  # the states the retention probes keep of a finished task (stage)
    EWC = 8  # online EWC's Fisher: its states and sampled actions (stage)


def legacy_seed(*parts: int) -> int:
    """Scheme 1's seed of ``parts`` (the entropy as given, zero-padded by ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _scheme1(seed: int, stream: Stream, parts: tuple[int, ...]) -> int:
    """The seed scheme 1 drew for ``stream``: stream numbers in the stage's slot, and the probes'
    and EWC's ``seed * 1_000_003 + stage``."""
    if stream is Stream.CHUNK:
        return legacy_seed(seed, *parts)
    if stream in (Stream.PROBES, Stream.EWC):
        return seed * 1_000_003 + parts[0]
    slot = {Stream.EVAL: 1, Stream.RANDOM_EPISODES: 2, Stream.RANDOM_POLICY: 3, Stream.TASK_ENV: 4, Stream.INFERENCE: 5}
    return legacy_seed(seed, slot[stream], *parts)


def stream_seed(seed: int, stream: Stream, *parts: int, scheme: int = SEED_SCHEME) -> int:
    """The seed of ``stream`` at ``parts`` (each an int in ``[0, 2**32)``) for the run ``seed``.

    :param scheme: the run's seed scheme (``config.yaml``'s ``seed_scheme``; 1 for runs saved before it).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"seed_scheme={scheme!r}: expected one of {list(SCHEMES)}")
    values = (seed, *parts)
    if not all(is_int(v) and 0 <= v < _WORD for v in values):
        raise ValueError(f"stream_seed{(seed, int(stream), *parts)!r}: expected ints in [0, 2**32)")
    stream = Stream(stream)
    if scheme == 1:
        return _scheme1(seed, stream, parts)
    return int(np.random.SeedSequence([seed, int(stream), len(parts), *parts]).generate_state(1)[0])
