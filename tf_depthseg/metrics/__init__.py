"""Metrics as pure tensor / numpy functions: depth (`depth`: KITTI Eigen protocol, per-image
metrics, the reading of a results table) and segmentation (`segmentation`: confusion matrix,
per-class IoU, mIoU). Running a predictor over a dataset with them is `tf_depthseg.evaluation`.
"""
