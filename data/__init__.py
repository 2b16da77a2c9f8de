"""Dataset generation with MuJoCo (`drrobot data`, see `generate`) and its torch reader (`reader`).

Format: data/README.md. Modules: `config` (settings, presets), `cameras`, `surface`, `poses`,
`mujoco_render`, `sample` (one sample), `files` (npz I/O), `manifest`, `workers` (backends), `generate`
(the job), `reader`.
"""
