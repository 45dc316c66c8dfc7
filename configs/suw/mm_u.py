"""SUW-Learn hourglass on Mannequin Challenge: U only, with the known camera poses (no pose
net; SUW text 2.2: all MC objects are frozen, so L_u = L_u,ego), 320x240.

Data: tools/convert_mannequin.py into data/mannequin (frames, neighbours, K, poses, COLMAP
depth for evaluation).

Command:

    bazel run //tools:train -- --config=suw/mm_u --workdir=runs/mm_u
    bazel run //tools:evaluate -- --workdir=runs/mm_u --baselines

Expected: median-scaled AbsRel clearly below the constant-median baseline on MC validation
clips (COLMAP scale is arbitrary, so evaluation uses median scaling).
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("mm_u", supervised="none", unsupervised="known_pose",
                              network=_common.HOURGLASS, dataset="mannequin", smoke=smoke,
                              steps=100000)
