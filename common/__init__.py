"""Settings, rules and files: the lowest layer.

`config` (every setting), `rules` (the solve and stop rules), `metrics` (every metric's name),
`run_log` (the log dir and atomic writes), `errors` (user-facing errors), `tf_import` (TensorFlow
without its start-up noise), `launch` (starting the project's child processes) and `observer`
(the hooks the trainer calls on TensorBoard and the figure).
Nothing here loads TensorFlow on import. May import: the standard library, NumPy, and modules of
this package; no other project module.
"""
