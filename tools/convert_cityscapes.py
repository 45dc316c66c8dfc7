r"""Converts Cityscapes to sharded TFRecords (annotated frames with neighbours, or sequences).

--mode=labelled: one record per gtFine/*_labelIds.png with frames -/+ --frame_gap from
leftImg8bit_sequence, train ids (label ids outside the table are an error), K from camera/.
--mode=sequence: every leftImg8bit_sequence frame with both neighbours (SDE training).
Images are stored at --height x --width (default 1024x512, Hoyer et al.).

Example:
  python -m tools.convert_cityscapes --input_dir=/data/cityscapes --output_dir=/data/tfr/cs \
      --splits=train,val --num_shards=16 --num_workers=8
"""

from absl import flags

from tf_depthseg import cli
from tf_depthseg.converters import cityscapes

cli.define_converter_flags(cityscapes.SPLITS, *cityscapes.DEFAULT_SIZE_HW)
flags.DEFINE_enum("mode", "labelled", list(cityscapes.MODES), "Annotated frames or sequences.")
flags.DEFINE_integer("frame_gap", 1, "Neighbours are frame -/+ gap (labelled mode: 0 = none).")
flags.DEFINE_integer("sequence_stride", 1, "Sequence mode: every n-th usable frame.")


def main(argv):
    del argv
    f = flags.FLAGS
    options = cityscapes.Options(height=f.height, width=f.width, mode=f.mode,
                                 frame_gap=f.frame_gap, sequence_stride=f.sequence_stride)
    cli.run_converter(cityscapes, options, f"Cityscapes ({f.mode})")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
