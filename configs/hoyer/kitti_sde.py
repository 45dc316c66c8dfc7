"""Monodepth2-style SDE on KITTI: ResNet-18 (not dilated), 192x640, Adam 1e-4, 20 epochs.

Monodepth2's mono recipe (its options.py defaults): batch 12, Adam 1e-4 for 20 epochs, x0.1
after 15 (`optim.schedule=paper_encoder_decoder`, decay_epochs 15), 0.1..100 m, smoothness
1e-3, 4 scales, auto-masking, pose on frame pairs. Differences: the depth decoder is Hoyer
et al.'s ASPP U-Net (not Monodepth2's lighter one), and ResNet-18 starts random (keras has no
ImageNet ResNet-18; Monodepth2 starts from ImageNet: give a weights file with
--set sde.encoder_weights=<file>).

Data (once): tools/convert_kitti.py into data/kitti (train with neighbour frames and K; test =
the Eigen test split with velodyne depth).

Command:

    bazel run //tools:train -- --config=hoyer/kitti_sde --workdir=runs/kitti_sde
    bazel run //tools:evaluate -- --workdir=runs/kitti_sde --baselines

Expected (GPU, full schedule): Eigen-split numbers near Monodepth2 mono 640x192 (AbsRel
0.115, RMSE 4.86, d1 0.877, median-scaled; ImageNet init matters for this). The smoke variant
(--smoke) only proves the wiring.
"""

from configs.hoyer import _common


def get_config(smoke: bool = False):
    return _common.sde_config("kitti_sde", dataset="kitti", smoke=smoke)
