"""Deployment of a run's served network (depth, segmentation, or both): SavedModel / TFLite
export and inference on folders/videos.

* `saved_model`: the serving computation (uint8 images -> whatever the network predicts:
  depth, uncertainty, semantic class ids and probabilities) and the `serving_default`
  SavedModel signature,
* `tflite`: fixed-size TFLite conversion (float32, dynamic-range, float16) and a runner,
* `exporter`: one atomic export folder (SavedModel + model.tflite + metadata.json),
* `restore`: the network a run's task serves (`Task.serving_model`), from its checkpoints, and
  the class names / palette of a segmentation network,
* `predict`: folders of images or videos -> 16-bit depth PNGs, class-id PNGs and pictures.

Command-line tools: `tools/export.py`, `tools/predict.py`, `tools/evaluate.py`.
"""
