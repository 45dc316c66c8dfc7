"""Deployment of depth networks: SavedModel / TFLite export and inference on folders/videos.

* `saved_model`: the serving computation (uint8 images -> depth, uncertainty) and the
  `serving_default` SavedModel signature,
* `tflite`: fixed-size TFLite conversion (float32, dynamic-range, float16) and a runner,
* `exporter`: one atomic export folder (SavedModel + model.tflite + metadata.json),
* `restore`: a training run's depth network from its checkpoints, for inference,
* `predict`: folders of images or videos -> 16-bit depth PNGs and side-by-side pictures.

Command-line tools: `tools/export.py`, `tools/predict.py`.
"""
