"""Episode seeds: training, rounds, certificates, challenges, the confirmation, --evaluate and
the demo never share a start state, by construction (common/seeds.py), checked here on every
kind of use."""
from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import cartpole
from common import seeds
from common.config import ConfigError, TrainConfig
from training import trainer

NUM_ENVS = 64


def intervals(run_seed: int, uses: int) -> list[tuple[int, int, str]]:
    """[start, end) of the seeds each kind of use plays, as the trainer computes them; `uses`
    rounds and certificates, and a resumed run's reset at each of `uses` vector steps."""
    cfg = TrainConfig()
    out = [(trainer.training_reset_seed(run_seed, NUM_ENVS * k, NUM_ENVS), NUM_ENVS, f"train {k}")
           for k in range(uses)]
    out += [(trainer.eval_seed(run_seed, r), cfg.eval_episodes, f"round {r}") for r in range(uses)]
    out += [(seeds.episode_seed(run_seed, seeds.CERTIFICATES, c), cfg.certify_episodes, f"cert {c}")
            for c in range(uses)]
    out += [(trainer.challenge_seed(run_seed, c), cfg.challenge_episodes, f"challenge {c}")
            for c in range(uses)]
    out += [(seeds.episode_seed(run_seed, seeds.CONFIRMATION, 0), cfg.confirm_episodes, "confirm"),
            (seeds.episode_seed(run_seed, seeds.DEMO, 0), 1, "demo")]
    return [(start, start + width, what) for start, width, what in out]


@pytest.mark.parametrize("run_seed", [0, 1, 7, 2**31 - 1])
def test_every_use_of_a_run_plays_its_own_seeds(run_seed):
    spans = sorted(intervals(run_seed, 3000))
    for (a0, a1, a), (b0, b1, b) in zip(spans, spans[1:]):
        assert a1 <= b0, f"{a} [{a0}, {a1}) overlaps {b} [{b0}, {b1})"


def test_runs_with_different_seeds_share_no_seeds():
    spans = sorted(s for run_seed in (0, 1, 2, 1000) for s in intervals(run_seed, 300))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_the_construction_is_invertible():
    """Different (stream, run seed, index, offset) give different seeds: the block owner of
    every seed is recovered."""
    for stream, run_seed, index, offset in itertools.product(
            seeds.STREAMS, (0, 3, 2**31 - 1), (0, 1, 10**6, seeds.INDEX_LIMIT - 1), (0, 99_999, seeds.BLOCK - 1)):
        assert seeds.owner(seeds.episode_seed(run_seed, stream, index) + offset) == (
            stream, run_seed, index, offset)


def test_no_width_the_config_allows_leaves_its_block():
    """A use owns BLOCK seeds; the widest uses the config accepts fit (episodes of a certificate
    or confirmation, plus the last batch's extra envs; the training env's width)."""
    assert 100_000 + trainer.CERTIFY_ENVS <= seeds.BLOCK and 65_536 <= seeds.BLOCK
    for name, too_many in (("certify_episodes", 100_001), ("confirm_episodes", 100_001),
                           ("challenge_episodes", 100_001),
                           ("eval_episodes", 10_001), ("num_envs", 65_537)):
        with pytest.raises(ConfigError):
            TrainConfig(**{name: too_many}).validate()
    with pytest.raises(ValueError):
        seeds.episode_seed(2**31, seeds.ROUNDS, 0)
    with pytest.raises(ValueError):
        seeds.episode_seed(0, seeds.ROUNDS, seeds.INDEX_LIMIT)


def start_states(seed: int, n: int) -> np.ndarray:
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=seed)
    envs.close()
    return obs


def test_evaluate_with_a_runs_seed_does_not_replay_its_training_starts(monkeypatch):
    """`--evaluate --seed N` plays other episodes than run N's training env started from."""
    played = {}

    def fake_evaluate(act, episodes, seed, **kw):
        played["seed"], played["episodes"] = seed, episodes
        raise SystemExit(0)

    monkeypatch.setattr("acting.evaluation.load_saved_policy", lambda path: (None, None))
    monkeypatch.setattr("acting.evaluation.evaluate", fake_evaluate)
    with pytest.raises(SystemExit):
        cartpole.evaluate_saved("model.keras", 100, False, 5)
    start, end = played["seed"], played["seed"] + played["episodes"]
    for k in range(0, 5000, 7):
        t0 = trainer.training_reset_seed(5, NUM_ENVS * k, NUM_ENVS)
        assert end <= t0 or t0 + NUM_ENVS <= start, k
    train = start_states(trainer.training_reset_seed(5, 0, NUM_ENVS), NUM_ENVS)
    ours = start_states(start, NUM_ENVS)
    assert not any((ours == row).all(axis=1).any() for row in train)


def test_evaluate_refuses_a_seed_out_of_range():
    with pytest.raises(ConfigError):
        cartpole.evaluate_saved("model.keras", 10, False, -1)
