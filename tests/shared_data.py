"""Where the real dataset samples live: `../shared/datasets` beside the repository.

CI clones the repository into a fresh folder with `shared/` next to it, so the path is found
relative to this file, never hard-coded. TF_DEPTHSEG_SHARED_DATASETS overrides it.
"""

import os

SHARED_DATASETS = os.environ.get(
    "TF_DEPTHSEG_SHARED_DATASETS",
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                 "shared", "datasets"))
CAMVID_SAMPLE = os.path.join(SHARED_DATASETS, "camvid_sample", "CamVid")
KITTI_EIGEN_SPLIT = os.path.join(SHARED_DATASETS, "kitti_eigen_split")
