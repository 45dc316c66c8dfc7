"""SUW-Learn inception hourglass on the built-in synthetic drives: S only (soft classification
with the hourglass's bins head; paper schedule: Adam 5e-4, x0.1 every 5 epochs).

Command:

    bazel run //tools:train -- --config=suw/synthetic_hourglass_s --workdir=workdir/hourglass_s
    bazel run //tools:evaluate -- --workdir=workdir/hourglass_s --baselines

Expected: see docs/suw_study.md (hourglass S row; slower per step than the encoder-decoder).
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("synthetic_hourglass_s", supervised="soft_classification",
                              network=_common.HOURGLASS, smoke=smoke)
