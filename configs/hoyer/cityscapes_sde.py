"""Hoyer et al. SDE on Cityscapes sequences: the paper's recipe (ResNet-101 dilated, ASPP U-Net).

The reference's `configs/cityscapes_monodepth_highres_dec6_crop.yml`: 1024x512 sequence frames
cropped to 512x512, batch 4, Adam 1e-5 for 100k iterations, mixed precision, Monodepth2 loss
(0.1..100 m, smoothness 1e-3, 4 scales, auto-masking), pose on frame pairs, feature distance
1e-2 to a frozen ImageNet ResNet-101 (needs keras.applications' ResNet101 weights in Keras'
cache; offline the encoders start random and a log line says the regulariser is then
meaningless). The reference starts this stage from its own SDE checkpoint trained with a frozen
backbone at 1e-4 (`..._dec5_crop.yml`): reproduce that stage with
`--set optim.learning_rate=1e-4 --set "optim.lr_multipliers=[['encoder',0.0]]"
--set sde.feature_distance_weight=0`, then this one with `--set model.init_checkpoint=...
--set "model.init_modules=['depth/','pose/']"` (the whole depth and pose nets, not only the
encoder, which is model.init_modules' default).

Data (once): tools/convert_cityscapes.py --mode=sequence (leftImg8bit_sequence, camera files)
into data/cityscapes_sequence. Cityscapes has no depth ground truth in our records, so the run
does not evaluate; evaluate the exported network on KITTI or synthetic depth.

Command:

    bazel run //tools:train -- --config=hoyer/cityscapes_sde --workdir=runs/cityscapes_sde
    bazel run //tools:export -- --workdir=runs/cityscapes_sde \
        --output_dir=runs/cityscapes_sde/export

Expected (GPU, full schedule): a depth network whose disparity maps are sharp at object
boundaries (the paper's Fig. 1); the smoke variant (--smoke) runs a few steps on the CPU and
only proves the wiring.
"""

from configs.hoyer import _common


def get_config(smoke: bool = False):
    return _common.sde_config("cityscapes_sde", dataset="cityscapes", smoke=smoke)
