"""SUW-Learn hourglass on M&M: Mannequin Challenge U (known poses) + MegaDepth W (pixel pairs
from the official ordinal foreground/background maps), 320x240, SUW text 2.2.

Every batch holds 4 MC examples (they contribute only L_u) and 4 MegaDepth examples (only
L_w): `suw.weak_train_pattern` / `suw.weak_batch_size`.

Data: tools/convert_mannequin.py into data/mannequin, tools/convert_megadepth.py into
data/megadepth (with weak/pairs).

Command:

    bazel run //tools:train -- --config=suw/mm_uw --workdir=runs/mm_uw
    bazel run //tools:evaluate -- --workdir=runs/mm_uw --compare=runs/mm_u

Expected: better than mm_u on MC validation and visibly better on in-the-wild images (the
paper's Figure 5); numbers are median-scaled.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("mm_uw", supervised="none", unsupervised="known_pose",
                              weak="pixel", network=_common.HOURGLASS, dataset="mannequin",
                              smoke=smoke, steps=100000)
