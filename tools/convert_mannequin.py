r"""Converts Mannequin Challenge sequences (camera txt files + extracted frames) to TFRecords.

Each frame with neighbours -/+ --frame_gap becomes a record with the three frames at
--height x --width (default 320x240, SUW-Learn's M&M size), K from the normalised intrinsics,
camera/poses (world_from_camera of the three frames) and depth when depth/ has a file.

Example:
  python -m tools.convert_mannequin --input_dir=/data/mannequin --output_dir=/data/tfr/mc \
      --splits=train,validation --num_shards=8
"""

from absl import flags

from tf_depthseg import cli
from tf_depthseg.converters import mannequin

cli.define_converter_flags(mannequin.SPLITS, *mannequin.DEFAULT_SIZE_HW)
flags.DEFINE_integer("frame_gap", 1, "Neighbours are frame -/+ gap in the sequence file.")
flags.DEFINE_integer("stride", 1, "Use every n-th usable frame as a target.")
flags.DEFINE_bool("require_depth", False, "A missing depth file is an error.")


def main(argv):
    del argv
    f = flags.FLAGS
    options = mannequin.Options(height=f.height, width=f.width, frame_gap=f.frame_gap,
                                stride=f.stride, require_depth=f.require_depth)
    cli.run_converter(mannequin, options, "Mannequin Challenge")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
