"""Dataset converters: one module per dataset layout, sharing `base` (sharding, workers, resume).

Modules: `kitti`, `cityscapes`, `camvid`, `mannequin`, `megadepth`. Each exposes
`list_samples(input_dir, split, options)`, `load_sample(spec, options)` and an `Options`
dataclass; `tools/convert_<dataset>.py` are the command-line front ends.
"""
