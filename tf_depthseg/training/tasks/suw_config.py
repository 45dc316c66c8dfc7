"""`config.suw`: the SUW task's own config section (network, depth bins, S/U/W terms).

Registered for the task "suw" on import (and `SUWTask.config_sections`); set as
`--set suw.num_bins=32`. Until issue 13 these fields lived in the shared sections
(`model.name` -> `suw.network`, `model.num_bins`, `loss.*`, `data.weak_*`: see
`config.MOVED_KEYS`, which also reads old config.json files).
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

from tf_depthseg import config as cfg


@dataclasses.dataclass(frozen=True)
class SUWConfig(cfg._Section):  # pylint: disable=protected-access
    """SUW-Learn: networks (SUW text Table 1/2, Eq. 1) and the S, U, W loss terms."""

    # ---- Network.
    network: str = cfg._choices("suw_encoder_decoder", "suw_encoder_decoder", "hourglass")
    num_bins: int = cfg._ranged(64, 2)  # B in Eq. 1 (the paper does not state it)
    min_depth: float = cfg._ranged(1.0, 0, low_open=True, below="max_depth")  # alpha, metres
    max_depth: float = cfg._ranged(80.0, 0, low_open=True)  # beta in Eq. 1, metres
    # SAM dilations: sequential 3x3 dilated convs (1, 2, 2, 4, 4, ..., k/2, k/2, k); k unstated.
    sam_dilations: Tuple[int, ...] = cfg._ranged((1, 2, 2, 4, 4, 8), 1)
    pose_net: bool = True  # build the pose net (shares the encoder) for the U loss
    max_objects: int = cfg._ranged(4, 0)  # aligned objects per clip for the object-motion net
    # Hourglass output head: "auto" = the soft-classification bins head when `supervised` is
    # soft_classification, else natural-log depth regression.
    hourglass_head: str = cfg._choices("auto", "auto", "log_depth", "bins")

    # ---- S: supervised depth.
    supervised: str = cfg._choices("soft_classification", "none", "soft_classification",
                                   "l1_log", "scale_invariant", "berhu")
    supervised_weight: float = cfg._ranged(1.0, 0)
    # exp(-a (i - b*)^2) soft target width (Cao et al. 2016).
    soft_target_a: float = cfg._ranged(0.2, 0, low_open=True)
    silog_lambda: float = cfg._ranged(0.85, 0, 1)

    # ---- U: view synthesis.
    unsupervised: str = cfg._choices("none", "none", "ego", "ego_object", "known_pose")
    unsupervised_weight: float = cfg._ranged(1.0, 0)
    ssim_weight: float = cfg._ranged(0.85, 0, 1)
    smoothness_weight: float = cfg._ranged(1e-3, 0)
    automask: bool = True
    num_scales: int = cfg._ranged(4, 1)
    # Multiplies the pose / object-motion nets' translation before the warp (their outputs
    # carry Monodepth2's 0.01 factor). See tasks/suw.py, "Translation unit"; docs/u_term.md.
    pose_translation_scale: float = cfg._ranged(1.0, 0, low_open=True)

    # ---- W: weak ordinal pairs.
    weak: str = cfg._choices("none", "none", "pixel", "patch")
    weak_weight: float = cfg._ranged(1.0, 0)
    weak_pairs_per_image: int = cfg._ranged(1, 0)  # the paper draws one pair per image per step
    # A second training set that contributes ONLY the W loss, its own input stream (SUW text
    # 2.2: Mannequin Challenge examples give L_u, MegaDepth examples give L_w). "" = off; then
    # `weak_batch_size` of the global `data.batch_size` examples come from it.
    weak_train_pattern: str = ""
    weak_batch_size: int = cfg._ranged(0, 0)


cfg.register_task_sections("suw", {"suw": SUWConfig})
