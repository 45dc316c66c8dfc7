"""Semi-supervised segmentation building blocks (Hoyer et al. 2021): mixing two images of a
batch with one mask (`mix`), DepthMix masks from SDE disparity (`depthmix`), the ClassMix
baseline (`classmix`), the mean teacher and its pseudo-labels (`mean_teacher`) and the strong
augmentation after mixing (`augment`). Pure TF ops on batch-first tensors; tasks wire them.
"""
