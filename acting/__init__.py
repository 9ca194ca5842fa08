"""Acting and evaluation: NumPy and gymnasium, the evaluation worker's whole world.

`evaluation` (the NumPy Q-network, greedy evaluation, loading saved models), `eval_rounds`
(evaluation rounds in a worker process, `python -m acting.eval_rounds --worker`), `collection`
(epsilon-greedy collection into the packed chunk), `diagnostics` (action gap, Q on doomed states).
No TensorFlow on import (Keras only inside the function that loads a saved model).
May import: `common` and this package. `collection` names the TensorFlow env wrapper's type for
type checkers only (under TYPE_CHECKING, which never runs).
"""
