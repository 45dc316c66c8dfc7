"""The input pipeline and the records it reads: the TFRecord schema (`schema`), sharded
record files with manifests and checks (`records`), tf.data pipelines and augmentation
(`pipeline`, `augment`), image files (`image_io`) and the dataset facts (`datasets`: classes,
label ids, palettes). Nothing here imports the rooms that produce records (`converters`,
`labels`, `synthetic`); they import this.
"""
