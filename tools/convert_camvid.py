r"""Converts CamVid (SegNet layout: {split}/, {split}annot/, {split}.txt) to sharded TFRecords.

Images are resized to --height x --width (Hoyer et al.: 480x360 -> 672x512), labels keep the 11
CamVid classes with void stored as 255. Writes {split}-{i:05d}-of-{n:05d}.tfrecord and
manifest.json; rerunning after an interruption keeps finished shards.

Example:
  python -m tools.convert_camvid --input_dir=/data/SegNet/CamVid --output_dir=/data/tfr/camvid \
      --splits=train,val,test --num_shards=4 --num_workers=2
"""

from tf_depthseg import cli
from tf_depthseg.converters import camvid

cli.define_converter_flags(camvid.SPLITS, *camvid.DEFAULT_SIZE_HW)


def main(argv):
    del argv
    from absl import flags
    options = camvid.Options(height=flags.FLAGS.height, width=flags.FLAGS.width)
    cli.run_converter(camvid, options, "CamVid (SegNet layout)")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
