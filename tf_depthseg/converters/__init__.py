"""Dataset converters: one module per dataset layout (`kitti`, `cityscapes`, `camvid`,
`mannequin`, `megadepth`) that turns the dataset's files into sharded TFRecords, sharing `base`
(sharding, worker processes, resume, quarantine). Each exposes `list_samples`, `load_sample`,
`input_files` (see `base`) and an `Options` dataclass; `tools/convert_<dataset>.py` are the
command-line front ends.
"""
