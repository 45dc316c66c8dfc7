r"""Checks converted TFRecords against their manifest.json and reads every record.

--input is a folder of shards (all its splits are checked) or a glob of shard files. Every
matched shard is read completely (a corrupt record is found), and where the folder has a
manifest.json (converters and labelling tools write one) its size, sha256 and example count
are compared with the manifest; shards the manifest lists but that are missing, incomplete
splits (--allow_incomplete accepts them) and splits with 0 examples are reported too. Prints
one line per split, then exits 0 when everything matches, or 2 with one error line naming the
first bad file and the fix.

Example:
  python -m tools.verify_records --input=/data/tfr/kitti
  python -m tools.verify_records --input='/data/tfr/kitti/train-*-of-*.tfrecord'
"""

import os

from absl import flags

from tf_depthseg import cli
from tf_depthseg.data import records

flags.DEFINE_string("input", None, "A folder of TFRecord shards (with manifest.json) or a glob "
                    "of shard files.")
flags.DEFINE_bool("allow_incomplete", False, "Accept splits whose conversion has not finished "
                  "(their finished shards are still checked).")
flags.mark_flag_as_required("input")
FLAGS = flags.FLAGS


def describe(summary: dict) -> str:
    """One line per split: where, how many files and examples, what the manifest says, OK/BAD."""
    manifest = ("no manifest" if summary["manifest"] is None else
                f"manifest {summary['manifest']} examples, "
                f"{'complete' if summary['complete'] else 'incomplete'}")
    status = ("OK" if not summary["problems"] else
              f"BAD ({len(summary['problems'])} problem"
              f"{'s' if len(summary['problems']) > 1 else ''})")
    return (f"{os.path.join(summary['folder'], summary['split'])}: {summary['files']} files, "
            f"{summary['examples']} examples read ({manifest}) {status}")


def main(argv):
    del argv
    path = cli.resolve_path(FLAGS.input)
    folder = os.path.isdir(path)
    pattern = os.path.join(path, "*.tfrecord") if folder else path
    summaries = records.verify_files(pattern, FLAGS.allow_incomplete, whole_folders=folder)
    problems = []
    for summary in summaries:
        print(describe(summary))
        for problem in summary["problems"]:
            print(f"  {problem}")
        problems += summary["problems"]
    if problems:
        more = f" ({len(problems)} problems, all listed above)" if len(problems) > 1 else ""
        raise cli.UserError(problems[0] + more)
    print(f"verify_records: {sum(s['files'] for s in summaries)} files, "
          f"{sum(s['examples'] for s in summaries)} examples, all match.")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
