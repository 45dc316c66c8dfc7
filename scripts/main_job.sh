#!/usr/bin/env bash
# The main job (README: `make demo`) on built-in synthetic data, the way users work on KITTI:
# generate drives in the KITTI raw layout -> convert to TFRecords -> weak labels from the
# (stand-in) segmenter masks -> train SUW-Learn (S+U+W) and an S-only baseline -> evaluate
# with the Eigen protocol next to a constant-depth baseline -> export SavedModel + TFLite ->
# predict on held-out frames -> print where everything is.
#
# Environment knobs: DEMO_WORKDIR (default workdir), DEMO_STEPS (training steps per run).
# The models train at 64x208 (records are 128x416) so both runs fit in minutes on 2 CPU cores;
# a GPU user drops the two size overrides below.
# Re-running continues where it stopped (converters and training resume).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
work=${DEMO_WORKDIR:-workdir}
data=$work/data
steps=${DEMO_STEPS:-200}
start=$SECONDS
stage() { printf '\n=== [%4d s] %s\n' $((SECONDS - start)) "$*"; }

stage "1/7 synthetic drives in the KITTI raw layout -> $data/kitti_raw"
if [[ ! -f $data/kitti_raw/splits/eigen_test_files.txt ]]; then
  $py -m tools.make_synthetic --layout=kitti --output_dir="$data/kitti_raw" --num_drives=6 \
      --frames_per_drive=24 --height=128 --width=416 --num_workers=2
fi

stage "2/7 convert to TFRecords (depth-benchmark PNGs + segmenter outputs) -> $data/kitti_converted"
$py -m tools.convert_kitti --input_dir="$data/kitti_raw" --output_dir="$data/kitti_converted" \
    --splits=train,val,test --num_workers=2 \
    --semantic_dir="$data/kitti_raw/predictions/semantic" \
    --instance_dir="$data/kitti_raw/predictions/instances"

stage "3/7 weak ordinal pairs from the semantic masks -> $data/kitti_records"
if [[ ! -f $data/kitti_records/manifest.json ]]; then
  $py -m tools.generate_weak_labels --input="$data/kitti_converted/*.tfrecord" \
      --output_dir="$data/kitti_records"
fi

stage "4/7 train SUW-Learn (S+U+W) and the S-only baseline, $steps steps each"
common=(--set "data.train_pattern=$data/kitti_records/train-*.tfrecord"
        --set "data.eval_pattern=$data/kitti_records/val-*.tfrecord" --set "train.steps=$steps"
        --set "train.eval_every=$steps" --set "data.image_size=[64,208]"
        --set "export.image_size=[64,208]")
$py -m tools.train --config=suw/synthetic_suw --workdir="$work/suw" "${common[@]}"
$py -m tools.train --config=suw/synthetic_s --workdir="$work/s_only" "${common[@]}"

stage "5/7 evaluate on the held-out test drive (KITTI Eigen protocol)"
$py -m tools.evaluate --workdir="$work/suw" --split="$data/kitti_records/test-*.tfrecord" \
    --baselines --compare="$work/s_only" --out="$work/eval_results.json"

stage "6/7 export SavedModel + TFLite -> $work/export"
$py -m tools.export --workdir="$work/suw" --output_dir="$work/export" --overwrite

stage "7/7 predict on the held-out drive's frames -> $work/predictions"
test_drive=$(head -n 1 "$data/kitti_raw/splits/eigen_test_files.txt" | cut -d' ' -f1)
$py -m tools.predict --model="$work/export" --input="$data/kitti_raw/$test_drive/image_02/data" \
    --output_dir="$work/predictions"

stage "done in $((SECONDS - start)) s"
cat <<MSG
Results:
  metrics (SUW, S only, constant median depth): $work/eval_results.json
  training runs (checkpoints, config.json, history.json, TensorBoard logs): $work/suw, $work/s_only
      view them with: .venv/bin/tensorboard --logdir $work
  SavedModel + model.tflite + metadata.json:   $work/export
      inspect with:   .venv/bin/saved_model_cli show --dir $work/export --all
  depth PNGs (uint16, m*256) and pictures:      $work/predictions/*_viz.png
  data: raw layout $data/kitti_raw, records $data/kitti_records
MSG
