"""What a run shows and writes besides its CSV files: the figure, the live window, TensorBoard,
the demo video.

`plots`, `live_view` (drawn by a child process, `python -m outputs.live_view --child`), `tb_log`,
`video`. matplotlib, TensorBoard and the video writers are loaded lazily.
May import: `common`, `acting`, the top-level TensorFlow core (`agent`, `sumtree_tf`,
`failure_replay`, `vec_env_tf`, `rewards`) and this package; never `training` or `experiments`.
"""
