"""The NumPy forward pass used for acting and scoring equals Keras on the networks we build."""
from __future__ import annotations

import numpy as np
import pytest

from agent import build_q_network
from acting.evaluation import NumpyQNetwork, _numpy_playable


@pytest.mark.parametrize("layer_norm, offset", [(False, 0.0), (True, 0.0), (True, 30.0)])
def test_numpy_forward_matches_keras(layer_norm, offset):
    """`offset` shifts every hidden unit's pre-activation by the same amount, which LayerNorm
    takes out again: NumPy folds that centring into the kernel, Keras subtracts the mean."""
    model = build_q_network(4, 2, (8, 6), layer_norm=layer_norm)
    rng = np.random.default_rng(0)
    # Random weights everywhere, LayerNorm's gamma/beta included, so no layer is an identity.
    weights = [w + rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    if layer_norm:
        weights[1] += offset  # the hidden Dense biases: [kernel, bias, gamma, beta] per layer
        weights[5] += offset
    model.set_weights(weights)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_allclose(NumpyQNetwork(model.get_weights()).q_values(x), model(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    assert _numpy_playable(model)


def test_models_numpy_cannot_reproduce_are_refused():
    import keras
    relu_then_norm = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                       keras.layers.LayerNormalization(epsilon=1e-3),
                                       keras.layers.Dense(2)])
    tanh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(2)])
    assert not _numpy_playable(relu_then_norm) and not _numpy_playable(tanh)


def test_malformed_weight_lists_rejected():
    k, b = np.zeros((4, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError):
        NumpyQNetwork([b, k])
    with pytest.raises(ValueError):
        NumpyQNetwork([k, b, b])
