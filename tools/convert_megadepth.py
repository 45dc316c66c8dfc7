r"""Converts MegaDepth (images, depth .npy, ordinal fg/bg masks) to sharded TFRecords.

Scenes come from <input_dir>/splits/{split}_scenes.txt. Records carry the image at
--height x --width (default 320x240, SUW-Learn's M&M size), the depth when present, and
--num_pairs ordinal pixel pairs (foreground closer than background) from the masks.

Example:
  python -m tools.convert_megadepth --input_dir=/data/megadepth --output_dir=/data/tfr/md \
      --splits=train,val --num_shards=8
"""

from absl import flags

from tf_depthseg import cli
from tf_depthseg.converters import megadepth

cli.define_converter_flags(megadepth.SPLITS, *megadepth.DEFAULT_SIZE_HW)
flags.DEFINE_integer("num_pairs", 128, "Ordinal pixel pairs per image.")
flags.DEFINE_integer("pair_seed", 0, "Seed of the pair sampling (per image: seed + image id).")


def main(argv):
    del argv
    f = flags.FLAGS
    options = megadepth.Options(height=f.height, width=f.width, num_pairs=f.num_pairs,
                                seed=f.pair_seed)
    cli.run_converter(megadepth, options, "MegaDepth")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
