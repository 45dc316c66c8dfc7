"""Evaluation: runs a predictor (any function images -> depth or class ids) over a dataset of
records and accumulates the dataset metrics (`depth`: KITTI Eigen protocol; `segmentation`:
confusion matrix, per-class IoU, mIoU). The pure tensor/numpy metric functions it uses live in
`tf_depthseg.metrics`; tasks (their `eval_outputs` / `update_metrics` hooks) and
`tools/evaluate.py` both come here, so neither imports the other.
"""
