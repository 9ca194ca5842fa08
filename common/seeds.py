"""Every episode seed of a run, from one function, in streams that cannot overlap.

A gymnasium vector env reset with seed S seeds its envs S, S+1, ..., and `evaluation.evaluate`
plays episode k of a batch from S + k, so a use of seed S owns the interval [S, S + width).
Before, training resets (seed + 1000 * k), evaluation rounds and the confirmation were kept
apart by arithmetic that a resumed run or a wide round could cross, and `--evaluate --seed N`
replayed the training env's own start states.

Here a seed is a mixed-radix number whose digits are (stream, run seed, index, offset): each
(stream, run seed, index) owns a block of BLOCK consecutive seeds, and two different digit
tuples are different numbers, so two uses are disjoint as long as each stays inside its block
(width <= BLOCK, index < INDEX_LIMIT, run seed < SEED_LIMIT; `episode_seed` checks the last
two, and every width in use is capped by TrainConfig.validate at or below BLOCK). Gymnasium
turns each such (large) integer into its own numpy SeedSequence.
"""
from __future__ import annotations

#: The streams: who draws episodes. The value is the seed's top digit.
TRAINING = 0       # the training env's resets (index: the vector step it resets at)
ROUNDS = 1         # evaluation rounds (index: the round, 0-based)
CERTIFICATES = 2   # certificates (index: the run's n-th certificate)
CONFIRMATION = 3   # the confirmation of best.keras at the end
EVALUATE = 4       # --evaluate PATH (its --seed is the "run seed")
DEMO = 5           # the --graphics demo episode
CHALLENGES = 6     # a challenger's wider test after the solve (index: the run's n-th challenge)
STREAMS = (TRAINING, ROUNDS, CERTIFICATES, CONFIRMATION, EVALUATE, DEMO, CHALLENGES)

BLOCK = 1 << 17          # seeds per use: >= every width allowed (100,000 episodes, 65,536 envs)
INDEX_LIMIT = 1 << 48    # uses per stream and run seed
SEED_LIMIT = 1 << 31     # run seeds (TrainConfig.validate's range)

#: --evaluate's episodes when no --seed is given.
EVALUATE_DEFAULT_SEED = 12345


def episode_seed(run_seed: int, stream: int, index: int) -> int:
    """The first seed of the block of `stream`'s `index`-th use in run `run_seed`."""
    if stream not in STREAMS:
        raise ValueError(f"unknown seed stream {stream}")
    if not 0 <= run_seed < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2^31), got {run_seed}")
    if not 0 <= index < INDEX_LIMIT:
        raise ValueError(f"seed index out of range: {index}")
    return ((stream * SEED_LIMIT + run_seed) * INDEX_LIMIT + index) * BLOCK


def owner(seed: int) -> tuple[int, int, int, int]:
    """(stream, run seed, index, offset) of any seed in a block: the inverse of `episode_seed`."""
    rest, offset = divmod(seed, BLOCK)
    rest, index = divmod(rest, INDEX_LIMIT)
    stream, run_seed = divmod(rest, SEED_LIMIT)
    return stream, run_seed, index, offset
