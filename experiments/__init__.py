"""Many runs: seeds and sweeps, and the statistics over them.

`multiseed` (one process per seed, `cartpole.py` each), `seed_dirs`, `seeds_report`, `stats`,
`sweep` (Ray Tune), `sweep_spec`, `sweep_report`, `sweep_storage`; `examples/` holds sweep specs.
May import every layer below (`common`, `acting`, the TensorFlow core, `outputs`, `training`;
TensorFlow and the trainer only inside trial processes) and this package. Only `cartpole.py`
(and the benchmarks) import it.
"""
