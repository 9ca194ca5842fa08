"""One training run: the command line, the trainer, checkpoints and the device.

`cli` (the command line built from `TrainConfig`), `trainer` (`Trainer`, `train(cfg)`),
`checkpoints` (writing and restoring checkpoints), `devices` (`--device`, GPU memory, precision).
May import: `common`, `acting`, the top-level TensorFlow core, `outputs` and this package; never
`experiments`. Only `cartpole.py` and `experiments` import it.
"""
