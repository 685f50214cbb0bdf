"""Seed streams: no two purposes draw the same seed (trailing zeros included), scheme 1 is what runs
saved before schemes drew, and a run records its scheme and resumes under it."""

import itertools

import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual.seeds import SEED_SCHEME, Stream, legacy_seed, stream_seed
from psp_rl.errors import ConfigError


def _draws(scheme: int) -> dict[tuple, int]:
    """The seed of every stream at every parts tuple of 1-3 values in {0, 1, 2, 5000} (run seeds 0 and 1)."""
    values = (0, 1, 2, 5000)
    return {
        (seed, stream, *parts): stream_seed(seed, stream, *parts, scheme=scheme)
        for seed in (0, 1)
        for stream in Stream
        for n in (1, 2, 3)
        for parts in itertools.product(values, repeat=n)
    }


def test_no_two_streams_or_parts_draw_the_same_seed():
    draws = _draws(SEED_SCHEME)
    assert len(set(draws.values())) == len(draws)  # 2 seeds x 8 streams x (4 + 16 + 64) parts, all distinct
    assert stream_seed(0, Stream.EVAL, 7) != stream_seed(0, Stream.EVAL, 7, 0)  # padding does not merge them


def test_scheme_1_is_what_earlier_runs_drew_collisions_included():
    # the formulas runs saved before the scheme was recorded used, and must resume with
    assert stream_seed(3, Stream.CHUNK, 2, 500, scheme=1) == legacy_seed(3, 2, 500)
    assert stream_seed(3, Stream.EVAL, 500, 1, scheme=1) == legacy_seed(3, 1, 500, 1)
    assert stream_seed(3, Stream.TASK_ENV, 500, 1, scheme=1) == legacy_seed(3, 4, 500, 1)
    assert stream_seed(3, Stream.PROBES, 2, scheme=1) == 3 * 1_000_003 + 2
    # ... and the collision scheme 2 removes: stage 1's chunk at step n drew task 0's evaluation seed at n
    assert stream_seed(0, Stream.CHUNK, 1, 5000, scheme=1) == stream_seed(0, Stream.EVAL, 5000, 0, scheme=1)
    assert stream_seed(0, Stream.CHUNK, 1, 5000) != stream_seed(0, Stream.EVAL, 5000, 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, Stream.EVAL, -1), {}, r"expected ints in \[0, 2\*\*32\)"),
        ((0, Stream.EVAL, 2**32), {}, r"expected ints in \[0, 2\*\*32\)"),
        ((0, Stream.EVAL, True), {}, r"expected ints in \[0, 2\*\*32\)"),
        ((0, Stream.EVAL, 1), {"scheme": 3}, r"seed_scheme=3: expected one of \[1, 2\]"),
    ],
)
def test_bad_stream_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stream_seed(*args, **kwargs)


def test_a_fresh_run_records_the_newest_scheme_and_an_old_run_resumes_under_scheme_1(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 300
    run = tmp_path / "run"
    trainer = ContinualTrainer(parse_config(tiny_config), run)
    assert trainer.config.seed_scheme == SEED_SCHEME == trainer.seed_scheme
    trainer.run()
    assert yaml.safe_load((run / "config.yaml").read_text())["seed_scheme"] == SEED_SCHEME
    assert ContinualTrainer(parse_config(tiny_config), run, resume=True).seed_scheme == SEED_SCHEME

    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["seed_scheme"]  # as a run saved before the scheme was recorded
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    old = ContinualTrainer(parse_config(tiny_config), run, resume=True)
    assert old.config.seed_scheme == 1 == old.seed_scheme
    with pytest.raises(ConfigError, match="seed_scheme: input should be 1 or 2"):
        parse_config({**tiny_config, "seed_scheme": 3})
