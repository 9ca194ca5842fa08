"""Greedy evaluation on the standard, unshaped CartPole-v1, and a NumPy copy of the Q-network.

The score a user reads is always gymnasium's own return (+1 per step, 500 at truncation), played
here on a fresh `CartPole-v1` vector env — never the shaped training reward. This module
imports no TensorFlow, so the same code scores our agent, a loaded `.keras` file and the peer
baselines in `benchmarks/compare_peers.py` alike.

Why a NumPy forward pass: on this CPU one `tf.function` call costs 100-200 µs while the whole
4->64->64->2 MLP on 64 rows costs ~20 µs in NumPy. Acting and evaluating in NumPy with weights
copied out after each learning call is exact (the weights do not change between calls) and keeps
TensorFlow to one call per `train_every` vector steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

ActFn = Callable[[np.ndarray], np.ndarray]
MAX_RETURN = 500.0  # CartPole-v1 truncates at 500 steps


LAYER_NORM_EPS = 1e-3  # keras.layers.LayerNormalization's default epsilon, which agent.py uses


class NumpyQNetwork:
    """MLP forward pass from Keras's flat weight list: per hidden layer [kernel, bias] or, with
    layer normalisation, [kernel, bias, gamma, beta] (Dense -> LayerNorm -> ReLU); the output
    layer is [kernel, bias]. Layers are told apart by shape: each 2-D kernel starts one."""

    def __init__(self, weights: Sequence[np.ndarray]):
        self.set_weights(weights)

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        arrays = [np.asarray(w, np.float32) for w in weights]
        starts = [i for i, a in enumerate(arrays) if a.ndim == 2]
        if not arrays or not starts or starts[0] != 0:
            raise ValueError("expected a kernel (2-D) first, then its bias")
        layers = [arrays[i:j] for i, j in zip(starts, starts[1:] + [len(arrays)])]
        if any(len(layer) not in (2, 4) for layer in layers) or len(layers[-1]) != 2:
            raise ValueError("expected [kernel, bias] or [kernel, bias, gamma, beta] per layer")
        self.layers = layers
        # LayerNorm's centring folded into its Dense layer once per weight update: the mean
        # over units of x @ W + b is x @ mean_j(W) + mean(b), so a kernel and bias with their
        # row means taken out give the centred pre-activation directly, and the forward pass
        # skips a reduction and a subtraction per layer (it runs for every acting step).
        self._forward = [
            (k, b, None, None) if len(layer) == 2 else
            (k - k.mean(axis=1, keepdims=True), b - b.mean(), layer[2], layer[3])
            for layer in layers[:-1] for k, b in [layer[:2]]]

    def weights(self) -> list[np.ndarray]:
        """The flat Keras-ordered list (the arrays themselves, not copies)."""
        return [a for layer in self.layers for a in layer]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        h = obs
        for kernel, bias, gamma, beta in self._forward:
            h = h @ kernel
            h += bias
            if gamma is not None:  # h is already centred (see set_weights)
                scale = np.mean(h * h, axis=1, keepdims=True)
                scale += LAYER_NORM_EPS
                np.sqrt(scale, out=scale)
                h /= scale
                h *= gamma
                h += beta
            np.maximum(h, 0.0, out=h)
        kernel, bias = self.layers[-1]
        return h @ kernel + bias

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return np.argmax(self.q_values(obs), axis=1)


@dataclass
class EvalResult:
    returns: np.ndarray          # one standard return per episode, every episode played out
    requested: int               # episodes asked for

    @property
    def perfect(self) -> int:
        return int(np.sum(self.returns >= MAX_RETURN))

    @property
    def passed(self) -> bool:
        """Every requested episode scored 500."""
        return len(self.returns) == self.requested and self.perfect == self.requested

    def stats(self) -> dict[str, float]:
        """Statistics of ALL the round's episodes (never of a prefix cut at a failure)."""
        r = self.returns if len(self.returns) else np.zeros(1)
        return {"episodes": int(len(self.returns)), "mean": float(np.mean(r)),
                "min": float(np.min(r)), "max": float(np.max(r)), "at_500": self.perfect}


def evaluate(act: ActFn, episodes: int, seed: int, num_envs: int = 64,
             env_id: str = "CartPole-v1",
             on_first_failure: Callable[[], None] | None = None) -> EvalResult:
    """Play `episodes` fresh episodes with `act` (obs [n,4] -> actions [n]) and score them.

    Episodes run in batches of up to `num_envs` parallel envs, one episode per env, each env
    seeded from `seed`, so a round is reproducible. Every episode is played to its end, so the
    statistics describe the whole round. `on_first_failure` is called once, when the first
    episode ends below 500: the round's verdict is known from then on (eval_rounds.py reports
    it early, and plays the rest for the statistics).
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    returns: list[np.ndarray] = []
    n_envs = min(num_envs, episodes)
    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point")
    try:
        left, batch_index = episodes, 0
        while left > 0:
            n = min(n_envs, left)
            obs, _ = envs.reset(seed=seed + batch_index * n_envs)
            ret = np.zeros(n_envs)
            running = np.arange(n_envs) < n
            while running.any():
                obs, reward, terminated, truncated, _ = envs.step(act(obs))
                ret += reward * running
                ended = running & (terminated | truncated)
                running &= ~ended
                if on_first_failure is not None and np.any(ended & (ret < MAX_RETURN)):
                    on_first_failure()
                    on_first_failure = None
            returns.append(ret[:n])
            left -= n
            batch_index += 1
    finally:
        envs.close()
    return EvalResult(np.concatenate(returns), episodes)


def load_saved_network(path: str | Path) -> tuple[NumpyQNetwork, Path]:
    """The Q-network of a saved `.keras` file (or a run directory's best/final model) as the
    NumPy network the trainer scores with, so a saved model plays exactly as it was judged.

    Raises `ConfigError` with a one-line message for a missing, corrupt or wrongly shaped model,
    or one that is not a plain stack of Dense layers (`load_saved_policy` plays those too).
    """
    from common.config import ConfigError
    model, p = _load_keras_model(path)
    if not _numpy_playable(model):
        raise ConfigError(f"model {p} is not a stack of Dense (and LayerNormalization) layers")
    return _numpy_network(model), p


def load_saved_policy(path: str | Path) -> tuple[ActFn, Path]:
    """Greedy policy of a saved `.keras` Q-network (or a run directory's best/final model).

    Dense stacks (every model this project writes) play through the same NumPy forward pass the
    trainer scores with; any other Keras model that maps 4 observations to 2 Q-values plays
    through Keras. Raises `ConfigError` (one line) for a missing, corrupt or misshapen model.
    """
    model, p = _load_keras_model(path)
    if _numpy_playable(model):
        return _numpy_network(model).greedy, p

    def act(obs: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(model(obs, training=False)), axis=1)
    return act, p


def _numpy_network(model) -> NumpyQNetwork:
    return NumpyQNetwork([np.asarray(w, np.float32) for w in model.get_weights()])


def _numpy_playable(model) -> bool:
    """True for the networks this project builds, which NumpyQNetwork reproduces exactly:
    hidden blocks `Dense(relu)` or `Dense, LayerNormalization, ReLU`, then a linear `Dense`."""
    import keras
    L = keras.layers

    def token(layer) -> str:
        act = layer.get_config().get("activation")
        if isinstance(layer, L.Dense):
            return {"relu": "D", "linear": "d"}.get(act, "?")
        if isinstance(layer, L.LayerNormalization):
            ok = layer.epsilon == LAYER_NORM_EPS and layer.center and layer.scale
            return "N" if ok else "?"
        if isinstance(layer, L.Activation) and act == "relu":
            return "R"
        return "?"
    import re
    return re.fullmatch(r"(D|dNR)*d", "".join(token(layer) for layer in model.layers)) is not None


def _load_keras_model(path: str | Path):
    """Find and load a model; Keras is imported here, so plain evaluation stays TF-free."""
    from common.config import ConfigError
    from common.run_log import BEST_MODEL, FINAL_MODEL, MODEL_DIR

    p = Path(path)
    if p.is_dir():
        found = [c for c in (p / MODEL_DIR / BEST_MODEL, p / MODEL_DIR / FINAL_MODEL) if c.is_file()]
        if not found:
            raise ConfigError(f"no model in {p} (looked for {MODEL_DIR}/{BEST_MODEL} and {FINAL_MODEL})")
        p = found[0]
    elif not p.is_file():
        raise ConfigError(f"no model file at {p}")
    from common.tf_import import import_tensorflow
    import_tensorflow()
    import keras
    try:
        model = keras.models.load_model(p)
    except Exception as e:  # Keras raises many types for corrupt zips and configs
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load model {p}: {first}") from None
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 2 or in_shape[-1] != 4 or out_shape[-1] != 2:
        raise ConfigError(f"model {p} maps {in_shape} -> {out_shape}; CartPole needs (None, 4) -> (None, 2)")
    return model, p
